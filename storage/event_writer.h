// File: storage/event_writer.h
//
// The single writer thread in front of Store::Commit, with group commit.
//
// Producers (the ingest streams) Push() events, dead letters and gaps into a
// bounded queue; Push blocks while the queue is full and reports how long it
// waited, so back-pressure is visible instead of unbounded memory. The writer
// thread waits for the first item, then collects up to max_batch items or
// until max_delay has passed since the first one arrived (or a Flush/Stop
// asks for it now), commits them as one transaction and then calls
// `on_commit` with the result. Items are committed in push order.
//
// A failed commit is logged and retried with exponential backoff (10 ms up to
// 1 s) with the same batch: nothing is dropped while running. Only once
// Stop() has been called, after 4 more failed attempts, is the batch given
// up, with an error log line naming how many items were lost
// (Stats::items_dropped), so that shutdown cannot hang on a dead disk.
//
// Thread-safety: Push, Flush and GetStats from any thread; Start and Stop
// from the owning thread. `on_commit` runs on the writer thread and must not
// call Flush or Stop.
//
//   EventWriter writer(store.get(), {}, [&](const CommitResult& r) {
//     hub.Publish(r.events);
//   }, Clock::Real());
//   writer.Start();
//   absl::Duration waited;
//   writer.Push(std::move(event), &waited);
//   ...
//   writer.Stop();  // commits what is queued
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/event.h"
#include "storage/histogram.h"
#include "storage/store.h"

namespace chstream::storage {

class EventWriter {
 public:
  struct Options {
    size_t queue_capacity = 16384;  // items; >= 1
    size_t max_batch = 4096;        // items per transaction; >= 1
    absl::Duration max_delay = absl::Milliseconds(5);
  };
  using Item = std::variant<Event, DeadLetter, Gap>;
  // Called on the writer thread after each successful commit.
  using CommitCallback = std::function<void(const CommitResult&)>;

  // `store` and `clock` must outlive the writer. `clock` stamps commits
  // (stream_state.updated_at) and measures Push waits and commit latency;
  // `on_commit` may be empty.
  EventWriter(Store* store, Options options, CommitCallback on_commit,
              Clock* clock);
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  ~EventWriter();  // Stop()

  // Starts the writer thread. Items pushed before Start wait in the queue.
  // No effect after Stop.
  void Start();

  // Commits everything queued, then joins the writer thread (if Start was
  // never called, the queue is committed on the calling thread). Pushes that
  // are blocked or arrive later return false. Idempotent.
  void Stop();

  // Queues `item`, blocking while the queue is full. Sets `*waited` (if not
  // null) to the time spent blocked, by the injected clock. Returns false,
  // without queuing, once Stop has been called.
  bool Push(Item item, absl::Duration* waited = nullptr);

  // Blocks until everything pushed before the call has been committed and
  // its on_commit has returned (or given up during Stop). Returns at once if
  // the writer was never started.
  void Flush();

  struct Stats {
    uint64_t batches = 0;       // successful commits
    uint64_t events = 0;        // events committed
    uint64_t duplicates = 0;    // events dropped as duplicates by the store
    uint64_t dead_letters = 0;  // dead letters committed
    uint64_t gaps = 0;          // gaps committed
    uint64_t queue_depth = 0;
    uint64_t queue_capacity = 0;
    uint64_t pushers_waiting = 0;  // Push calls blocked on a full queue now
    uint64_t commit_errors = 0;    // failed commit attempts (then retried)
    uint64_t items_dropped = 0;    // given up during Stop after errors
    // Commit latency (Store::Commit duration). Counts are non-cumulative,
    // one per bound plus a last one for +Inf (see Histogram).
    std::vector<double> latency_bucket_bounds_seconds;
    std::vector<uint64_t> latency_bucket_counts;
    double latency_sum_seconds = 0;
    uint64_t latency_count = 0;
    // Items per committed batch, likewise.
    std::vector<double> batch_size_bucket_bounds;
    std::vector<uint64_t> batch_size_bucket_counts;
    double batch_size_sum = 0;
    uint64_t batch_size_count = 0;
  };
  Stats GetStats() const;

 private:
  void Run();
  // Waits for and takes the next batch; false when stopped and drained.
  bool TakeBatch(Batch* batch, size_t* items);
  void CommitWithRetry(Batch* batch, size_t items);

  Store* const store_;
  const Options options_;
  const size_t max_batch_;  // min(max_batch, queue_capacity)
  const CommitCallback on_commit_;
  Clock* const clock_;

  absl::Mutex stop_mu_;  // serialises Start/Stop
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;       // writer: items, full batch, flush, stop
  absl::CondVar not_full_cv_;   // pushers: room in the queue, stop
  absl::CondVar processed_cv_;  // Flush: processed_ advanced
  absl::CondVar retry_cv_;      // writer backoff: cut short by Stop
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  // Real time when the oldest queued item arrived (for max_delay).
  absl::Time oldest_item_at_ ABSL_GUARDED_BY(mu_);
  uint64_t pushed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t processed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_target_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pushers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  Stats stats_ ABSL_GUARDED_BY(mu_);
  Histogram latency_ ABSL_GUARDED_BY(mu_);
  Histogram batch_size_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::storage
