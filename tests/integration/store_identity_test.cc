// The store identity on the API (in-process server, real channel): GetStatus
// shows store_id and the synchronous setting; every ReplayEvents and
// Subscribe call gets the store_id in its initial metadata
// (chstream-store-id) and in its first message; a request whose
// expected_store_id differs fails with FAILED_PRECONDITION naming both ids.
#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_server.h"

namespace chstream {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::MakeEvent;
using ::testing::MatchesRegex;
using testing::TestServer;

constexpr char kOtherId[] = "0123456789abcdef0123456789abcdef";

std::string InitialStoreId(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerInitialMetadata();
  auto it = md.find("chstream-store-id");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
}

TEST(StoreIdentityApiTest, GetStatusShowsStoreIdAndSynchronous) {
  TestServer server;
  const std::string id = server.store()->store_id();
  ASSERT_THAT(id, MatchesRegex("[0-9a-f]{32}"));
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::GetStatusResponse status;
  ASSERT_TRUE(server.stub()->GetStatus(&ctx, {}, &status).ok());
  EXPECT_EQ(status.store().store_id(), id);
  EXPECT_EQ(status.store().synchronous(), "full");
}

// Verifies the store_id reaches a ReplayEvents caller in the initial
// metadata (even when no event follows) and on the first event only.
TEST(StoreIdentityApiTest, ReplayEventsSendsTheStoreIdFirst) {
  TestServer server;
  const std::string id = server.store()->store_id();
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    auto reader = server.stub()->ReplayEvents(&ctx, v1::ReplayEventsRequest());
    v1::Event e;
    EXPECT_FALSE(reader->Read(&e));
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(InitialStoreId(ctx), id);
  }
  server.CommitAndWait({MakeEvent("companies", 1, "00000001"),
                        MakeEvent("companies", 2, "00000002")});
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::ReplayEventsRequest request;
  request.set_expected_store_id(id);  // the right one: accepted
  auto reader = server.stub()->ReplayEvents(&ctx, request);
  std::vector<v1::Event> events;
  for (v1::Event e; reader->Read(&e);) events.push_back(e);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].store_id(), id);
  EXPECT_EQ(events[1].store_id(), "");
  EXPECT_EQ(InitialStoreId(ctx), id);
}

TEST(StoreIdentityApiTest, SubscribeSendsTheStoreIdFirst) {
  TestServer server;
  const std::string id = server.store()->store_id();
  server.CommitAndWait({MakeEvent("companies", 1, "00000001")});
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::SubscribeRequest request;
  request.mutable_start()->set_beginning(true);
  request.set_expected_store_id(id);
  auto reader = server.stub()->Subscribe(&ctx, request);
  v1::SubscribeResponse first, second;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.store_id(), id);
  EXPECT_TRUE(first.has_event());
  ASSERT_TRUE(reader->Read(&second));  // caught_up
  EXPECT_EQ(second.store_id(), "");
  EXPECT_EQ(InitialStoreId(ctx), id);
  ctx.TryCancel();
  reader->Finish().IgnoreError();
}

// Verifies a resume against another store identity is refused, saying
// what happened and what to do, for both calls.
TEST(StoreIdentityApiTest, ExpectedStoreIdMismatchIsFailedPrecondition) {
  TestServer server;
  const std::string id = server.store()->store_id();
  server.CommitAndWait({MakeEvent("companies", 1, "00000001")});
  const auto explains = AllOf(HasSubstr(kOtherId), HasSubstr(id),
                              HasSubstr("reassigned"), HasSubstr("timepoint"));
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::ReplayEventsRequest request;
    request.mutable_start()->set_after_position(0);
    request.set_expected_store_id(kOtherId);
    auto reader = server.stub()->ReplayEvents(&ctx, request);
    v1::Event e;
    EXPECT_FALSE(reader->Read(&e));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), explains);
    EXPECT_EQ(InitialStoreId(ctx), id);
  }
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::SubscribeRequest request;
    request.mutable_start()->set_after_position(0);
    request.set_expected_store_id(kOtherId);
    auto reader = server.stub()->Subscribe(&ctx, request);
    v1::SubscribeResponse r;
    EXPECT_FALSE(reader->Read(&r));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), explains);
    EXPECT_EQ(InitialStoreId(ctx), id);
  }
}

}  // namespace
}  // namespace chstream
