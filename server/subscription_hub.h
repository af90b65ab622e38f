// File: server/subscription_hub.h
//
// Fans committed events out to live subscribers. The storage writer calls
// Publish() after each commit, in commit order; each subscriber has a
// bounded queue holding only the events that match its filter.
//
// A queue that would overflow (in events or in bytes) is not grown and not
// silently trimmed: it is emptied and marked `overflowed`, and enqueueing
// stops until the subscriber re-arms it. The subscriber then reports
// fell_behind, re-arms, and reads storage from its last position until it
// reaches the head (prior-art A.10). Because a subscription is armed before
// storage is read, every event is in storage, in the queue, or both;
// positions remove the overlap.
//
// Memory: queued events are shared per event (one copy for all the
// subscribers that matched it), never per commit batch, so a subscriber that
// stops reading pins at most `QueueLimits::bytes` of events, however large
// the batches were.
//
// Cost: the shared copy is the chstream.v1.Event each subscriber is sent,
// serialised once (100 subscribers mean one serialisation, not 100).
// Subscriptions whose filter names company numbers are indexed by
// them, so that Publish offers a batch only to those naming one of its
// events' company numbers (and to the subscriptions without such a
// filter): 10,000 subscribers of one company each cost a hash lookup per
// event, not 10,000 filter checks per commit.
//
// Thread-safety: all methods are thread-safe. Publish holds the hub's lock
// only to pick the subscriptions to offer the batch to; filtering (a hash
// lookup per field, prepared once per subscription) and enqueueing run
// under each subscription's own lock, and each subscriber's wake callback
// (which must not block) is called after that.
//
//   auto sub = hub.Register(filter, {.events = 1024, .bytes = 8 << 20},
//                           [] { /* post a drain task */ });
//   hub.Publish(commit_result.events);  // writer thread
//   Subscription::Item item;
//   while (sub->Pop(&item)) Send(item.event->message);
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "storage/event.h"
#include "storage/store.h"

namespace chstream::server {

using EventBatch = std::shared_ptr<const std::vector<storage::Event>>;

// A committed event as the queues share it.
struct QueuedEvent {
  uint64_t position = 0;
  std::string message;  // chstream.v1.Event wire bytes (SerializeEvent)
};
using SharedEvent = std::shared_ptr<const QueuedEvent>;

// A storage::Filter prepared for O(1) checks per event: one hash set per
// field instead of a linear scan of each list.
class FilterMatcher {
 public:
  explicit FilterMatcher(const storage::Filter& filter);
  bool Matches(const storage::Event& e) const;
  // The company numbers an event must have (empty: any).
  const absl::flat_hash_set<std::string>& companies() const {
    return companies_;
  }

 private:
  absl::flat_hash_set<std::string> streams_, kinds_, companies_;
  absl::flat_hash_set<int> types_;
};

// What one subscriber's live queue may hold before it overflows.
struct QueueLimits {
  size_t events = 1024;
  size_t bytes = 8 << 20;
};

// The bytes a queued event occupies in memory (the struct and its message).
size_t ApproximateBytes(const QueuedEvent& e);

// One subscriber's live queue.
class Subscription {
 public:
  struct Item {
    SharedEvent event;
  };

  // `published_through`: the hub's last position published to every
  // subscription that matched it (shared: a subscription may outlive the
  // hub); `registered_at`: the last position the hub had picked
  // subscriptions for when this one was registered (events up to it were
  // never offered here).
  Subscription(uint64_t id, storage::Filter filter, QueueLimits limits,
               std::function<void()> wake,
               std::shared_ptr<const std::atomic<uint64_t>> published_through,
               uint64_t registered_at);

  uint64_t id() const { return id_; }
  const FilterMatcher& matcher() const { return matcher_; }

  // Pops the oldest queued event, if any.
  bool Pop(Item* item);
  // True when events were lost to overflow since the last Rearm().
  bool overflowed() const;
  // Clears the overflow mark and resumes enqueueing.
  void Rearm();
  size_t depth() const;
  size_t bytes() const;
  // When the queue is empty and not overflowed: true, and `*position` is
  // the last position published since registration (0 if none), every
  // event up to which has been examined and either queued and popped or
  // skipped by the filter. False otherwise.
  bool IdleThrough(uint64_t* position) const;

  // Stops wake-ups (the subscriber is going away).
  void Detach();

 private:
  friend class SubscriptionHub;
  // Offers the batch's events; `shared` holds the batch's per-event copies,
  // made on first use. Returns true if the subscriber should be woken.
  bool Offer(const std::vector<storage::Event>& batch,
             std::vector<SharedEvent>* shared);
  void Wake();

  const uint64_t id_;
  const FilterMatcher matcher_;
  const QueueLimits limits_;
  const std::shared_ptr<const std::atomic<uint64_t>> published_through_;
  const uint64_t registered_at_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
};

class SubscriptionHub {
 public:
  SubscriptionHub() = default;

  // Registers a live queue. `wake` is called (from the publishing thread,
  // under the subscription's lock: it must only post work elsewhere) when
  // the queue goes from empty to non-empty or overflows.
  std::shared_ptr<Subscription> Register(storage::Filter filter,
                                         QueueLimits limits,
                                         std::function<void()> wake);
  void Unregister(uint64_t id);

  // Called by the storage writer after each commit, in commit order (one
  // thread).
  void Publish(const EventBatch& batch);

  size_t size() const;
  // Subscriptions offered a batch so far, summed over the batches.
  uint64_t offers() const;

 private:
  using SubscriptionMap =
      absl::flat_hash_map<uint64_t, std::shared_ptr<Subscription>>;

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  SubscriptionMap subs_ ABSL_GUARDED_BY(mu_);
  // The subscriptions whose filter names company numbers, by each number;
  // the others, which any event may match.
  absl::flat_hash_map<std::string, SubscriptionMap> by_company_
      ABSL_GUARDED_BY(mu_);
  SubscriptionMap unindexed_ ABSL_GUARDED_BY(mu_);
  // The last position of the last batch whose subscriptions were picked.
  uint64_t picked_through_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t offers_ ABSL_GUARDED_BY(mu_) = 0;
  // Written by Publish after every offer of a batch is made.
  const std::shared_ptr<std::atomic<uint64_t>> published_through_ =
      std::make_shared<std::atomic<uint64_t>>(0);
};

}  // namespace chstream::server
