// The simulator over HTTPS with a throwaway PKI (ingest/simulator/test_certs).
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "ingest/simulator/test_certs.h"
#include "tests/ingest/simulator/test_http_client.h"

namespace chstream::ingest::sim {
namespace {

using ::chstream::ingest::sim::testing::ResponseHead;
using ::chstream::ingest::sim::testing::TestHttpClient;
using ::chstream::testing::StatusIs;
using ::testing::ElementsAreArray;

constexpr absl::Duration kTimeout = absl::Seconds(10);
constexpr char kKey[] = "tls-key";

// The error of a TLS connection that must fail ("" if it succeeded).
std::string HandshakeError(uint16_t port, TestHttpClient::Tls tls) {
  auto client = TestHttpClient::Connect(port, std::move(tls));
  return client.ok() ? "" : std::string(client.status().message());
}

class SimulatorTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(pki_, MakeTestPki());
    options_.keys = {kKey};
    options_.heartbeat_interval = absl::Milliseconds(50);
    options_.streams = {"companies"};
    options_.initial_events_per_stream = 25;
    options_.max_events_per_stream = 25;
    options_.tls_cert_pem = pki_.server_cert_pem;
    options_.tls_key_pem = pki_.server_key_pem;
  }

  std::vector<std::string> LogLines(const Simulator& sim) {
    std::vector<std::string> lines;
    for (const auto& entry : sim.Log("companies")) lines.push_back(entry.line);
    return lines;
  }

  TestPki pki_;
  Options options_;
};

TEST_F(SimulatorTlsTest, ServesTheStreamOverHttps) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  EXPECT_TRUE(absl::StartsWith(sim->url(), "https://127.0.0.1:"));
  for (const char* host : {"localhost", "127.0.0.1"}) {
    ASSERT_OK_AND_ASSIGN(
        auto client, TestHttpClient::Connect(
                         sim->port(), TestHttpClient::Tls{pki_.ca_pem, host}));
    ASSERT_OK(client->Get("/companies?timepoint=82000000", kKey));
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.Header("transfer-encoding"), "chunked");
    int heartbeats = 0;
    ASSERT_OK_AND_ASSIGN(auto events,
                         client->ReadEvents(25, kTimeout, &heartbeats));
    EXPECT_THAT(events, ElementsAreArray(LogLines(*sim)));
    ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
    EXPECT_EQ(line, "");  // a heartbeat
  }
}

TEST_F(SimulatorTlsTest, ErrorsAndAuthWorkOverHttps) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  ASSERT_OK_AND_ASSIGN(
      auto client,
      TestHttpClient::Connect(sim->port(), TestHttpClient::Tls{pki_.ca_pem}));
  ASSERT_OK(client->Get("/companies", "wrong"));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 401);
  ASSERT_OK_AND_ASSIGN(std::string body, client->ReadFixedBody(head, kTimeout));
  EXPECT_EQ(body, R"({"error":"Invalid Authorization","type":"ch:service"})");
}

TEST_F(SimulatorTlsTest, CleanEndAndTruncationOverHttps) {
  options_.faults.close_after_events = 3;
  options_.faults.close_style = CloseStyle::kClean;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  ASSERT_OK_AND_ASSIGN(
      auto client,
      TestHttpClient::Connect(sim->port(), TestHttpClient::Tls{pki_.ca_pem}));
  ASSERT_OK(client->Get("/companies?timepoint=82000000", kKey));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(3, kTimeout));
  EXPECT_THAT(client->ReadLine(kTimeout),
              StatusIs(absl::StatusCode::kOutOfRange, "end of body"));

  Faults truncate;
  truncate.close_after_events = 3;
  truncate.close_style = CloseStyle::kTruncate;
  sim->SetFaults(truncate);
  ASSERT_OK_AND_ASSIGN(
      auto second,
      TestHttpClient::Connect(sim->port(), TestHttpClient::Tls{pki_.ca_pem}));
  ASSERT_OK(second->Get("/companies?timepoint=82000000", kKey));
  ASSERT_OK_AND_ASSIGN(head, second->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(events, second->ReadEvents(3, kTimeout));
  // No close_notify: the TLS stream is truncated, seen as EOF.
  EXPECT_THAT(second->ReadLine(kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, "eof"));
}

TEST_F(SimulatorTlsTest, AClientTrustingAnotherCaFailsTheHandshake) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  EXPECT_THAT(HandshakeError(sim->port(), {pki_.other_ca_pem}),
              ::testing::HasSubstr("TLS handshake"));
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) { return s.connections_accepted == 1; }, kTimeout));
}

TEST_F(SimulatorTlsTest, AWrongNameCertificateFailsHostnameVerification) {
  options_.tls_cert_pem = pki_.wrong_name_cert_pem;
  options_.tls_key_pem = pki_.wrong_name_key_pem;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  EXPECT_THAT(HandshakeError(sim->port(), {pki_.ca_pem}),
              ::testing::HasSubstr("TLS handshake"));
  // The same certificate is fine for the name it was issued to.
  EXPECT_OK(
      TestHttpClient::Connect(
          sim->port(), TestHttpClient::Tls{pki_.ca_pem, "wrong-host.invalid"})
          .status());
}

TEST_F(SimulatorTlsTest, PlainHttpToTheTlsPortGetsNoResponse) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options_));
  ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
  ASSERT_OK(client->Get("/companies", kKey));
  absl::StatusOr<ResponseHead> head = client->ReadHead(kTimeout);
  EXPECT_FALSE(head.ok());
  EXPECT_NE(head.status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace chstream::ingest::sim
