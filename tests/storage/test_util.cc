#include "tests/storage/test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace chstream::storage::testing {

std::string TestDbPath(const std::string& suffix) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path =
      absl::StrCat(dir != nullptr ? dir : "/tmp", "/", info->test_suite_name(),
                   ".", info->name(), suffix, ".db");
  RemoveDbFiles(path);
  return path;
}

void RemoveDbFiles(const std::string& path) {
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  std::remove((path + "-journal").c_str());
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool FileExists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

absl::Time TestTime(int64_t offset_us) {
  return absl::FromUnixSeconds(1'795'867'200) + absl::Microseconds(offset_us);
}

Event MakeEvent(const std::string& stream, int64_t timepoint,
                const std::string& company_number) {
  Event e;
  e.stream = stream;
  e.timepoint = timepoint;
  e.type = EventType::kChanged;
  e.resource_kind = stream == "companies" ? "company-profile"
                    : stream == "filings" ? "filing-history"
                                          : "company-" + stream;
  e.resource_id = absl::StrCat("res-", stream, "-", timepoint);
  e.resource_uri =
      absl::StrCat("/company/", company_number, "/", stream, "/", timepoint);
  e.company_number = company_number;
  e.published_at = TestTime(timepoint * 1000 + 1);
  e.received_at = TestTime(timepoint * 1000 + 2);
  e.fields_changed = {"a", absl::StrCat("tp", timepoint)};
  e.data_json = absl::StrCat(R"({"timepoint":)", timepoint, "}");
  e.data_pb = std::string("\x0a\x00\x01", 3) + std::to_string(timepoint);
  return e;
}

Event CompanyEvent(int64_t timepoint, const std::string& company_number,
                   const std::string& company_name, EventType type) {
  Event e = MakeEvent("companies", timepoint, company_number);
  e.type = type;
  e.resource_uri = "/company/" + company_number;
  e.resource_id = company_number;
  CompanyFields f;
  f.company_name = company_name;
  f.company_status = "active";
  f.company_type = "ltd";
  f.jurisdiction = "scotland";
  f.date_of_creation = "2017-07-20";
  f.date_of_cessation = "";
  f.registered_office_address.address_line_1 = "Suite 4f, Ingram House";
  f.registered_office_address.locality = "Glasgow";
  f.registered_office_address.postal_code = "G1 1DA";
  f.sic_codes = {"56290"};
  e.company = f;
  e.data_json =
      absl::StrCat(R"({"company_name":")", company_name,
                   R"(","company_number":")", company_number, R"("})");
  e.data_pb = absl::StrCat("pb:", company_name);
  return e;
}

DeadLetter MakeDeadLetter(const std::string& stream,
                          const std::string& reason) {
  DeadLetter d;
  d.stream = stream;
  d.reason = reason;
  d.received_at = TestTime();
  d.raw = "{raw";
  return d;
}

Filter MakeFilter(std::vector<std::string> streams,
                  std::vector<std::string> resource_kinds,
                  std::vector<std::string> company_numbers,
                  std::vector<EventType> types) {
  Filter f;
  f.streams = std::move(streams);
  f.resource_kinds = std::move(resource_kinds);
  f.company_numbers = std::move(company_numbers);
  f.types = std::move(types);
  return f;
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

CommitResult CommitEvents(EventStore& store, std::vector<Event> events,
                          absl::Time now) {
  Batch batch;
  batch.events = std::move(events);
  absl::StatusOr<CommitResult> result = store.Commit(std::move(batch), now);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : CommitResult{};
}

std::vector<Event> ReadAll(EventStore& store, const Filter& filter) {
  absl::StatusOr<Page> page =
      store.ReadPage(0, store.HeadPosition(), filter, 1'000'000, 1'000'000);
  EXPECT_TRUE(page.ok()) << page.status();
  return page.ok() ? page->events : std::vector<Event>{};
}

std::vector<uint64_t> Positions(const std::vector<Event>& events) {
  std::vector<uint64_t> out;
  for (const Event& e : events) out.push_back(e.position);
  return out;
}

std::vector<int64_t> Timepoints(const std::vector<Event>& events) {
  std::vector<int64_t> out;
  for (const Event& e : events) out.push_back(e.timepoint);
  return out;
}

}  // namespace chstream::storage::testing
