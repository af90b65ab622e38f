// ReplayEvents and Subscribe over a real channel: start points, filters,
// limits, errors, the replay-to-live hand-over under concurrent commits,
// slow subscribers, heartbeats, checkpoints, limits, cancellation, stuck
// clients (--subscriber_write_timeout) and shutdown.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_convert.h"
#include "tests/integration/test_server.h"

namespace chstream {
namespace {

using server::kCancelGrace;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::MakeEvent;
using testing::TestServer;
using testing::TestServerOptions;

// Waits for `done` with a deadline (no fixed sleeps).
template <typename Fn>
bool WaitFor(Fn done, absl::Duration deadline = absl::Seconds(20)) {
  const absl::Time end = Clock::Real()->Now() + deadline;
  while (!done()) {
    if (Clock::Real()->Now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

std::vector<storage::Event> SomeEvents(int n, int64_t first_timepoint = 1000) {
  std::vector<storage::Event> out;
  for (int i = 0; i < n; ++i) {
    const std::string company = absl::StrCat("0000000", i % 5);
    out.push_back(MakeEvent(i % 3 == 0 ? "filings" : "companies",
                            first_timepoint + i, company,
                            i % 7 == 6 ? storage::EventType::kDeleted
                                       : storage::EventType::kChanged));
  }
  return out;
}

std::vector<storage::Event> AllStored(TestServer& server) {
  auto page = server.store()->ReadPage(0, UINT64_MAX, storage::Filter(),
                                       1'000'000, 1'000'000);
  EXPECT_TRUE(page.ok()) << page.status();
  return page.ok() ? page->events : std::vector<storage::Event>{};
}

std::vector<uint64_t> Replay(TestServer& server,
                             const v1::ReplayEventsRequest& req,
                             grpc::Status* status = nullptr) {
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->ReplayEvents(&ctx, req);
  std::vector<uint64_t> positions;
  v1::Event e;
  while (reader->Read(&e)) positions.push_back(e.position());
  grpc::Status s = reader->Finish();
  if (status != nullptr) {
    *status = s;
  } else {
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  return positions;
}

std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t p = from; p <= to; ++p) out.push_back(p);
  return out;
}

TEST(ReplayTest, EveryStartPoint) {
  TestServer server;
  server.CommitAndWait(SomeEvents(30));
  v1::ReplayEventsRequest req;
  EXPECT_THAT(Replay(server, req), ElementsAreArray(Range(1, 30)));  // unset
  req.mutable_start()->set_beginning(true);
  const uint64_t pages_before = server.service()->pages_read();
  EXPECT_THAT(Replay(server, req), ElementsAreArray(Range(1, 30)));
  EXPECT_GT(server.service()->pages_read(), pages_before);
  req.mutable_start()->set_after_position(25);
  EXPECT_THAT(Replay(server, req), ElementsAreArray(Range(26, 30)));
  req.mutable_start()->set_after_position(30);
  EXPECT_TRUE(Replay(server, req).empty());
  // published_at of timepoint t is 1'700'000'000 + t seconds.
  *req.mutable_start()->mutable_published_since() =
      server::ToTimestamp(absl::FromUnixSeconds(1'700'000'000 + 1020));
  EXPECT_THAT(Replay(server, req), ElementsAreArray(Range(21, 30)));
  // filings are timepoints 1000, 1003, ...: the first >= 1010 is 1012,
  // the 13th event.
  req.mutable_start()->mutable_stream_timepoint()->set_stream("filings");
  req.mutable_start()->mutable_stream_timepoint()->set_timepoint(1010);
  EXPECT_THAT(Replay(server, req), ElementsAreArray(Range(13, 30)));
}

TEST(ReplayTest, FiltersAndLimit) {
  TestServer server;
  std::vector<storage::Event> events = SomeEvents(40);
  server.CommitAndWait(events);
  const std::vector<storage::Event> stored = AllStored(server);
  v1::ReplayEventsRequest req;
  req.mutable_filter()->add_streams("companies");
  req.mutable_filter()->add_company_numbers("00000001");
  req.mutable_filter()->add_company_numbers("00000002");
  req.mutable_filter()->add_types(v1::EVENT_TYPE_CHANGED);
  std::vector<uint64_t> expected;
  for (const storage::Event& e : stored) {
    if (e.stream == "companies" &&
        (e.company_number == "00000001" || e.company_number == "00000002") &&
        e.type == storage::EventType::kChanged) {
      expected.push_back(e.position);
    }
  }
  ASSERT_FALSE(expected.empty());
  EXPECT_THAT(Replay(server, req), ElementsAreArray(expected));
  req.set_limit(2);
  EXPECT_THAT(Replay(server, req),
              ElementsAreArray(std::vector<uint64_t>(expected.begin(),
                                                     expected.begin() + 2)));
  v1::ReplayEventsRequest kinds;
  kinds.mutable_filter()->add_resource_kinds("filing-history");
  for (uint64_t p : Replay(server, kinds)) {
    EXPECT_EQ(stored[p - 1].resource_kind, "filing-history");
  }
}

// Verifies that a replay carries every field, data included.
TEST(ReplayTest, EventsCarryEveryField) {
  TestServer server;
  server.CommitAndWait({MakeEvent("companies", 7, "SC571653")});
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->ReplayEvents(&ctx, v1::ReplayEventsRequest());
  v1::Event e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.position(), 1u);
  EXPECT_EQ(e.stream(), "companies");
  EXPECT_EQ(e.timepoint(), 7);
  EXPECT_EQ(e.type(), v1::EVENT_TYPE_CHANGED);
  EXPECT_EQ(e.resource_kind(), "company-profile");
  EXPECT_EQ(e.resource_uri(), "/company/SC571653");
  EXPECT_EQ(e.company_number(), "SC571653");
  EXPECT_EQ(e.published_at().seconds(), 1'700'000'007);
  EXPECT_EQ(e.data().fields().at("company_name").string_value(),
            "COMPANY SC571653 LTD");
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST(ReplayTest, OutOfRangeAndInvalidArguments) {
  TestServer server;
  server.CommitAndWait(SomeEvents(5));
  grpc::Status s;
  v1::ReplayEventsRequest req;
  req.mutable_start()->set_after_position(6);
  Replay(server, req, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("[0, 5]"));

  req.mutable_start()->set_now(true);
  Replay(server, req, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::ReplayEventsRequest bad_stream;
  bad_stream.mutable_filter()->add_streams("company");
  Replay(server, bad_stream, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("companies, filings"));

  v1::ReplayEventsRequest bad_kind;
  bad_kind.mutable_filter()->add_resource_kinds("company");
  Replay(server, bad_kind, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("company-profile"));

  v1::ReplayEventsRequest bad_tp;
  bad_tp.mutable_start()->mutable_stream_timepoint()->set_stream("nope");
  Replay(server, bad_tp, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A subscriber's view of one Subscribe call.
struct Received {
  std::vector<uint64_t> positions;
  std::optional<uint64_t> first_caught_up;
  int caught_up = 0;
  int fell_behind = 0;
  int heartbeats = 0;
  grpc::Status status;
};

// Reads until `stop_at` position was received (or the call ends).
Received Follow(v1::CompanyStream::Stub* stub, const v1::SubscribeRequest& req,
                uint64_t stop_at, grpc::ClientContext* ctx) {
  Received r;
  auto reader = stub->Subscribe(ctx, req);
  v1::SubscribeResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_event()) {
      r.positions.push_back(msg.event().position());
      if (msg.event().position() >= stop_at) ctx->TryCancel();
    } else if (msg.has_caught_up()) {
      if (!r.first_caught_up) r.first_caught_up = msg.caught_up().position();
      ++r.caught_up;
      if (msg.caught_up().position() >= stop_at) ctx->TryCancel();
    } else if (msg.has_fell_behind()) {
      ++r.fell_behind;
    } else if (msg.has_heartbeat()) {
      ++r.heartbeats;
    }
  }
  r.status = reader->Finish();
  return r;
}

TEST(SubscribeTest, CatchUpThenLive) {
  TestServer server;
  server.CommitAndWait(SomeEvents(10));
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  req.mutable_start()->set_after_position(4);
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  for (uint64_t p = 5; p <= 10; ++p) {
    ASSERT_TRUE(reader->Read(&msg));
    ASSERT_TRUE(msg.has_event());
    EXPECT_EQ(msg.event().position(), p);
  }
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  EXPECT_EQ(msg.caught_up().position(), 10u);
  server.CommitAndWait(SomeEvents(3, 5000));
  for (uint64_t p = 11; p <= 13; ++p) {
    ASSERT_TRUE(reader->Read(&msg));
    ASSERT_TRUE(msg.has_event()) << msg.DebugString();
    EXPECT_EQ(msg.event().position(), p);
  }
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(SubscribeTest, UnsetStartIsNow) {
  TestServer server;
  server.CommitAndWait(SomeEvents(5));
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  EXPECT_EQ(msg.caught_up().position(), 5u);
  server.CommitAndWait(SomeEvents(1, 9000));
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_EQ(msg.event().position(), 6u);
  ctx.TryCancel();
  reader->Finish();
}

// Verifies the hand-over under every interleaving the scheduler produces:
// subscribers with random start points and filters start while events are
// being committed, some with a live queue of one; each must see exactly the
// committed events matching its filter after its start, in order, once.
void RunRandomizedHandover(size_t queue, int seed) {
  TestServerOptions options;
  options.subscriber_queue = queue;
  options.page_size = 7;  // many pages, many hand-overs
  TestServer server(options);
  std::mt19937 rng(seed);
  server.CommitAndWait(SomeEvents(50, 1));

  constexpr int kSubscribers = 6;
  constexpr int kTotalEvents = 50 + 400;
  std::vector<v1::SubscribeRequest> requests(kSubscribers);
  for (int i = 0; i < kSubscribers; ++i) {
    v1::SubscribeRequest& req = requests[i];
    switch (rng() % 4) {
      case 0:
        req.mutable_start()->set_beginning(true);
        break;
      case 1:
        req.mutable_start()->set_after_position(rng() % 50);
        break;
      case 2:
        req.mutable_start()->set_now(true);
        break;
      case 3:
        req.mutable_start()->mutable_stream_timepoint()->set_stream("filings");
        req.mutable_start()->mutable_stream_timepoint()->set_timepoint(rng() %
                                                                       60);
        break;
    }
    if (rng() % 2 == 0) req.mutable_filter()->add_streams("companies");
    if (rng() % 3 == 0) req.mutable_filter()->add_company_numbers("00000003");
  }

  struct Shared {
    absl::Mutex mu;
    Received r;
  };
  std::vector<Shared> received(kSubscribers);
  std::vector<grpc::ClientContext> contexts(kSubscribers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSubscribers; ++i) {
    threads.emplace_back([&, i] {
      auto stub = server.stub();
      auto reader = stub->Subscribe(&contexts[i], requests[i]);
      v1::SubscribeResponse msg;
      while (reader->Read(&msg)) {
        absl::MutexLock lock(&received[i].mu);
        Received& r = received[i].r;
        if (msg.has_event()) {
          r.positions.push_back(msg.event().position());
        } else if (msg.has_caught_up()) {
          if (!r.first_caught_up)
            r.first_caught_up = msg.caught_up().position();
          ++r.caught_up;
        } else if (msg.has_fell_behind()) {
          ++r.fell_behind;
        }
      }
      grpc::Status status = reader->Finish();
      absl::MutexLock lock(&received[i].mu);
      received[i].r.status = status;
    });
  }
  // Commit the rest in small random batches while the subscribers start.
  int timepoint = 51;
  for (int committed = 50; committed < kTotalEvents;) {
    const int n =
        std::min(1 + static_cast<int>(rng() % 10), kTotalEvents - committed);
    server.CommitAndWait(SomeEvents(n, timepoint));
    timepoint += n;
    committed += n;
  }
  const std::vector<storage::Event> stored = AllStored(server);
  EXPECT_EQ(stored.size(), static_cast<size_t>(kTotalEvents));

  // What each subscriber must see: matching events after its start. "now"
  // is the head at registration, which the client cannot observe: events
  // committed while it registers may come before its first caught_up, so
  // its start is taken from the first event it got (or that caught_up).
  auto now_position = [](const Received& r) {
    return r.positions.empty() || r.positions[0] > *r.first_caught_up
               ? *r.first_caught_up
               : r.positions[0] - 1;
  };
  auto expected_for = [&](int i, uint64_t now_position) {
    absl::StatusOr<storage::Filter> filter =
        server::FromProto(requests[i].filter());
    EXPECT_TRUE(filter.ok());
    const v1::StartPoint& start = requests[i].start();
    uint64_t after = 0;
    if (start.has_after_position()) after = start.after_position();
    if (start.has_now()) after = now_position;
    if (start.has_stream_timepoint()) {
      after = stored.back().position;
      for (const storage::Event& e : stored) {
        if (e.stream == "filings" &&
            e.timepoint >= start.stream_timepoint().timepoint()) {
          after = e.position - 1;
          break;
        }
      }
    }
    std::vector<uint64_t> expected;
    for (const storage::Event& e : stored) {
      if (e.position > after && filter->Matches(e)) {
        expected.push_back(e.position);
      }
    }
    return expected;
  };
  // Wait (with a deadline) until every subscriber has everything.
  for (int i = 0; i < kSubscribers; ++i) {
    EXPECT_TRUE(WaitFor([&] {
      absl::MutexLock lock(&received[i].mu);
      const Received& r = received[i].r;
      if (!r.first_caught_up) return false;
      return r.positions.size() >= expected_for(i, now_position(r)).size();
    })) << "subscriber "
        << i;
    contexts[i].TryCancel();
  }
  for (std::thread& t : threads) t.join();

  for (int i = 0; i < kSubscribers; ++i) {
    SCOPED_TRACE(
        absl::StrCat("subscriber ", i, ": ", requests[i].ShortDebugString()));
    absl::MutexLock lock(&received[i].mu);
    const Received& r = received[i].r;
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED)
        << r.status.error_message();
    ASSERT_TRUE(r.first_caught_up.has_value());
    EXPECT_THAT(r.positions,
                ElementsAreArray(expected_for(i, now_position(r))));
    if (queue == 1 && r.positions.size() > 1) {
      EXPECT_GE(r.caught_up, 1);
    }
  }
}

TEST(SubscribeTest, RandomizedHandoverHasNoGapOrDuplicate) {
  for (int seed = 1; seed <= 3; ++seed) RunRandomizedHandover(1024, seed);
}

TEST(SubscribeTest, RandomizedHandoverWithQueueOfOne) {
  for (int seed = 1; seed <= 3; ++seed) RunRandomizedHandover(1, seed);
}

// Verifies fall-back to storage: with a queue of one and a burst of
// commits, the subscriber is told fell_behind, catches up from storage,
// gets caught_up again, and still sees every event exactly once.
TEST(SubscribeTest, SlowSubscriberFallsBehindAndCatchesUp) {
  TestServerOptions options;
  options.subscriber_queue = 1;
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(1));
  v1::SubscribeRequest req;
  req.set_heartbeat_seconds(3600);  // nothing but events and hand-overs
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  // Commit a burst in several transactions before reading anything: each
  // 20-event commit overflows a live queue of 1.
  for (int i = 0; i < 10; ++i)
    server.CommitAndWait(SomeEvents(20, 100 + 20 * i));
  // Events 1..200, served from storage after each overflow, then the
  // caught_up that ends the last catch-up (nothing is committed after 200,
  // so it always comes; a commit racing the catch-up would be read from
  // storage and come before it, which is why none is made here).
  std::vector<uint64_t> positions;
  int fell_behind = 0, caught_up = 0;
  while (reader->Read(&msg)) {
    if (msg.has_event()) positions.push_back(msg.event().position());
    if (msg.has_fell_behind()) ++fell_behind;
    if (msg.has_caught_up()) {
      ++caught_up;
      if (!positions.empty() && positions.back() == 200) break;
    }
  }
  EXPECT_THAT(positions, ElementsAreArray(Range(1, 200)));
  EXPECT_GE(fell_behind, 1);
  EXPECT_GE(caught_up, 1);
  // Back to live: a new commit arrives as the very next message.
  server.CommitAndWait(SomeEvents(1, 9000));
  ASSERT_TRUE(reader->Read(&msg)) << reader->Finish().error_message();
  ASSERT_TRUE(msg.has_event()) << msg.DebugString();
  EXPECT_EQ(msg.event().position(), 201u);
  auto status = server.service()->subscribers().Snapshot();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_GE(status[0].fell_behind_total(), 1u);
  EXPECT_TRUE(status[0].live());
  ctx.TryCancel();
  reader->Finish();
}

TEST(SubscribeTest, HeartbeatsWhileIdle) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  TestServer server(options);
  server.CommitAndWait(SomeEvents(3));
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  req.set_heartbeat_seconds(5);
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  clock.Advance(absl::Seconds(6));
  ASSERT_TRUE(reader->Read(&msg));  // the ticker runs every 200 ms
  ASSERT_TRUE(msg.has_heartbeat()) << msg.DebugString();
  EXPECT_EQ(msg.heartbeat().last_position(), 3u);
  EXPECT_EQ(msg.heartbeat().head_position(), 3u);
  EXPECT_EQ(msg.heartbeat().server_time().seconds(), 1'800'000'006);
  ctx.TryCancel();
  reader->Finish();
}

// Messages that have more behind them are written with gRPC's buffer hint
// (held until a later write flushes them). With the clock frozen no
// heartbeat can do that flushing: every message of a catch-up run and of
// each live burst must still arrive on its own.
TEST(SubscribeTest, EveryMessageOfABurstArrivesWithoutAHeartbeat) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  TestServer server(options);
  server.CommitAndWait(SomeEvents(300));
  auto stub = server.stub();
  grpc::ClientContext ctx;
  // A held message shows up as DEADLINE_EXCEEDED, not as a hung test.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(1));
  v1::SubscribeRequest req;
  req.mutable_start()->set_beginning(true);
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  uint64_t expected = 1;
  // Reads the next `n` messages: events at the next positions.
  auto expect_events = [&](int n) {
    for (int i = 0; i < n; ++i, ++expected) {
      ASSERT_TRUE(reader->Read(&msg)) << reader->Finish().error_message();
      ASSERT_TRUE(msg.has_event()) << msg.DebugString();
      ASSERT_EQ(msg.event().position(), expected);
    }
  };
  expect_events(300);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up()) << msg.DebugString();
  int64_t timepoint = 10'000;
  for (int burst : {1, 2, 3, 50, 400}) {
    SCOPED_TRACE(absl::StrCat("burst of ", burst));
    server.CommitAndWait(SomeEvents(burst, timepoint));
    timepoint += burst;
    expect_events(burst);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
  }
  ctx.TryCancel();
  reader->Finish();
}

TEST(SubscribeTest, InvalidArguments) {
  TestServer server;
  server.CommitAndWait(SomeEvents(3));
  auto stub = server.stub();
  {
    grpc::ClientContext ctx;
    v1::SubscribeRequest req;
    req.set_heartbeat_seconds(100000);
    Received r = Follow(stub.get(), req, 0, &ctx);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(r.status.error_message(), HasSubstr("heartbeat_seconds"));
  }
  {
    grpc::ClientContext ctx;
    v1::SubscribeRequest req;
    req.mutable_start()->set_after_position(99);
    Received r = Follow(stub.get(), req, 0, &ctx);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
    EXPECT_THAT(r.status.error_message(), HasSubstr("[0, 3]"));
  }
  {
    grpc::ClientContext ctx;
    v1::SubscribeRequest req;
    req.mutable_filter()->add_types(static_cast<v1::EventType>(9));
    Received r = Follow(stub.get(), req, 0, &ctx);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST(SubscribeTest, MaxSubscribersAndCancellationReleases) {
  TestServerOptions options;
  options.max_subscribers = 2;
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext c1, c2, c3;
  auto r1 = stub->Subscribe(&c1, v1::SubscribeRequest());
  auto r2 = stub->Subscribe(&c2, v1::SubscribeRequest());
  v1::SubscribeResponse msg;
  ASSERT_TRUE(r1->Read(&msg));
  ASSERT_TRUE(r2->Read(&msg));
  auto r3 = stub->Subscribe(&c3, v1::SubscribeRequest());
  EXPECT_FALSE(r3->Read(&msg));
  grpc::Status s3 = r3->Finish();
  EXPECT_EQ(s3.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s3.error_message(), HasSubstr("--max_subscribers"));
  EXPECT_EQ(server.service()->subscribers().size(), 2u);
  c1.TryCancel();
  r1->Finish();
  EXPECT_TRUE(WaitFor([&] {
    return server.service()->subscribers().size() == 1 &&
           server.hub()->size() == 1;
  }));
  c2.TryCancel();
  r2->Finish();
  EXPECT_TRUE(WaitFor([&] {
    return server.service()->subscribers().size() == 0 &&
           server.hub()->size() == 0;
  }));
}

TEST(SubscribeTest, StatusListsSubscribers) {
  TestServer server;
  server.CommitAndWait(SomeEvents(4));
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  req.mutable_start()->set_beginning(true);
  req.mutable_filter()->add_streams("companies");
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  do {
    ASSERT_TRUE(reader->Read(&msg));
  } while (!msg.has_caught_up());
  v1::GetStatusResponse status;
  grpc::ClientContext sctx;
  ASSERT_TRUE(stub->GetStatus(&sctx, v1::GetStatusRequest(), &status).ok());
  ASSERT_EQ(status.subscribers_size(), 1);
  const v1::SubscriberStatus& s = status.subscribers(0);
  EXPECT_TRUE(s.live());
  EXPECT_EQ(s.filter(), "streams=companies");
  EXPECT_EQ(s.events_sent(), 2u);  // timepoints 1001 and 1002
  EXPECT_EQ(s.last_position(), 4u);
  EXPECT_THAT(s.peer(), HasSubstr("127.0.0.1"));
  ctx.TryCancel();
  reader->Finish();
}

// Verifies --max_subscriber_lag: a consumer that stops reading while it is
// behind (its writes stall on flow control) is ended with RESOURCE_EXHAUSTED
// once it has been behind for longer than the limit.
TEST(SubscribeTest, LaggingSubscriberIsEndedWithResourceExhausted) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  options.subscriber_queue = 1;
  options.max_subscriber_lag = absl::Seconds(30);
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  // ~40 MB of events: far more than HTTP/2 flow control lets through to a
  // client that does not read.
  std::vector<storage::Event> big = SomeEvents(4000);
  const std::string payload(10'000, 'x');
  for (storage::Event& e : big) {
    e.data_pb = testing::StructWithString("blob", payload);
  }
  server.CommitAndWait(std::move(big));
  do {
    ASSERT_TRUE(reader->Read(&msg));
  } while (!msg.has_fell_behind());
  // Stop reading; once the server has been behind for over 30 s it ends the
  // call even though its write is stalled.
  clock.Advance(absl::Seconds(31));
  // Its slot and live queue are released at once, before the client reads.
  EXPECT_TRUE(WaitFor([&] {
    return server.service()->subscribers().size() == 0 &&
           server.hub()->size() == 0;
  }));
  while (reader->Read(&msg)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_subscriber_lag"));
}

// ---------------------------------------------------------------------------
// Clients that stop reading (--subscriber_write_timeout).

// A stub on its own connection whose HTTP/2 window stays at the 64 KiB
// default (no BDP probing): a few hundred KB of unread messages stall the
// server's writes, as they do for a stopped (SIGSTOP) process.
std::unique_ptr<v1::CompanyStream::Stub> NonReadingStub(TestServer& server) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // A channel of its own, not shared with other stubs.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::CompanyStream::NewStub(grpc::CreateCustomChannel(
      server.address(), grpc::InsecureChannelCredentials(), args));
}

// Events carrying `bytes` of data each.
std::vector<storage::Event> BigEvents(int n, int64_t first_timepoint,
                                      size_t bytes) {
  std::vector<storage::Event> events = SomeEvents(n, first_timepoint);
  const std::string payload(bytes, 'x');
  for (storage::Event& e : events) {
    e.data_pb = testing::StructWithString("blob", payload);
  }
  return events;
}

// Commits in chunks (each chunk well under a subscriber queue's limits).
void CommitInChunks(TestServer& server, std::vector<storage::Event> events,
                    size_t chunk) {
  for (size_t i = 0; i < events.size(); i += chunk) {
    const size_t end = std::min(events.size(), i + chunk);
    server.CommitAndWait({std::make_move_iterator(events.begin() + i),
                          std::make_move_iterator(events.begin() + end)});
  }
}

struct FrozenCall {
  std::unique_ptr<v1::CompanyStream::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> reader;
};

// Verifies item 1 of issue 9: subscribers that stop reading (live, and one
// catching up) are ended within --subscriber_write_timeout + 5 s, their
// slots, live queues and reactors are released, and a subscriber that keeps
// reading sees every event and no fell_behind.
//
// The clock is a FakeClock, moved on only once the healthy subscriber has
// read everything: on a loaded machine a real 2 s timeout could also end the
// healthy subscriber whenever its reader thread is not scheduled for 2 s.
TEST(SubscriberWriteTimeoutTest, FrozenSubscribersAreEndedAndReleased) {
  constexpr absl::Duration kTimeout = absl::Seconds(30);
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  options.subscriber_write_timeout = kTimeout;
  options.max_subscribers = 4;
  TestServer server(options);
  server.CommitAndWait(BigEvents(300, 1, 4000));

  // The healthy subscriber reads everything from now on.
  std::atomic<int> healthy_events{0}, healthy_fell_behind{0};
  std::atomic<bool> healthy_live{false};
  grpc::ClientContext healthy_ctx;
  std::thread healthy([&] {
    auto stub = server.stub();
    v1::SubscribeRequest req;
    req.set_heartbeat_seconds(3600);
    auto reader = stub->Subscribe(&healthy_ctx, req);
    v1::SubscribeResponse msg;
    while (reader->Read(&msg)) {
      if (msg.has_caught_up()) healthy_live = true;
      if (msg.has_event()) ++healthy_events;
      if (msg.has_fell_behind()) ++healthy_fell_behind;
    }
    reader->Finish();
  });
  ASSERT_TRUE(WaitFor([&] { return healthy_live.load(); }));

  // Three that read their first message, then nothing: two live, one
  // catching up from the 1.2 MB already stored.
  std::vector<std::unique_ptr<FrozenCall>> frozen;
  for (int i = 0; i < 3; ++i) {
    auto call = std::make_unique<FrozenCall>();
    call->stub = NonReadingStub(server);
    v1::SubscribeRequest req;
    req.set_heartbeat_seconds(3600);
    if (i == 2) req.mutable_start()->set_beginning(true);
    call->reader = call->stub->Subscribe(&call->ctx, req);
    v1::SubscribeResponse msg;
    ASSERT_TRUE(call->reader->Read(&msg));
    frozen.push_back(std::move(call));
  }
  EXPECT_EQ(server.service()->subscribers().size(), 4u);

  // 2.4 MB more, in chunks the healthy subscriber's queue always holds.
  CommitInChunks(server, BigEvents(600, 1000, 4000), 50);
  ASSERT_TRUE(WaitFor([&] { return healthy_events.load() == 600; }));

  // Past the timeout the frozen ones are gone from the registry and the
  // hub (a write that started after an advance needs one more)...
  bool ended = false;
  for (int i = 0; i < 50 && !ended; ++i) {
    clock.Advance(kTimeout + absl::Seconds(1));
    ended = WaitFor(
        [&] {
          return server.service()->subscribers().size() == 1 &&
                 server.hub()->size() == 1;
        },
        absl::Seconds(1));
  }
  EXPECT_TRUE(ended);
  // ...and, the grace for them to read the status over, their calls are
  // reset and the reactors freed.
  clock.Advance(kCancelGrace + absl::Seconds(1));
  EXPECT_TRUE(
      WaitFor([&] { return server.service()->subscribers().draining() == 0; }));
  EXPECT_EQ(healthy_fell_behind.load(), 0);
  EXPECT_EQ(healthy_events.load(), 600);

  // A freed slot is usable at once.
  {
    grpc::ClientContext ctx;
    auto stub = server.stub();
    auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
    v1::SubscribeResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    EXPECT_TRUE(msg.has_caught_up());
    ctx.TryCancel();
    reader->Finish();
  }
  for (auto& call : frozen) {
    v1::SubscribeResponse msg;
    while (call->reader->Read(&msg)) {
    }
    const grpc::Status s = call->reader->Finish();
    EXPECT_THAT(s.error_code(),
                ::testing::AnyOf(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 grpc::StatusCode::CANCELLED))
        << s.error_message();
  }
  healthy_ctx.TryCancel();
  healthy.join();
}

// Advances `clock` by more than the write timeout until no subscriber is
// left (a write that started before an advance is then over the timeout).
// Each step waits up to 5 s of real time for the ticker: one more advance
// after the call ended would also pass kCancelGrace and reset the call
// (seen with a 1 s wait on a loaded machine).
bool AdvanceUntilEnded(TestServer& server, FakeClock& clock) {
  for (int i = 0; i < 20; ++i) {
    clock.Advance(absl::Seconds(31));
    if (WaitFor([&] { return server.service()->subscribers().size() == 0; },
                absl::Seconds(5))) {
      return true;
    }
  }
  return false;
}

// Verifies the two stages of ending a stuck call: the reason is queued
// behind the unread messages (a client that reads again gets it), and a
// client that still reads nothing kCancelGrace later is reset (CANCELLED),
// which frees the reactor.
TEST(SubscriberWriteTimeoutTest, StatusSaysWhyThenTheStreamIsReset) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  options.subscriber_write_timeout = absl::Seconds(30);
  TestServer server(options);
  v1::SubscribeRequest req;
  req.set_heartbeat_seconds(3600);
  int64_t timepoint = 1;
  for (bool reads_again : {true, false}) {
    SCOPED_TRACE(reads_again ? "reads again" : "never reads again");
    FrozenCall call;
    call.stub = NonReadingStub(server);
    call.reader = call.stub->Subscribe(&call.ctx, req);
    v1::SubscribeResponse msg;
    ASSERT_TRUE(call.reader->Read(&msg));
    ASSERT_TRUE(msg.has_caught_up());
    server.CommitAndWait(BigEvents(300, timepoint, 4000));
    timepoint += 300;
    ASSERT_TRUE(AdvanceUntilEnded(server, clock));
    EXPECT_EQ(server.hub()->size(), 0u);  // the live queue is freed at once
    EXPECT_EQ(server.service()->subscribers().draining(), 1u);
    if (!reads_again) {
      clock.Advance(kCancelGrace + absl::Seconds(1));
      EXPECT_TRUE(WaitFor(
          [&] { return server.service()->subscribers().draining() == 0; }));
    }
    int events = 0;
    while (call.reader->Read(&msg)) events += msg.has_event();
    const grpc::Status s = call.reader->Finish();
    if (reads_again) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_THAT(s.error_message(),
                  HasSubstr("--subscriber_write_timeout=30s"));
      EXPECT_THAT(s.error_message(), HasSubstr("resume with after_position"));
      EXPECT_GT(events, 0);
      EXPECT_LT(events, 300);
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
    }
    EXPECT_TRUE(WaitFor(
        [&] { return server.service()->subscribers().draining() == 0; }));
  }
}

// Verifies that a ReplayEvents client that stops reading is ended too (and
// frees its --max_replays slot), and that --max_replays is enforced.
TEST(SubscriberWriteTimeoutTest, FrozenReplayIsEndedAndMaxReplaysEnforced) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  options.subscriber_write_timeout = absl::Seconds(30);
  options.max_replays = 1;
  TestServer server(options);
  server.CommitAndWait(BigEvents(300, 1, 4000));
  auto frozen_stub = NonReadingStub(server);
  grpc::ClientContext frozen_ctx;
  auto frozen =
      frozen_stub->ReplayEvents(&frozen_ctx, v1::ReplayEventsRequest());
  v1::Event e;
  ASSERT_TRUE(frozen->Read(&e));
  EXPECT_EQ(server.service()->subscribers().replays(), 1u);

  grpc::Status s;
  Replay(server, v1::ReplayEventsRequest(), &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_replays=1"));

  bool ended = false;
  for (int i = 0; i < 50 && !ended; ++i) {
    clock.Advance(absl::Seconds(31));
    ended =
        WaitFor([&] { return server.service()->subscribers().replays() == 0; },
                absl::Seconds(1));
  }
  ASSERT_TRUE(ended);
  // The slot is free: a replay that reads gets everything.
  EXPECT_THAT(Replay(server, v1::ReplayEventsRequest()),
              ElementsAreArray(Range(1, 300)));
  while (frozen->Read(&e)) {
  }
  s = frozen->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("ReplayEvents"));
}

// Verifies that --max_subscriber_lag firing between the decision to write
// and the StartWrite call (here: the ticker runs right there) does not call
// Finish before that StartWrite (gRPC does not allow a write after Finish):
// the Finish waits for the StartWrite call, and the client gets the
// fell_behind being written, then the lag status.
TEST(SubscribeTest, LagLimitFiringBeforeAStartWriteWaitsForIt) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  std::atomic<bool> armed{false};
  TestServer* server_ptr = nullptr;
  TestServerOptions options;
  options.clock = &clock;
  options.subscriber_queue = 1;
  options.max_subscriber_lag = absl::Seconds(30);
  options.before_start_write = [&] {
    if (armed.exchange(false)) {
      clock.Advance(absl::Seconds(31));
      server_ptr->service()->subscribers().Tick();
    }
  };
  TestServer server(options);
  server_ptr = &server;
  auto stub = server.stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(1));
  v1::SubscribeRequest req;
  req.set_heartbeat_seconds(3600);
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  // The next write is the fell_behind of this overflow (queue of one).
  armed = true;
  server.CommitAndWait(SomeEvents(20));
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_TRUE(msg.has_fell_behind()) << msg.DebugString();
  while (reader->Read(&msg)) {
  }
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("--max_subscriber_lag"));
  EXPECT_TRUE(WaitFor([&] {
    return server.service()->subscribers().size() == 0 &&
           server.service()->subscribers().draining() == 0;
  }));
}

