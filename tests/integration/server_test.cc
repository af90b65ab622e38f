// In-process chstream server on 127.0.0.1:0 with a real channel: what
// grpcurl sees (reflection, health), GetStatus, GetCompany, shutdown.
#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/test_server.h"
#include "tests/testing/reflection_client.h"

namespace chstream {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::MakeEvent;
using testing::ReflectionClient;
using testing::TestServer;

TEST(ServerTest, ReflectionListsEveryService) {
  TestServer server;
  ReflectionClient rc(server.channel());
  auto services = rc.ListServices();
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, Contains("chstream.v1.CompanyStream"));
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services, Contains("grpc.reflection.v1alpha.ServerReflection"));
}

// Verifies `grpcurl describe chstream.v1.CompanyStream` with no .proto files.
TEST(ServerTest, ReflectionDescribesTheApi) {
  TestServer server;
  ReflectionClient rc(server.channel());
  auto text = rc.Describe("chstream.v1.CompanyStream");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text,
              HasSubstr("rpc Subscribe(.chstream.v1.SubscribeRequest) "
                        "returns (stream .chstream.v1.SubscribeResponse)"));
  EXPECT_THAT(*text, HasSubstr("rpc GetCompany"));
}

// Verifies `grpcurl -plaintext HOST:PORT grpc.health.v1.Health/Check`: the
// built-in health service must be describable through reflection alone.
TEST(ServerTest, HealthCheckWorksThroughReflection) {
  TestServer server;
  ReflectionClient rc(server.channel());
  auto overall = rc.CallUnary("grpc.health.v1.Health/Check", "{}");
  ASSERT_TRUE(overall.ok()) << overall.status();
  EXPECT_THAT(*overall, HasSubstr("\"SERVING\""));
  auto named = rc.CallUnary("grpc.health.v1.Health/Check",
                            R"({"service":"chstream.v1.CompanyStream"})");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_THAT(*named, HasSubstr("\"SERVING\""));
  auto unknown =
      rc.CallUnary("grpc.health.v1.Health/Check", R"({"service":"nope"})");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(ServerTest, GetStatusThroughReflection) {
  TestServer server;
  server.CommitAndWait({MakeEvent("companies", 100, "SC571653")});
  ReflectionClient rc(server.channel());
  auto json = rc.CallUnary("chstream.v1.CompanyStream/GetStatus", "{}");
  ASSERT_TRUE(json.ok()) << json.status();
  // proto3 JSON: uint64 as strings.
  EXPECT_THAT(*json, HasSubstr("\"headPosition\":\"1\""));
  EXPECT_THAT(*json, HasSubstr("\"companiesStored\":\"1\""));
  EXPECT_THAT(*json, HasSubstr("\"version\":\"test\""));
}

TEST(ServerTest, GetCompanyFoundNotFoundInvalid) {
  TestServer server;
  server.CommitAndWait(
      {MakeEvent("companies", 100, "SC571653"),
       MakeEvent("companies", 101, "00006400"),
       MakeEvent("companies", 102, "00006400", storage::EventType::kDeleted)});
  auto stub = server.stub();
  {
    grpc::ClientContext ctx;
    v1::GetCompanyRequest req;
    req.set_company_number("  sc571653 ");  // normalised
    v1::Company c;
    grpc::Status s = stub->GetCompany(&ctx, req, &c);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(c.company_number(), "SC571653");
    EXPECT_EQ(c.company_name(), "COMPANY SC571653 LTD");
    EXPECT_EQ(c.company_status(), "active");
    EXPECT_EQ(c.registered_office_address().postal_code(), "CF14 3UZ");
    EXPECT_EQ(c.last_timepoint(), 100);
    EXPECT_EQ(c.last_position(), 1u);
    EXPECT_FALSE(c.deleted());
    ASSERT_TRUE(c.has_data());
    EXPECT_EQ(c.data().fields().at("company_name").string_value(),
              "COMPANY SC571653 LTD");
  }
  {
    grpc::ClientContext ctx;
    v1::GetCompanyRequest req;
    req.set_company_number("00006400");
    v1::Company c;
    ASSERT_TRUE(stub->GetCompany(&ctx, req, &c).ok());
    EXPECT_TRUE(c.deleted());
    EXPECT_EQ(c.company_name(), "COMPANY 00006400 LTD");  // last data kept
    EXPECT_EQ(c.last_timepoint(), 102);
  }
  {
    grpc::ClientContext ctx;
    v1::GetCompanyRequest req;
    req.set_company_number("01234567");
    v1::Company c;
    grpc::Status s = stub->GetCompany(&ctx, req, &c);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("01234567"));
  }
  for (const char* bad : {"", "123", "ABCDEFGH", "S1234567", "123456789"}) {
    grpc::ClientContext ctx;
    v1::GetCompanyRequest req;
    req.set_company_number(bad);
    v1::Company c;
    grpc::Status s = stub->GetCompany(&ctx, req, &c);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_THAT(s.error_message(), HasSubstr("8 characters")) << bad;
  }
}

// Verifies the shutdown sequence: health goes NOT_SERVING, an open
// subscription ends with UNAVAILABLE, and new calls are refused.
// Verifies the per-connection limits: a request over the receive limit is
// refused before it is parsed, while the largest valid request (a filter of
// 1,000 company numbers) is well under it.
TEST(ServerTest, RequestsOverTheReceiveLimitAreRefused) {
  TestServer server;
  auto stub = server.stub();
  v1::SubscribeRequest big;
  for (int i = 0; i < 1000; ++i) {
    big.mutable_filter()->add_company_numbers("SC000001");
  }
  EXPECT_LT(big.ByteSizeLong(),
            static_cast<size_t>(server::kMaxReceiveMessageBytes / 10));
  // 300 KB of padding in one company number: over the 256 KiB limit.
  big.mutable_filter()->add_company_numbers(std::string(300'000, ' '));
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, big);
  v1::SubscribeResponse msg;
  EXPECT_FALSE(reader->Read(&msg));
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_EQ(server.service()->subscribers().size(), 0u);
}

TEST(ServerTest, ShutdownEndsStreamsWithUnavailable) {
  TestServer server;
  auto stub = server.stub();
  grpc::ClientContext ctx;
  v1::SubscribeRequest req;
  auto reader = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  ASSERT_TRUE(reader->Read(&msg));  // caught_up
  EXPECT_TRUE(msg.has_caught_up());

  auto health = grpc::health::v1::Health::NewStub(server.channel());
  server.grpc()->SetHealth("", true);
  std::thread stopper([&] { server.Shutdown(absl::Seconds(3)); });
  while (reader->Read(&msg)) {
  }
  grpc::Status s = reader->Finish();
  stopper.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  grpc::ClientContext hctx;
  hctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  grpc::Status hs = health->Check(&hctx, hreq, &hresp);
  EXPECT_FALSE(hs.ok() && hresp.status() ==
                              grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace chstream
