// File: storage/event_writer.h
//
// The single writer thread in front of Store::Commit, with group commit.
//
// Producers (the ingest streams) Push() events, dead letters and gaps into a
// queue bounded both in bytes (queue_bytes: what the queued items hold, the
// memory bound) and in items (queue_capacity: bounds the per-item overhead
// and the number of transactions a backlog needs). Push blocks while either
// bound is reached and reports how long it waited, so back-pressure is
// visible instead of unbounded memory; an item larger than queue_bytes is
// still taken when the queue is empty, so it cannot block forever. The writer
// thread waits for the first item, then collects up to max_batch items or
// until max_delay has passed since the first one arrived (or a Flush/Stop
// asks for it now), commits them as one transaction and then calls
// `on_commit` with the result. Items are committed in push order.
//
// A failed commit is one of two kinds:
//   - the environment (full disk, I/O error, read-only file, lock held by
//     another process): logged and retried with exponential backoff (10 ms up
//     to 1 s) with the same batch, for as long as it takes: when space comes
//     back the writer carries on by itself. Health() reports the failure
//     (since when, how many attempts, the SQLite error) so that the server's
//     health turns failed within seconds.
//   - the data (SQLITE_TOOBIG, a constraint: InvalidArgument from the
//     store): the batch is split in halves until the item that fails alone is
//     found; that event is dead-lettered instead (reason "cannot store: ...",
//     the first 64 KiB of its data as the raw text) and everything else is
//     committed in order (Stats::items_isolated).
// Once Stop() or StopAccepting() has been called, a batch that still fails
// after 3 more quick attempts is given up together with everything queued
// behind it, with an error log line naming how many items were lost
// (Stats::items_dropped), so that shutdown cannot hang on a dead disk. The
// lost events were never committed, so the upstream sends them again after a
// restart (the stream resumes from its last committed timepoint).
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
//   writer.StopAccepting();  // producers' Push returns false from now on
//   writer.Stop();           // commits what is queued
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
    size_t queue_bytes = 32 << 20;  // ItemBytes() of the queued items; >= 1
    size_t max_batch = 4096;        // items per transaction; >= 1
    absl::Duration max_delay = absl::Milliseconds(5);
  };
  using Item = std::variant<Event, DeadLetter, Gap>;
  // Called on the writer thread after each successful commit.
  using CommitCallback = std::function<void(const CommitResult&)>;

  // `store` and `clock` must outlive the writer. `clock` stamps commits
  // (stream_state.updated_at) and measures Push waits and commit latency;
  // `on_commit` may be empty.
  EventWriter(EventStore* store, Options options, CommitCallback on_commit,
              Clock* clock);
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  ~EventWriter();  // Stop()

  // Starts the writer thread. Items pushed before Start wait in the queue.
  // No effect after Stop.
  void Start();

  // Commits everything queued, then joins the writer thread (if Start was
  // never called, the queue is committed on the calling thread). Pushes that
  // are blocked or arrive later return false. Returns within seconds even
  // when every commit fails (see the file comment). Idempotent.
  void Stop();

  // The first half of Stop(), for the producers: pushes that are blocked
  // (on a full queue, e.g. because the disk is full) or arrive later return
  // false at once, and a failing commit is given up quickly; what is queued
  // is still committed. Lets the ingest thread stop before the writer does.
  void StopAccepting();

  // Queues `item`, blocking while the queue is full. Sets `*waited` (if not
  // null) to the time spent blocked, by the injected clock. Returns false,
  // without queuing, once Stop or StopAccepting has been called.
  bool Push(Item item, absl::Duration* waited = nullptr);

  // What an item counts against Options::queue_bytes: its strings' sizes
  // plus the fixed size of the item.
  static size_t ItemBytes(const Item& item);

  // The state of storage as the last commit attempt found it.
  struct CommitHealth {
    // Failed attempts since the last successful commit (0 = healthy).
    uint64_t consecutive_failures = 0;
    // When the first of them failed (InfinitePast when healthy).
    absl::Time failing_since = absl::InfinitePast();
    absl::Status last_error;  // of the last failed attempt
  };
  CommitHealth Health() const;

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
    uint64_t queue_bytes = 0;           // ItemBytes of the queued items
    uint64_t queue_bytes_capacity = 0;  // Options::queue_bytes
    uint64_t pushers_waiting = 0;  // Push calls blocked on a full queue now
    uint64_t commit_errors = 0;    // failed commit attempts (then retried)
    uint64_t items_dropped = 0;    // given up during Stop after errors
    // Events that failed to commit alone for a reason of their own and were
    // dead-lettered instead.
    uint64_t items_isolated = 0;
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
  enum class Outcome { kCommitted, kGivenUp };

  void Run();
  // Waits for and takes the next batch; false when stopped and drained.
  bool TakeBatch(std::vector<Item>* items);
  // Commits items[begin, end), retrying, splitting, isolating (see the file
  // comment). kGivenUp: stopping and storage still fails.
  Outcome CommitItems(std::vector<Item>& items, size_t begin, size_t end);
  // Drops everything queued (after kGivenUp); returns how many items.
  size_t DropQueued();

  EventStore* const store_;
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
  std::deque<std::pair<Item, size_t>> queue_ ABSL_GUARDED_BY(mu_);  // bytes
  size_t queue_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // ItemBytes of the batch taken and not yet processed.
  size_t inflight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Real time when the oldest queued item arrived (for max_delay).
  absl::Time oldest_item_at_ ABSL_GUARDED_BY(mu_);
  uint64_t pushed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t processed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_target_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pushers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Stop called
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;  // false after StopAccepting
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  Stats stats_ ABSL_GUARDED_BY(mu_);
  CommitHealth health_ ABSL_GUARDED_BY(mu_);
  Histogram latency_ ABSL_GUARDED_BY(mu_);
  Histogram batch_size_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::storage