// Verifies that GetStatus never lists a subscriber before its live queue
// exists (its id would read "0").
TEST(SubscribeTest, StatusNeverListsAHalfBuiltSubscriber) {
  TestServer server;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, seen{0};
  std::thread poller([&] {
    while (!stop.load()) {
      for (const v1::SubscriberStatus& s :
           server.service()->subscribers().Snapshot()) {
        ++seen;
        if (s.id() == "0") ++bad;
      }
    }
  });
  auto stub = server.stub();
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
    v1::SubscribeResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    ctx.TryCancel();
    reader->Finish();
  }
  stop = true;
  poller.join();
  EXPECT_GT(seen.load(), 0);
  EXPECT_EQ(bad.load(), 0);
}

// ---------------------------------------------------------------------------
// Checkpoints.

// Verifies item 5 of issue 9: catching up over a long log with a filter
// that matches almost nothing, the subscriber gets a checkpoint at least
// every heartbeat period (each storage read takes 1 s on the FakeClock),
// each one further on and never past what was sent.
TEST(CheckpointTest, NarrowFilterCatchUpSendsCheckpoints) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  options.max_scan = 100;  // 50 storage reads for 5,000 events
  options.before_read = [&clock] { clock.Advance(absl::Seconds(1)); };
  TestServer server(options);
  CommitInChunks(server, SomeEvents(5000), 1000);
  server.CommitAndWait({MakeEvent("companies", 90'000, "SC000001")});
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  req.mutable_start()->set_beginning(true);
  req.mutable_filter()->add_company_numbers("SC000001");
  req.set_heartbeat_seconds(5);
  auto reader = stub->Subscribe(&ctx, req);
  std::vector<uint64_t> checkpoints;
  v1::SubscribeResponse msg;
  while (reader->Read(&msg) && !msg.has_event()) {
    ASSERT_TRUE(msg.has_checkpoint()) << msg.DebugString();
    checkpoints.push_back(msg.checkpoint().position());
    EXPECT_EQ(msg.checkpoint().head_position(), 5001u);
  }
  ASSERT_TRUE(msg.has_event());
  EXPECT_EQ(msg.event().position(), 5001u);
  // ~50 s of reads at one checkpoint per 5 s.
  EXPECT_GE(checkpoints.size(), 5u);
  EXPECT_TRUE(std::is_sorted(checkpoints.begin(), checkpoints.end()));
  EXPECT_LT(checkpoints.back(), 5001u);
  EXPECT_GT(checkpoints.back(), 0u);
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  EXPECT_EQ(msg.caught_up().position(), 5001u);
  ctx.TryCancel();
  reader->Finish();
}

// Verifies that live with a filter, the heartbeat's last_position moves
// past the events the filter skipped.
TEST(CheckpointTest, LiveHeartbeatAdvancesPastSkippedEvents) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  TestServerOptions options;
  options.clock = &clock;
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  req.mutable_filter()->add_company_numbers("SC000001");
  req.set_heartbeat_seconds(5);
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  server.CommitAndWait(SomeEvents(40));  // none matches
  clock.Advance(absl::Seconds(6));
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_heartbeat()) << msg.DebugString();
  EXPECT_EQ(msg.heartbeat().last_position(), 40u);
  ctx.TryCancel();
  reader->Finish();
}

