// File: storage/commit_plan.h
//
// Which events of a batch a commit keeps: the duplicate rule shared by every
// EventStore backend (storage/store.h). An event is dropped as a duplicate
// when its timepoint is at or below its stream's committed timepoint, or at
// or below an earlier kept event of the same stream in the batch; the rest
// are kept in batch order and get dense positions.
//
// It also merges what the kept events change in the current-state tables
// into one row per company and one per resource, so that a commit writes
// each row once however many of its events the batch holds (an upsert per
// event cost ~3.5 us each for the company and the resource).
//
// Thread-safety: stateless.
//
//   CommitPlan plan = PlanCommit(batch.events, [&](std::string_view s) {
//     return CommittedTimepointOf(s);  // std::nullopt for a new stream
//   });
//   for (size_t i : plan.kept) Insert(batch.events[i], head + 1 + j++);
//   for (const CompanyChange& c : MergeCompanyChanges(batch.events,
//                                                     plan.kept, head + 1))
//     Upsert(c);
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "storage/event.h"

namespace chstream::storage {

// One stream's progress through a batch.
struct StreamProgress {
  // The highest timepoint so far: committed, or kept in this batch.
  std::optional<int64_t> floor;
  size_t last_kept = 0;   // index (into the batch) of its last kept event
  bool advanced = false;  // whether the batch kept any event of it
};

struct CommitPlan {
  // Indexes into the batch of the events to commit, ascending.
  std::vector<size_t> kept;
  // Every stream of the batch (views into the batch's events: valid while
  // they are).
  absl::flat_hash_map<std::string_view, StreamProgress,
                      std::hash<std::string_view>>
      progress;
  // Per stream: events dropped as duplicates (streams without any are
  // absent), as CommitResult::duplicates.
  absl::flat_hash_map<std::string, uint64_t> duplicates;
};

// `committed(stream)`: the stream's committed timepoint, nullopt if it has
// none. Called once per stream of the batch.
CommitPlan PlanCommit(
    const std::vector<Event>& events,
    absl::FunctionRef<std::optional<int64_t>(std::string_view)> committed);

// What a batch does to one company's row (events for which IsCompanyEvent):
// its events applied one by one in position order give the same row as
// this applied once. Pointers and views are into the batch's events.
struct CompanyChange {
  std::string_view company_number;
  const Event* fields = nullptr;  // the last event with company fields
  uint64_t data_position = 0;     // the last event with data; 0 if none
  const Event* last = nullptr;    // the last event
  uint64_t last_position = 0;
};

// The same for one resource_uri (events with one).
struct ResourceChange {
  std::string_view resource_uri;
  std::string_view company_number;  // the last non-empty one; "" if none
  uint64_t data_position = 0;       // the last event with data; 0 if none
  const Event* last = nullptr;      // the last event
  uint64_t last_position = 0;
};

// One change per company / resource of `events[kept[j]]` (the event at
// position first_position + j), ordered by key so that each index page is
// visited once per batch rather than at random.
std::vector<CompanyChange> MergeCompanyChanges(const std::vector<Event>& events,
                                               const std::vector<size_t>& kept,
                                               uint64_t first_position);
std::vector<ResourceChange> MergeResourceChanges(
    const std::vector<Event>& events, const std::vector<size_t>& kept,
    uint64_t first_position);

}  // namespace chstream::storage
