// File: tests/storage/test_util.h
//
// Helpers for the storage tests: fresh database paths under ${TEST_TMPDIR},
// event builders with every field set, committing and reading back any
// EventStore, raw file access, and a bounded wait for conditions that have
// no notification to wait on.
//
// Thread-safety: the functions are stateless and safe from any thread.
//
//   std::string path = TestDbPath();  // unique per test, nothing there yet
//   Event e = CompanyEvent(10, "SC571653", "FC KIOSKS LTD");
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "storage/event.h"
#include "storage/store.h"

namespace chstream::storage::testing {

// "${TEST_TMPDIR}/<suite>.<test><suffix>.db", with any file of that name and
// its -wal/-shm removed.
std::string TestDbPath(const std::string& suffix = "");

void RemoveDbFiles(const std::string& path);
std::string ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, const std::string& bytes);
bool FileExists(const std::string& path);
uint64_t FileSize(const std::string& path);  // 0 if missing

// A fixed, microsecond-precise time: 2026-11-28T12:00:00Z + `offset_us`.
absl::Time TestTime(int64_t offset_us = 0);

// An event of `stream` at `timepoint` with every field set to something
// distinctive (company = nullopt, resource_kind from the stream).
Event MakeEvent(const std::string& stream, int64_t timepoint,
                const std::string& company_number = "01234567");

// A company-profile event on the companies stream carrying `company` data.
Event CompanyEvent(int64_t timepoint, const std::string& company_number,
                   const std::string& company_name,
                   EventType type = EventType::kChanged);

DeadLetter MakeDeadLetter(const std::string& stream, const std::string& reason);

// AND across the given fields (empty = any), as a Filter.
Filter MakeFilter(std::vector<std::string> streams,
                  std::vector<std::string> resource_kinds = {},
                  std::vector<std::string> company_numbers = {},
                  std::vector<EventType> types = {});

// Commits `events` as one batch at `now`; a failure is a test failure (and
// an empty result).
CommitResult CommitEvents(EventStore& store, std::vector<Event> events,
                          absl::Time now = TestTime(999));

// Every stored event matching `filter`, in one page; a failure is a test
// failure.
std::vector<Event> ReadAll(EventStore& store, const Filter& filter = {});

// The positions / timepoints of `events`, in order.
std::vector<uint64_t> Positions(const std::vector<Event>& events);
std::vector<int64_t> Timepoints(const std::vector<Event>& events);

// Spins (yielding) until `condition` holds or `timeout` of real time passes;
// returns whether it held. For states that are observable but not signalled
// (e.g. a thread blocked inside Push).
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = absl::Seconds(30));

}  // namespace chstream::storage::testing