// ---------------------------------------------------------------------------
// Request limits and fairness.

TEST(FilterLimitsTest, ListsAreCappedAndStatusShowsASummary) {
  TestServer server;
  auto stub = server.stub();
  v1::SubscribeRequest big;
  for (int i = 0; i < 1001; ++i) {
    big.mutable_filter()->add_company_numbers(absl::StrFormat("%08d", i));
  }
  {
    grpc::ClientContext ctx;
    Received r = Follow(stub.get(), big, 0, &ctx);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(r.status.error_message(),
                HasSubstr("filter.company_numbers has 1001 entries; at most "
                          "1000 are allowed"));
  }
  {
    v1::ReplayEventsRequest req;
    for (int i = 0; i < 101; ++i) req.mutable_filter()->add_streams("filings");
    grpc::Status s;
    Replay(server, req, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("at most 100"));
  }
  big.mutable_filter()->mutable_company_numbers()->RemoveLast();
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, big);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  v1::GetStatusResponse status;
  grpc::ClientContext sctx;
  ASSERT_TRUE(stub->GetStatus(&sctx, v1::GetStatusRequest(), &status).ok());
  ASSERT_EQ(status.subscribers_size(), 1);
  EXPECT_EQ(status.subscribers(0).filter(),
            "companies=1000 company numbers "
            "(00000000|00000001|00000002|00000003|00000004|...)");
  EXPECT_LT(status.ByteSizeLong(), 1000u);
  ctx.TryCancel();
  reader->Finish();
}

