// File: server/subscription_hub.h
//
// Fans committed events out to live subscribers. The storage writer calls
// Publish() after each commit, in commit order; each subscriber has a
// bounded queue holding only the events that match its filter.
//
// A queue that would overflow is not grown and not silently trimmed: it is
// emptied and marked `overflowed`, and enqueueing stops until the subscriber
// re-arms it. The subscriber then reports fell_behind, re-arms, and reads
// storage from its last position until it reaches the head (prior-art A.10).
// Because a subscription is armed before storage is read, every event is in
// storage, in the queue, or both; positions remove the overlap.
//
// Thread-safety: all methods are thread-safe. Publish is cheap: it filters,
// copies pointers and calls each subscriber's wake callback (which must not
// block).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "storage/event.h"
#include "storage/store.h"

namespace chstream::server {

using EventBatch = std::shared_ptr<const std::vector<storage::Event>>;

// One subscriber's live queue.
class Subscription {
 public:
  struct Item {
    EventBatch batch;  // keeps the event alive
    const storage::Event* event;
  };

  Subscription(uint64_t id, storage::Filter filter, size_t capacity,
               std::function<void()> wake);

  uint64_t id() const { return id_; }

  // Pops the oldest queued event, if any.
  bool Pop(Item* item);
  // True when events were lost to overflow since the last Rearm().
  bool overflowed() const;
  // Clears the overflow mark and resumes enqueueing.
  void Rearm();
  size_t depth() const;

  // Stops wake-ups (the subscriber is going away).
  void Detach();

 private:
  friend class SubscriptionHub;
  // Returns true if the subscriber should be woken.
  bool Offer(const EventBatch& batch);
  void Wake();

  const uint64_t id_;
  const storage::Filter filter_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
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
                                         size_t capacity,
                                         std::function<void()> wake);
  void Unregister(uint64_t id);

  // Called by the storage writer after each commit, in commit order.
  void Publish(const EventBatch& batch);

  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Subscription>> subs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::server
