#include "storage/prune_stats.h"

#include "storage/store.h"

namespace chstream::storage {

void PruneStats::RecordTransaction(absl::Duration took) {
  prune_transactions_.fetch_add(1, std::memory_order_relaxed);
  const int64_t nanos = absl::ToInt64Nanoseconds(took);
  prune_nanos_total_.fetch_add(nanos, std::memory_order_relaxed);
  int64_t longest = longest_prune_nanos_.load(std::memory_order_relaxed);
  while (nanos > longest && !longest_prune_nanos_.compare_exchange_weak(
                                longest, nanos, std::memory_order_relaxed)) {
  }
}

void PruneStats::RecordStep(const PruneStepResult& step) {
  events_pruned_.fetch_add(step.events, std::memory_order_relaxed);
  dead_letters_pruned_.fetch_add(step.dead_letters + step.gaps,
                                 std::memory_order_relaxed);
}

void PruneStats::Fill(StoreStats* stats) const {
  stats->events_pruned = events_pruned_.load(std::memory_order_relaxed);
  stats->dead_letters_pruned =
      dead_letters_pruned_.load(std::memory_order_relaxed);
  stats->prune_transactions =
      prune_transactions_.load(std::memory_order_relaxed);
  stats->prune_seconds_total =
      static_cast<double>(prune_nanos_total_.load(std::memory_order_relaxed)) /
      1e9;
  stats->longest_prune_seconds = static_cast<double>(longest_prune_nanos_.load(
                                     std::memory_order_relaxed)) /
                                 1e9;
}

}  // namespace chstream::storage