// Verifies that storage reads (replays, catch-up) run apart from live
// delivery: with every storage read thread held, live events still arrive.
TEST(FairnessTest, LiveDeliveryDoesNotWaitForStorageReads) {
  absl::Mutex mu;
  bool hold = false;
  TestServerOptions options;
  options.before_read = [&] {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](bool* h) { return !*h; }, &hold));
  };
  TestServer server(options);
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, v1::SubscribeRequest());
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  {
    absl::MutexLock lock(&mu);
    hold = true;
  }
  server.CommitAndWait(SomeEvents(50));
  // Replays take both read threads (and wait).
  std::vector<std::thread> replays;
  for (int i = 0; i < 4; ++i) {
    replays.emplace_back([&] {
      // Up to the head when its start point is read (50 or 53).
      EXPECT_GE(Replay(server, v1::ReplayEventsRequest()).size(), 50u);
    });
  }
  server.CommitAndWait(SomeEvents(3, 5000));
  for (uint64_t p = 1; p <= 53; ++p) {
    ASSERT_TRUE(reader->Read(&msg));
    ASSERT_TRUE(msg.has_event()) << msg.DebugString();
    EXPECT_EQ(msg.event().position(), p);
  }
  {
    absl::MutexLock lock(&mu);
    hold = false;
  }
  for (std::thread& t : replays) t.join();
  ctx.TryCancel();
  reader->Finish();
}

