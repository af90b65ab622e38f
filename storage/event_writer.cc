#include "storage/event_writer.h"

#include <algorithm>
#include <utility>

#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::storage {
namespace {

constexpr absl::Duration kInitialBackoff = absl::Milliseconds(10);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// Failed attempts tolerated once Stop() has been called before giving up.
constexpr int kMaxFailuresWhileStopping = 3;

std::vector<double> LatencyBounds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
}

std::vector<double> BatchSizeBounds() {
  std::vector<double> bounds;
  for (double b = 1; b <= 16384; b *= 2) bounds.push_back(b);
  return bounds;
}

// The max_delay deadline is real time (CondVar waits are); the injected
// clock is for timestamps and measurements.
absl::Time RealNow() { return Clock::Real()->Now(); }

}  // namespace

EventWriter::EventWriter(Store* store, Options options,
                         CommitCallback on_commit, Clock* clock)
    : store_(store),
      options_(options),
      max_batch_(std::max<size_t>(
          1, std::min(options.max_batch, options.queue_capacity))),
      on_commit_(std::move(on_commit)),
      clock_(clock),
      latency_(LatencyBounds()),
      batch_size_(BatchSizeBounds()) {}

EventWriter::~EventWriter() { Stop(); }

void EventWriter::Start() {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  thread_ = std::thread([this] {
    SetCurrentThreadName("chs-writer");
    Run();
  });
}

void EventWriter::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  bool run_here;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopping_ = true;
    run_here = !started_;
    work_cv_.Signal();
    not_full_cv_.SignalAll();
    retry_cv_.Signal();
  }
  if (thread_.joinable()) {
    thread_.join();
  } else if (run_here) {
    Run();  // never started: drain the queue on this thread
  }
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  processed_cv_.SignalAll();
}

bool EventWriter::Push(Item item, absl::Duration* waited) {
  absl::MutexLock lock(&mu_);
  if (waited != nullptr) *waited = absl::ZeroDuration();
  if (stopping_) return false;
  const size_t capacity = std::max<size_t>(1, options_.queue_capacity);
  if (queue_.size() >= capacity) {
    const absl::Time start = clock_->Now();
    ++pushers_waiting_;
    while (queue_.size() >= capacity && !stopping_) not_full_cv_.Wait(&mu_);
    --pushers_waiting_;
    if (waited != nullptr) {
      *waited = std::max(clock_->Now() - start, absl::ZeroDuration());
    }
    if (stopping_) return false;
  }
  const bool was_empty = queue_.empty();
  queue_.push_back(std::move(item));
  ++pushed_;
  if (was_empty) {
    oldest_item_at_ = RealNow();
    work_cv_.Signal();
  } else if (queue_.size() == max_batch_) {
    work_cv_.Signal();
  }
  return true;
}

void EventWriter::Flush() {
  absl::MutexLock lock(&mu_);
  if (!started_) return;
  const uint64_t target = pushed_;
  if (processed_ >= target) return;
  flush_target_ = std::max(flush_target_, target);
  work_cv_.Signal();
  while (processed_ < target && !stopped_) processed_cv_.Wait(&mu_);
}

EventWriter::Stats EventWriter::GetStats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.queue_depth = queue_.size();
  s.queue_capacity = options_.queue_capacity;
  s.pushers_waiting = pushers_waiting_;
  s.latency_bucket_bounds_seconds = latency_.bounds();
  s.latency_bucket_counts = latency_.counts();
  s.latency_sum_seconds = latency_.sum();
  s.latency_count = latency_.count();
  s.batch_size_bucket_bounds = batch_size_.bounds();
  s.batch_size_bucket_counts = batch_size_.counts();
  s.batch_size_sum = batch_size_.sum();
  s.batch_size_count = batch_size_.count();
  return s;
}

void EventWriter::Run() {
  while (true) {
    Batch batch;
    size_t items = 0;
    if (!TakeBatch(&batch, &items)) return;
    CommitWithRetry(&batch, items);
    absl::MutexLock lock(&mu_);
    processed_ += items;
    processed_cv_.SignalAll();
  }
}

bool EventWriter::TakeBatch(Batch* batch, size_t* items) {
  absl::MutexLock lock(&mu_);
  while (queue_.empty() && !stopping_) work_cv_.Wait(&mu_);
  if (queue_.empty()) return false;  // stopping, and everything is committed
  const absl::Time deadline = oldest_item_at_ + options_.max_delay;
  while (queue_.size() < max_batch_ && !stopping_ && flush_target_ <= taken_) {
    if (work_cv_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  const size_t n = std::min(queue_.size(), max_batch_);
  batch->events.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Item& item = queue_.front();
    if (auto* e = std::get_if<Event>(&item)) {
      batch->events.push_back(std::move(*e));
    } else if (auto* d = std::get_if<DeadLetter>(&item)) {
      batch->dead_letters.push_back(std::move(*d));
    } else {
      batch->gaps.push_back(std::move(std::get<Gap>(item)));
    }
    queue_.pop_front();
  }
  // Items left behind are older than max_delay already or the batch was
  // full: the next round takes them without waiting, because
  // oldest_item_at_ keeps its (past) value.
  taken_ += n;
  *items = n;
  not_full_cv_.SignalAll();
  return true;
}

void EventWriter::CommitWithRetry(Batch* batch, size_t items) {
  absl::Duration backoff = kInitialBackoff;
  int failures_while_stopping = 0;
  while (true) {
    const absl::Time start = clock_->Now();
    absl::StatusOr<CommitResult> result = store_->Commit(batch, start);
    const absl::Duration latency =
        std::max(clock_->Now() - start, absl::ZeroDuration());
    if (result.ok()) {
      {
        absl::MutexLock lock(&mu_);
        ++stats_.batches;
        stats_.events += result->events->size();
        for (const auto& [stream, n] : result->duplicates) {
          stats_.duplicates += n;
        }
        stats_.dead_letters += result->dead_letters;
        stats_.gaps += result->gaps;
        latency_.Observe(absl::ToDoubleSeconds(latency));
        batch_size_.Observe(static_cast<double>(items));
      }
      if (on_commit_) on_commit_(*result);
      return;
    }
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.commit_errors;
      stopping = stopping_;
    }
    if (stopping && ++failures_while_stopping > kMaxFailuresWhileStopping) {
      log::Error("storage commit abandoned during shutdown; items lost",
                 {{"error", result.status()},
                  {"items", items},
                  {"events", batch->events.size()},
                  {"path", store_->path()}});
      absl::MutexLock lock(&mu_);
      stats_.items_dropped += items;
      return;
    }
    log::Error("storage commit failed; retrying", {{"error", result.status()},
                                                   {"items", items},
                                                   {"retry_in", backoff},
                                                   {"path", store_->path()}});
    {
      absl::MutexLock lock(&mu_);
      retry_cv_.WaitWithTimeout(&mu_, backoff);
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace chstream::storage
