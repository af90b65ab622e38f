// In-process chstream server on 127.0.0.1:0 with a real channel: what
// grpcurl sees (reflection, health), GetStatus, GetCompany, shutdown.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/grpc_server.h"
#include "tests/integration/test_server.h"
#include "tests/server/metrics_http_client.h"
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

// HTTP/2 (RFC 9113) frames, written and read by hand, for what a gRPC
// client library does not let a test do.
struct Http2Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  std::string payload;
};

std::string EncodeFrame(uint8_t type, uint8_t flags,
                        const std::string& payload) {
  const size_t n = payload.size();
  const char header[9] = {static_cast<char>(n >> 16),
                          static_cast<char>(n >> 8),
                          static_cast<char>(n),
                          static_cast<char>(type),
                          static_cast<char>(flags),
                          0,
                          0,
                          0,
                          0};  // stream 0
  return std::string(header, sizeof(header)) + payload;
}

uint32_t BigEndian(std::string_view bytes) {
  uint32_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

absl::StatusOr<Http2Frame> ReadFrame(server::testing::TestConnection& conn,
                                     absl::Time deadline) {
  absl::StatusOr<std::string> header = conn.ReadBytes(9, deadline);
  if (!header.ok()) return header.status();
  Http2Frame f;
  f.type = static_cast<uint8_t>((*header)[3]);
  f.flags = static_cast<uint8_t>((*header)[4]);
  absl::StatusOr<std::string> payload =
      conn.ReadBytes(BigEndian(header->substr(0, 3)), deadline);
  if (!payload.ok()) return payload.status();
  f.payload = *std::move(payload);
  return f;
}

// Verifies keepalive enforcement on a real connection: a client that pings
// more often than every 10 s gets a strike per early ping, and after
// kMaxPingStrikes the server closes the connection with GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings"; other clients carry on.
TEST(ServerTest, ClientsPingingTooOftenAreDisconnected) {
  TestServer server;
  ASSERT_OK_AND_ASSIGN(auto conn, server::testing::TestConnection::Connect(
                                      server.grpc()->port()));
  constexpr uint8_t kSettings = 0x4, kPing = 0x6, kGoAway = 0x7;
  ASSERT_OK(conn->Send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                       EncodeFrame(kSettings, 0, "")));
  // The first ping is allowed; each of the next ones within 10 s is a
  // strike; one more than kMaxPingStrikes closes the connection.
  const int pings = 1 + server::kMaxPingStrikes + 1;
  for (int i = 0; i < pings; ++i) {
    ASSERT_OK(conn->Send(
        EncodeFrame(kPing, 0, std::string(7, '\0') + static_cast<char>(i))));
  }
  std::optional<Http2Frame> goaway;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!goaway.has_value()) {
    absl::StatusOr<Http2Frame> f = ReadFrame(*conn, deadline);
    ASSERT_OK(f.status()) << "no GOAWAY";
    if (f->type == kGoAway) goaway = *std::move(f);
  }
  ASSERT_GE(goaway->payload.size(), 8u);
  EXPECT_EQ(BigEndian(goaway->payload.substr(4, 4)),
            0xbu);  // ENHANCE_YOUR_CALM
  EXPECT_THAT(goaway->payload.substr(8), HasSubstr("too_many_pings"));

  // A well-behaved client on another connection is served.
  grpc::ClientContext ctx;
  v1::GetStatusRequest request;
  v1::GetStatusResponse response;
  EXPECT_TRUE(server.stub()->GetStatus(&ctx, request, &response).ok());
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