// Verifies the per-connection stream limit (GrpcServer,
// kMaxConcurrentStreamsPerConnection): one connection carries that many
// live subscribers (gRPC's default of 100 stopped the 10,000-subscriber
// benchmark at 5,000 over 50 connections), and a stream past the limit
// waits in the client, without an error, until one of them ends.
TEST(ConnectionLimitsTest, OneConnectionCarriesSubscribersUpToTheStreamLimit) {
  constexpr int kLimit = server::kMaxConcurrentStreamsPerConnection;
  static_assert(kLimit >= 200, "10,000 subscribers over 50 connections");
  TestServerOptions options;
  options.max_subscribers = kLimit + 10;
  TestServer server(options);
  auto stub = server.stub();  // every call on this one connection
  struct Call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientAsyncReader<v1::SubscribeResponse>> reader;
    v1::SubscribeResponse msg;
    bool caught_up = false;
    bool ended = false;  // a read failed: the call ended
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  // Tags: 3 * i + 0 started, + 1 read, + 2 finished.
  const auto tag = [](size_t i, int what) {
    return reinterpret_cast<void*>(static_cast<uintptr_t>(3 * i + what));
  };
  for (int i = 0; i <= kLimit; ++i) {
    auto call = std::make_unique<Call>();
    call->reader =
        stub->PrepareAsyncSubscribe(&call->ctx, v1::SubscribeRequest(), &cq);
    call->reader->StartCall(tag(calls.size(), 0));
    calls.push_back(std::move(call));
  }
  int caught_up = 0;
  // Runs the completion queue until `done` or the deadline.
  const auto run = [&](const std::function<bool()>& done) {
    const absl::Time end = Clock::Real()->Now() + absl::Seconds(60);
    while (!done()) {
      void* got;
      bool ok;
      const auto status = cq.AsyncNext(
          &got, &ok,
          std::chrono::system_clock::now() + std::chrono::milliseconds(100));
      if (status == grpc::CompletionQueue::TIMEOUT) {
        if (Clock::Real()->Now() > end) return false;
        continue;
      }
      if (status != grpc::CompletionQueue::GOT_EVENT) return false;
      const uintptr_t t = reinterpret_cast<uintptr_t>(got);
      Call& call = *calls[t / 3];
      if (t % 3 == 0 && ok) {
        call.reader->Read(&call.msg, tag(t / 3, 1));
      } else if (t % 3 == 0 || (t % 3 == 1 && !ok)) {
        call.ended = true;
      } else {
        if (call.msg.has_caught_up()) {
          call.caught_up = true;
          ++caught_up;
        }
        call.reader->Read(&call.msg, tag(t / 3, 1));  // read on
      }
    }
    return true;
  };
  ASSERT_TRUE(run([&] { return caught_up == kLimit; }));
  EXPECT_EQ(server.service()->subscribers().size(),
            static_cast<size_t>(kLimit));
  // The one past the limit has not ended (it was not refused).
  const auto waiting = std::find_if(
      calls.begin(), calls.end(), [](const auto& c) { return !c->caught_up; });
  ASSERT_NE(waiting, calls.end());
  EXPECT_FALSE((*waiting)->ended);

  // One ends: the waiting one goes live.
  Call& first = **std::find_if(calls.begin(), calls.end(),
                               [](const auto& c) { return c->caught_up; });
  first.ctx.TryCancel();
  ASSERT_TRUE(run([&] { return caught_up == kLimit + 1 && first.ended; }));
  EXPECT_TRUE((*waiting)->caught_up);
  EXPECT_EQ(std::count_if(calls.begin(), calls.end(),
                          [](const auto& c) { return c->ended; }),
            1);

  for (size_t i = 0; i < calls.size(); ++i) {
    calls[i]->ctx.TryCancel();
  }
  cq.Shutdown();
  void* got;
  bool ok;
  while (cq.Next(&got, &ok)) {
  }
}

}  // namespace
}  // namespace chstream
