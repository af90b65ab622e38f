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
// heartbeats while idle (prior-art A.10).
//
// Both keep exactly one write in flight, never block in a reaction (storage
// reads run on the Executor), and hold at most one page of events.
//
// Lifetime: a reactor deletes itself once gRPC has called OnDone and no
// executor task refers to it any more.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

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

// Everything a streaming reactor needs, shared by all of them.
struct StreamContext {
  storage::Store* store;
  SubscriptionHub* hub;
  Executor* executor;
  Clock* clock;
  size_t page_size = 512;
  size_t max_scan = 20000;
  size_t subscriber_queue = 1024;
  absl::Duration max_subscriber_lag = absl::ZeroDuration();
  // Counts storage pages read for replay and catch-up (may be null).
  std::atomic<uint64_t>* pages_read = nullptr;
};

// The live Subscribe calls: limits, status listing, heartbeat ticks and
// shutdown.
class SubscriberRegistry {
 public:
  explicit SubscriberRegistry(int max_subscribers)
      : max_subscribers_(max_subscribers) {}

  // False when the limit is reached or the registry is shut down.
  bool Add(SubscribeReactor* reactor);
  void Remove(SubscribeReactor* reactor);

  std::vector<v1::SubscriberStatus> Snapshot() const;
  // Lets each subscriber send a heartbeat if one is due.
  void Tick();
  // Ends every subscriber with UNAVAILABLE after its pending write; refuses
  // new ones.
  void Shutdown();
  size_t size() const;

 private:
  const int max_subscribers_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<SubscribeReactor*> reactors_ ABSL_GUARDED_BY(mu_);
};

// Validates the request and returns a reactor (possibly one that only
// finishes with an error status).
grpc::ServerWriteReactor<v1::Event>* NewReplayReactor(
    const StreamContext& ctx, const v1::ReplayEventsRequest& request);

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
absl::StatusOr<uint64_t> ResolveStart(storage::Store* store,
                                      const v1::StartPoint& start,
                                      bool has_start, bool allow_now,
                                      uint64_t head);

}  // namespace chstream::server
