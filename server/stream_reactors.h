// File: server/stream_reactors.h
//
// The two server-streaming calls of chstream.v1.CompanyStream:
//
// ReplayEvents: stored events from a start point up to the head as of the
// call (or `limit`), read from storage a page at a time.
//
// Subscribe: registers a live queue in the SubscriptionHub first, then reads
// storage from the start point, sends caught_up, then live events; falls
// back to storage (fell_behind ... caught_up) when its queue overflows; sends
// heartbeats while idle (prior-art A.10), and checkpoints while catching up
// (how far storage has been scanned, so that a narrow filter over a long log
// still makes visible progress).
//
// Both keep exactly one write in flight, never block in a reaction (storage
// reads run on the read Executor, sends on the live one), and hold at most
// one page of events.
//
// Stuck clients: a write that has not completed after `write_timeout` ends
// the call with RESOURCE_EXHAUSTED (the status is queued behind the stuck
// message; the slot and live queue are released at once). If gRPC has not
// ended the call `kCancelGrace` later (the client still does not read), the
// call is cancelled (ServerContext::TryCancel: the stream is reset, the
// client sees CANCELLED) so that the reactor and the HTTP/2 stream are freed.
// Finish is never called while a StartWrite call is still running on another
// thread (a Finish decided then is deferred to the end of that call), and
// TryCancel never after OnDone.
//
// Lifetime: a reactor deletes itself once gRPC has called OnDone and no
// executor task refers to it any more.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "chstream/v1/chstream.pb.h"
#include "server/executor.h"
#include "server/subscription_hub.h"
#include "storage/store.h"

namespace chstream::server {

class SubscribeReactor;

// How long a call whose Finish is stuck behind an unread message may stay
// before it is cancelled (see the file comment).
inline constexpr absl::Duration kCancelGrace = absl::Seconds(3);

// Everything a streaming reactor needs, shared by all of them.
struct StreamContext {
  storage::EventStore* store = nullptr;
  SubscriptionHub* hub = nullptr;
  // Live delivery: wake-ups and sends.
  Executor* executor = nullptr;
  // Storage reads (start points, replay and catch-up pages), on their own
  // threads so that many replays cannot delay live sends; null = executor.
  Executor* read_executor = nullptr;
  Clock* clock = nullptr;
  size_t page_size = 512;
  size_t max_scan = 20000;
  QueueLimits subscriber_queue;
  absl::Duration max_subscriber_lag = absl::ZeroDuration();
  // A write not completed within this ends the call; 0 = never.
  absl::Duration write_timeout = absl::ZeroDuration();
  // Counts storage pages read for replay and catch-up (may be null).
  std::atomic<uint64_t>* pages_read = nullptr;
  // Tests only: runs after a write was decided, just before StartWrite
  // (where a concurrent Finish used to slip in).
  std::function<void()> before_start_write;
};

// What the registry holds of a streaming reactor: reference counting and a
// periodic tick (heartbeats, checkpoints, write timeouts).
class TickedStream {
 public:
  virtual void Ref() = 0;
  virtual void Unref() = 0;
  virtual void Tick() = 0;

 protected:
  virtual ~TickedStream() = default;
};

// The open streaming calls: limits (--max_subscribers, --max_replays),
// status listing, ticks and shutdown. Also ticks calls that were finished
// with a write still pending until gRPC ends them (see kCancelGrace).
class SubscriberRegistry {
 public:
  // `max_replays` 0 = no limit.
  explicit SubscriberRegistry(int max_subscribers, int max_replays = 0)
      : max_subscribers_(max_subscribers), max_replays_(max_replays) {}

  // False when the limit is reached or the registry is shut down.
  bool Add(SubscribeReactor* reactor);
  void Remove(SubscribeReactor* reactor);
  // The same for ReplayEvents calls and --max_replays.
  bool AddReplay(TickedStream* replay);
  void RemoveReplay(TickedStream* replay);
  // A finished call whose last write is still pending; removed by OnDone.
  void AddDraining(TickedStream* stream);
  void RemoveDraining(TickedStream* stream);

  std::vector<v1::SubscriberStatus> Snapshot() const;
  // Lets each stream send a heartbeat or checkpoint if one is due and
  // enforce its timeouts.
  void Tick();
  // Ends every subscriber with UNAVAILABLE after its pending write; refuses
  // new ones.
  void Shutdown();
  size_t size() const;
  size_t replays() const;
  size_t draining() const;
  int max_replays() const { return max_replays_; }

 private:
  const int max_subscribers_;
  const int max_replays_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<SubscribeReactor*> reactors_ ABSL_GUARDED_BY(mu_);
  std::vector<TickedStream*> replays_ ABSL_GUARDED_BY(mu_);
  std::vector<TickedStream*> draining_ ABSL_GUARDED_BY(mu_);
};

// Validates the request and returns a reactor (possibly one that only
// finishes with an error status).
grpc::ServerWriteReactor<v1::Event>* NewReplayReactor(
    const StreamContext& ctx, SubscriberRegistry* registry,
    grpc::CallbackServerContext* call, const v1::ReplayEventsRequest& request);

grpc::ServerWriteReactor<v1::SubscribeResponse>* NewSubscribeReactor(
    const StreamContext& ctx, SubscriberRegistry* registry,
    grpc::CallbackServerContext* call, const v1::SubscribeRequest& request);

// The initial metadata key that carries the store_id to every ReplayEvents
// and Subscribe caller (the first message carries it too).
inline constexpr char kStoreIdMetadataKey[] = "chstream-store-id";

// FAILED_PRECONDITION when a request's `expected_store_id` is set and is not
// `store_id`: the client's position belongs to another store identity and may
// mean another event here.
absl::Status CheckExpectedStoreId(const std::string& expected,
                                  const std::string& store_id);

// Turns a StartPoint into the position to read after. `allow_now` is false
// for ReplayEvents. Out-of-range positions are OUT_OF_RANGE with the valid
// range in the message.
absl::StatusOr<uint64_t> ResolveStart(storage::EventStore* store,
                                      const v1::StartPoint& start,
                                      bool has_start, bool allow_now,
                                      uint64_t head);

}  // namespace chstream::server
