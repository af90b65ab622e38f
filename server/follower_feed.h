// File: server/follower_feed.h
//
// Live fan-out on a follower replica: turns "the leader's head moved" (from
// cluster::CommitListener) into reads by position and publishes them to the
// SubscriptionHub, exactly as the EventWriter's commit callback does on the
// leader (`hub.Publish(result.events)`): batches in position order, from
// one thread. Everything downstream of the hub (the subscribers' gapless
// hand-over, caught_up, fell_behind, heartbeats, checkpoints) is the same
// on both roles.
//
// Reads go through a PageReader (Store::ReadPage's shape: events with
// position in (after, up_to], ascending), so that the feed works with any
// store: it reads `position > published_through ORDER BY position LIMIT
// page_events` until it reaches the notified head. Each position is
// published once, in order: the feed remembers how far it published, and
// heads that are stale or repeated (the listener's safety net) do nothing.
// A failed read is retried after `retry` (the next notification or safety
// poll also wakes it).
//
// Only one publisher may feed a hub at a time: a replica that becomes the
// leader stops its feed before its writer commits (and the other way
// round).
//
// Thread-safety: NotifyHead and the accessors from any thread; CatchUpTo
// from one thread at a time (the feed's own after Start()); Start/Stop from
// the owning thread.
//
//   FollowerFeed feed(
//       [&](uint64_t after, uint64_t up_to, size_t n) {
//         return store->ReadPage(after, up_to, storage::Filter{}, n, n);
//       },
//       &hub, store->HeadPosition(), {});
//   feed.Start();
//   CommitListener listener(..., [&](uint64_t h) { feed.NotifyHead(h); });
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/subscription_hub.h"
#include "storage/store.h"

namespace chstream::server {

class FollowerFeed {
 public:
  // Events with position in (after, up_to], ascending, at most `max_events`
  // (every event: no filter). `scanned_through` says how far it looked.
  using PageReader = std::function<absl::StatusOr<storage::Page>(
      uint64_t after, uint64_t up_to, size_t max_events)>;

  struct Options {
    size_t page_events = 1000;
    absl::Duration retry = absl::Seconds(1);
  };
  struct Stats {
    uint64_t published_through = 0;  // last position published
    uint64_t head = 0;               // highest head notified
    uint64_t events_published = 0;
    uint64_t pages_read = 0;
    uint64_t read_errors = 0;
  };

  // Publishes positions after `published_through` (the store's head when
  // the follower starts: subscribers read older ones from storage).
  FollowerFeed(PageReader read, SubscriptionHub* hub,
               uint64_t published_through, Options options);
  ~FollowerFeed();  // Stop()
  FollowerFeed(const FollowerFeed&) = delete;
  FollowerFeed& operator=(const FollowerFeed&) = delete;

  // The leader's head is at least `head`. Never blocks.
  void NotifyHead(uint64_t head);

  // Reads and publishes until the feed has published through `head` (or
  // the reader finds nothing more). Returns the first read error.
  absl::Status CatchUpTo(uint64_t head);

  // Catches up to the notified head on a thread of its own until Stop().
  void Start();
  void Stop();  // Idempotent.

  Stats stats() const;

 private:
  void Run();

  const PageReader read_;
  SubscriptionHub* const hub_;
  const Options options_;

  mutable absl::Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace chstream::server
