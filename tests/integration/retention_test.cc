// Retention seen by clients over a real channel: a ReplayEvents or Subscribe
// cursor before the oldest stored event is OUT_OF_RANGE with the valid
// range, "beginning" starts at the oldest stored event, and a subscriber
// catching up whose next event is pruned under it gets OUT_OF_RANGE instead
// of a silent jump.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_server.h"

namespace chstream {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::MakeEvent;
using testing::TestServer;
using testing::TestServerOptions;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

// `n` filings events from `first_timepoint`, received at `at`.
std::vector<storage::Event> EventsAt(int n, int64_t first_timepoint,
                                     absl::Time at) {
  std::vector<storage::Event> out;
  for (int i = 0; i < n; ++i) {
    storage::Event e = MakeEvent("filings", first_timepoint + i, "00000001");
    e.received_at = at;
    out.push_back(std::move(e));
  }
  return out;
}

// Deletes what a 1 h retention no longer keeps at `now`.
void Prune(storage::Store* store, absl::Time now) {
  storage::RetentionPolicy policy;
  policy.events_for = absl::Hours(1);
  while (true) {
    absl::StatusOr<storage::PruneStepResult> r = store->PruneStep(policy, now);
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->more) break;
  }
}

std::vector<uint64_t> Replay(TestServer& server,
                             const v1::ReplayEventsRequest& req,
                             grpc::Status* status) {
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->ReplayEvents(&ctx, req);
  std::vector<uint64_t> positions;
  v1::Event e;
  while (reader->Read(&e)) positions.push_back(e.position());
  *status = reader->Finish();
  return positions;
}

// Subscribes and reads events until `stop_at` (then cancels) or the end.
std::vector<uint64_t> Subscribe(TestServer& server,
                                const v1::SubscribeRequest& req,
                                uint64_t stop_at, grpc::Status* status) {
  auto stub = server.stub();
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, req);
  std::vector<uint64_t> positions;
  v1::SubscribeResponse msg;
  while (reader->Read(&msg)) {
    if (!msg.has_event()) continue;
    positions.push_back(msg.event().position());
    if (msg.event().position() >= stop_at) ctx.TryCancel();
  }
  *status = reader->Finish();
  return positions;
}

// Positions 1..20 received at kT0, 21..25 two hours later; a 1 h retention
// at that time keeps 21..25.
void CommitAndPrune(TestServer& server) {
  server.CommitAndWait(EventsAt(20, 100, kT0));
  server.CommitAndWait(EventsAt(5, 200, kT0 + absl::Hours(2)));
  Prune(server.store(), kT0 + absl::Hours(2));
  absl::StatusOr<uint64_t> oldest = server.store()->OldestPosition();
  ASSERT_TRUE(oldest.ok());
  ASSERT_EQ(*oldest, 21u);
}

TEST(RetentionGrpcTest, ReplayCursorBeforeOldestIsOutOfRange) {
  TestServer server;
  CommitAndPrune(server);
  grpc::Status s;
  v1::ReplayEventsRequest req;
  req.mutable_start()->set_after_position(5);
  EXPECT_THAT(Replay(server, req, &s), ::testing::IsEmpty());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("[20, 25]"));

  req.mutable_start()->set_after_position(20);
  EXPECT_THAT(Replay(server, req, &s), ElementsAre(21, 22, 23, 24, 25));
  EXPECT_TRUE(s.ok()) << s.error_message();

  // The beginning is the oldest stored event, not position 1.
  req.mutable_start()->set_beginning(true);
  EXPECT_THAT(Replay(server, req, &s), ElementsAre(21, 22, 23, 24, 25));
  EXPECT_TRUE(s.ok()) << s.error_message();

  v1::GetStatusRequest status_req;
  v1::GetStatusResponse status;
  grpc::ClientContext ctx;
  ASSERT_TRUE(server.stub()->GetStatus(&ctx, status_req, &status).ok());
  EXPECT_EQ(status.store().oldest_position(), 21u);
  EXPECT_EQ(status.store().head_position(), 25u);
}

TEST(RetentionGrpcTest, SubscribeCursorBeforeOldestIsOutOfRange) {
  TestServer server;
  CommitAndPrune(server);
  grpc::Status s;
  v1::SubscribeRequest req;
  req.mutable_start()->set_after_position(3);
  EXPECT_THAT(Subscribe(server, req, 25, &s), ::testing::IsEmpty());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("[20, 25]"));

  req.mutable_start()->set_beginning(true);
  EXPECT_THAT(Subscribe(server, req, 25, &s), ElementsAre(21, 22, 23, 24, 25));
}

// Verifies that a subscriber catching up from storage whose next event is
// deleted between two page reads ends with OUT_OF_RANGE (and the valid
// range) rather than jumping to the oldest stored event.
TEST(RetentionGrpcTest, CatchingUpSubscriberOvertakenByPruningIsOutOfRange) {
  std::atomic<int> reads{0};
  TestServer* server_ptr = nullptr;
  TestServerOptions options;
  options.page_size = 2;
  // Before the second page read (the first read task resolves the start
  // point): retention deletes positions 1..20.
  options.before_read = [&] {
    if (reads.fetch_add(1) == 2)
      Prune(server_ptr->store(), kT0 + absl::Hours(2));
  };
  TestServer server(options);
  server_ptr = &server;
  server.CommitAndWait(EventsAt(20, 100, kT0));
  server.CommitAndWait(EventsAt(5, 200, kT0 + absl::Hours(2)));

  grpc::Status s;
  v1::SubscribeRequest req;
  req.mutable_start()->set_after_position(0);
  std::vector<uint64_t> got = Subscribe(server, req, 25, &s);
  EXPECT_THAT(got, ElementsAre(1, 2));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("after position 2"));
  EXPECT_THAT(s.error_message(), HasSubstr("[20, 25]"));
}

// The same for ReplayEvents.
TEST(RetentionGrpcTest, ReplayOvertakenByPruningIsOutOfRange) {
  std::atomic<int> reads{0};
  TestServer* server_ptr = nullptr;
  TestServerOptions options;
  options.page_size = 2;
  options.before_read = [&] {
    if (reads.fetch_add(1) == 2)
      Prune(server_ptr->store(), kT0 + absl::Hours(2));
  };
  TestServer server(options);
  server_ptr = &server;
  server.CommitAndWait(EventsAt(20, 100, kT0));
  server.CommitAndWait(EventsAt(5, 200, kT0 + absl::Hours(2)));

  grpc::Status s;
  v1::ReplayEventsRequest req;
  req.mutable_start()->set_beginning(true);
  EXPECT_THAT(Replay(server, req, &s), ElementsAre(1, 2));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("[20, 25]"));
}

}  // namespace
}  // namespace chstream
