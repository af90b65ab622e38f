// File: storage/prune_stats.h
//
// Retention's counters for StoreStats (events and dead letters pruned,
// prune transactions, their total and longest time), kept the same way by
// every EventStore backend's PruneStep.
//
// Thread-safety: thread-safe (relaxed atomics: the counters are read for
// metrics, never to synchronise).
//
//   prune_stats_.RecordTransaction(took);  // after each prune transaction
//   prune_stats_.RecordStep(result);       // at the end of PruneStep
//   prune_stats_.Fill(&stats);             // in Stats()
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace chstream::storage {

struct PruneStepResult;  // storage/store.h
struct StoreStats;

class PruneStats {
 public:
  void RecordTransaction(absl::Duration took);
  void RecordStep(const PruneStepResult& step);
  // Sets the retention fields of `stats`.
  void Fill(StoreStats* stats) const;

 private:
  std::atomic<uint64_t> events_pruned_{0};
  std::atomic<uint64_t> dead_letters_pruned_{0};
  std::atomic<uint64_t> prune_transactions_{0};
  std::atomic<int64_t> prune_nanos_total_{0};
  std::atomic<int64_t> longest_prune_nanos_{0};
};

}  // namespace chstream::storage
