#include "storage/event_writer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::storage {
namespace {

constexpr absl::Duration kInitialBackoff = absl::Milliseconds(10);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// Failed attempts tolerated once Stop() has been called before giving up,
// and the longest wait between them then.
constexpr int kMaxFailuresWhileStopping = 3;
constexpr absl::Duration kMaxBackoffWhileStopping = absl::Milliseconds(50);
// A dead letter made of an event that cannot be stored keeps this much of
// its data.
constexpr size_t kMaxIsolatedRawBytes = 64 << 10;

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

// A failure of the data rather than of the environment: the store maps
// SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH and SQLITE_RANGE to
// InvalidArgument (storage/sqlite.h). Retrying the same items cannot help.
bool IsDataError(const absl::Status& status) {
  return absl::IsInvalidArgument(status);
}

size_t StringsBytes(const std::vector<std::string>& v) {
  size_t n = v.size() * sizeof(std::string);
  for (const std::string& s : v) n += s.size();
  return n;
}

// At most `max` bytes of `s`, not cutting a UTF-8 sequence.
std::string Utf8Prefix(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

DeadLetter IsolatedDeadLetter(const Event& e, const absl::Status& error) {
  DeadLetter d;
  d.stream = e.stream;
  d.received_at = e.received_at;
  d.reason = absl::StrCat("cannot store: ", error.message());
  d.raw = Utf8Prefix(e.data_json, kMaxIsolatedRawBytes);
  d.timepoint = e.timepoint;
  return d;
}

}  // namespace

EventWriter::EventWriter(EventStore* store, Options options,
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

size_t EventWriter::ItemBytes(const Item& item) {
  size_t n = sizeof(Item);
  if (const auto* e = std::get_if<Event>(&item)) {
    n += e->stream.size() + e->resource_kind.size() + e->resource_id.size() +
         e->resource_uri.size() + e->company_number.size() +
         e->data_json.size() + e->data_pb.size() +
         StringsBytes(e->fields_changed);
    if (e->company.has_value()) {
      const CompanyFields& c = *e->company;
      const Address& a = c.registered_office_address;
      n += sizeof(CompanyFields) + c.company_name.size() +
           c.company_status.size() + c.company_type.size() +
           c.jurisdiction.size() + c.date_of_creation.size() +
           c.date_of_cessation.size() + a.premises.size() +
           a.address_line_1.size() + a.address_line_2.size() +
           a.locality.size() + a.region.size() + a.postal_code.size() +
           a.country.size() + a.care_of.size() + a.po_box.size() +
           StringsBytes(c.sic_codes);
    }
  } else if (const auto* d = std::get_if<DeadLetter>(&item)) {
    n += d->stream.size() + d->reason.size() + d->raw.size();
  } else {
    n += std::get<Gap>(item).stream.size();
  }
  return n;
}

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

void EventWriter::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  not_full_cv_.SignalAll();
  retry_cv_.Signal();
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
  const size_t bytes = ItemBytes(item);
  absl::MutexLock lock(&mu_);
  if (waited != nullptr) *waited = absl::ZeroDuration();
  if (stopping_ || !accepting_) return false;
  const size_t capacity = std::max<size_t>(1, options_.queue_capacity);
  const size_t byte_capacity = std::max<size_t>(1, options_.queue_bytes);
  // The batch being committed counts too (inflight_bytes_), so that the
  // writer never holds more than byte_capacity; an item alone is always
  // taken, however large.
  auto full = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t held = queue_bytes_ + inflight_bytes_;
    return queue_.size() >= capacity ||
           (held > 0 && held + bytes > byte_capacity);
  };
  if (full()) {
    const absl::Time start = clock_->Now();
    ++pushers_waiting_;
    work_cv_.Signal();  // a partial batch need not wait for max_delay
    while (full() && !stopping_ && accepting_) not_full_cv_.Wait(&mu_);
    --pushers_waiting_;
    if (waited != nullptr) {
      *waited = std::max(clock_->Now() - start, absl::ZeroDuration());
    }
    if (stopping_ || !accepting_) return false;
  }
  const bool was_empty = queue_.empty();
  queue_.emplace_back(std::move(item), bytes);
  queue_bytes_ += bytes;
  ++pushed_;
  if (was_empty) {
    if (options_.max_delay > absl::ZeroDuration()) oldest_item_at_ = RealNow();
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
  s.queue_bytes = queue_bytes_ + inflight_bytes_;
  s.queue_bytes_capacity = options_.queue_bytes;
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

EventWriter::CommitHealth EventWriter::Health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

void EventWriter::Run() {
  while (true) {
    std::vector<Item> items;
    if (!TakeBatch(&items)) return;
    const size_t n = items.size();
    size_t dropped = 0;
    if (CommitItems(items, 0, n) == Outcome::kGivenUp) dropped = DropQueued();
    absl::MutexLock lock(&mu_);
    processed_ += n + dropped;
    inflight_bytes_ = 0;
    not_full_cv_.SignalAll();
    processed_cv_.SignalAll();
  }
}

bool EventWriter::TakeBatch(std::vector<Item>* items) {
  absl::MutexLock lock(&mu_);
  while (queue_.empty() && !stopping_) work_cv_.Wait(&mu_);
  if (queue_.empty()) return false;  // stopping, and everything is committed
  // With no max_delay the batch is what queued up while the writer was busy
  // (the previous commit): nothing to wait for.
  if (options_.max_delay > absl::ZeroDuration()) {
    const absl::Time deadline = oldest_item_at_ + options_.max_delay;
    while (queue_.size() < max_batch_ && !stopping_ &&
           flush_target_ <= taken_ && pushers_waiting_ == 0) {
      if (work_cv_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
    }
  }
  // At most half the byte bound per batch, so that producers can fill the
  // other half while it commits.
  const size_t max_bytes = std::max<size_t>(1, options_.queue_bytes / 2);
  size_t bytes = 0;
  // Events are large (every string of a company profile): moving them again
  // on each vector growth cost ~1% of ingest CPU.
  items->reserve(std::min(queue_.size(), max_batch_));
  while (!queue_.empty() && items->size() < max_batch_ &&
         (items->empty() || bytes + queue_.front().second <= max_bytes)) {
    bytes += queue_.front().second;
    items->push_back(std::move(queue_.front().first));
    queue_.pop_front();
  }
  queue_bytes_ -= bytes;
  inflight_bytes_ = bytes;
  // Items left behind are older than max_delay already or the batch was
  // full: the next round takes them without waiting, because
  // oldest_item_at_ keeps its (past) value.
  taken_ += items->size();
  return true;
}

size_t EventWriter::DropQueued() {
  absl::MutexLock lock(&mu_);
  const size_t n = queue_.size();
  queue_.clear();
  queue_bytes_ = 0;
  taken_ += n;
  stats_.items_dropped += n;
  if (n > 0) {
    log::Error("storage still failing during shutdown; queued items lost",
               {{"items", n}, {"path", store_->location()}});
  }
  return n;
}

EventWriter::Outcome EventWriter::CommitItems(std::vector<Item>& items,
                                              size_t begin, size_t end) {
  absl::Duration backoff = kInitialBackoff;
  int failures_while_stopping = 0;
  while (true) {
    Batch batch;
    batch.events.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) {
      if (auto* e = std::get_if<Event>(&items[i])) {
        batch.events.push_back(std::move(*e));
      } else if (auto* d = std::get_if<DeadLetter>(&items[i])) {
        batch.dead_letters.push_back(std::move(*d));
      } else {
        batch.gaps.push_back(std::move(std::get<Gap>(items[i])));
      }
    }
    const absl::Time start = clock_->Now();
    absl::StatusOr<CommitResult> result = store_->Commit(&batch, start);
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
        batch_size_.Observe(static_cast<double>(end - begin));
        health_ = CommitHealth();
      }
      if (on_commit_) on_commit_(*result);
      return Outcome::kCommitted;
    }
    // A failed commit leaves the batch as it was: put the items back.
    size_t next_event = 0, next_dead_letter = 0, next_gap = 0;
    for (size_t i = begin; i < end; ++i) {
      if (std::holds_alternative<Event>(items[i])) {
        items[i] = std::move(batch.events[next_event++]);
      } else if (std::holds_alternative<DeadLetter>(items[i])) {
        items[i] = std::move(batch.dead_letters[next_dead_letter++]);
      } else {
        items[i] = std::move(batch.gaps[next_gap++]);
      }
    }
    const absl::Status& error = result.status();
    const bool data_error = IsDataError(error);
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.commit_errors;
      stopping = stopping_ || !accepting_;
      if (!data_error) {
        if (health_.consecutive_failures++ == 0) {
          health_.failing_since = clock_->Now();
        }
        health_.last_error = error;
      }
    }
    if (data_error) {
      if (end - begin > 1) {
        const size_t mid = begin + (end - begin) / 2;
        if (CommitItems(items, begin, mid) == Outcome::kGivenUp) {
          absl::MutexLock lock(&mu_);
          stats_.items_dropped += end - mid;
          return Outcome::kGivenUp;
        }
        return CommitItems(items, mid, end);
      }
      if (const auto* e = std::get_if<Event>(&items[begin])) {
        log::Error("event cannot be stored; dead-lettered instead",
                   {{"error", error},
                    {"stream", e->stream},
                    {"timepoint", e->timepoint},
                    {"data_bytes", e->data_json.size() + e->data_pb.size()}});
        items[begin] = IsolatedDeadLetter(*e, error);
        absl::MutexLock lock(&mu_);
        ++stats_.items_isolated;
        continue;  // commit the dead letter in its place
      }
      log::Error("item cannot be stored; dropped", {{"error", error}});
      absl::MutexLock lock(&mu_);
      ++stats_.items_dropped;
      return Outcome::kCommitted;
    }
    if (stopping && ++failures_while_stopping > kMaxFailuresWhileStopping) {
      log::Error("storage commit abandoned during shutdown; items lost",
                 {{"error", error},
                  {"items", end - begin},
                  {"path", store_->location()}});
      absl::MutexLock lock(&mu_);
      stats_.items_dropped += end - begin;
      return Outcome::kGivenUp;
    }
    log::Error("storage commit failed; retrying",
               {{"error", error},
                {"items", end - begin},
                {"retry_in", backoff},
                {"path", store_->location()}});
    {
      absl::MutexLock lock(&mu_);
      // Stop and StopAccepting cut the wait short.
      if (!stopping_ && accepting_) {
        retry_cv_.WaitWithTimeout(&mu_, backoff);
      } else {
        retry_cv_.WaitWithTimeout(&mu_,
                                  std::min(backoff, kMaxBackoffWhileStopping));
      }
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace chstream::storage
