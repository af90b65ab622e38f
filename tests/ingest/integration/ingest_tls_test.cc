// Integration tests of ingestion over TLS against the simulator serving a
// throwaway PKI: a client trusting the test CA (by IP address and by host
// name) stores exactly the log; an untrusted CA or a certificate for another
// name fails verification with a clear error, stores nothing and backs off
// instead of hammering the server.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "ingest/simulator/test_certs.h"
#include "tests/ingest/integration/ingest_harness.h"

namespace chstream::ingest::testing {
namespace {

constexpr char kStream[] = "companies";

sim::Options TlsSimOptions(const sim::TestPki& pki, int64_t total,
                           bool wrong_name = false) {
  sim::Options so = SimOptions(total, /*initial=*/total / 2, /*rate=*/500);
  so.tls_cert_pem = wrong_name ? pki.wrong_name_cert_pem : pki.server_cert_pem;
  so.tls_key_pem = wrong_name ? pki.wrong_name_key_pem : pki.server_key_pem;
  so.faults.split_random = 3;
  return so;
}

class TrustedTlsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TrustedTlsTest, StoresExactlyTheLog) {
  const std::string host = GetParam();
  constexpr int64_t kTotal = 300;
  ASSERT_OK_AND_ASSIGN(sim::TestPki pki, sim::MakeTestPki());
  ASSERT_OK_AND_ASSIGN(auto sim,
                       sim::Simulator::Start(TlsSimOptions(pki, kTotal)));
  ASSERT_TRUE(absl::StartsWith(sim->url(), "https://"));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.upstream_url = absl::StrCat("https://", host, ":", sim->port());
  io.ca_file = WriteTestFile("ca.pem", pki.ca_pem);
  ASSERT_OK(pipeline->StartIngester(io));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  const StreamStatusSnapshot live = pipeline->Status(kStream);
  pipeline->StopIngester();

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(live.state, StreamState::kStreaming);
  EXPECT_EQ(live.last_http_status, 200);
  EXPECT_EQ(live.last_error, "");
  EXPECT_EQ(live.reconnects_total, 0u);
  EXPECT_EQ(live.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_GT(live.heartbeats_total, 0u);
  EXPECT_EQ(sim->GetStats().connections_accepted, 1);
}

INSTANTIATE_TEST_SUITE_P(Hosts, TrustedTlsTest,
                         ::testing::Values("127.0.0.1", "localhost"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(
                               info.param[0] == 'l' ? "HostName" : "IpAddress");
                         });

// TLS connections that end after N events: cleanly (terminating chunk and
// close_notify) or truncated (FIN without close_notify). Either way the client
// resumes after the last event it received.
class TlsCloseTest : public ::testing::TestWithParam<sim::CloseStyle> {};

TEST_P(TlsCloseTest, ResumesAfterEachEnd) {
  constexpr int64_t kTotal = 200;
  ASSERT_OK_AND_ASSIGN(sim::TestPki pki, sim::MakeTestPki());
  sim::Options so = TlsSimOptions(pki, kTotal);
  // All pre-generated, so that every close but the last has a next line to
  // cut in half.
  so.initial_events_per_stream = kTotal;
  so.faults.close_after_events = 60;
  so.faults.close_style = GetParam();
  so.faults.close_mid_line = true;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.ca_file = WriteTestFile("ca.pem", pki.ca_pem);
  ASSERT_OK(pipeline->StartIngester(io));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  ASSERT_TRUE(sim->WaitFor(
      [](const sim::Stats& s) { return s.Requests("/companies", 200) == 4; },
      absl::Seconds(10)));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.duplicates_total, 0u);
  EXPECT_EQ(done.partial_lines_total, 3u);  // one per close
  EXPECT_EQ(sim->GetStats().Requests("/companies", 200), 4);
}

INSTANTIATE_TEST_SUITE_P(
    Styles, TlsCloseTest,
    ::testing::Values(sim::CloseStyle::kClean, sim::CloseStyle::kTruncate),
    [](const ::testing::TestParamInfo<sim::CloseStyle>& info) {
      return std::string(info.param == sim::CloseStyle::kClean ? "Clean"
                                                               : "Truncate");
    });

// Runs a client that cannot verify the server: returns its status once the
// breaker has opened (after 3 failed handshakes), having checked that it
// then holds off.
StreamStatusSnapshot RunUntilBreakerOpens(const sim::Simulator& sim,
                                          IngesterOptions io,
                                          Pipeline& pipeline) {
  io.policy.breaker_failures = 3;
  io.policy.breaker_cooldown = absl::Seconds(30);
  io.policy.breaker_max_cooldown = absl::Seconds(60);
  EXPECT_OK(pipeline.StartIngester(io));
  EXPECT_TRUE(pipeline.WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) {
        return s.state == StreamState::kCircuitOpen;
      },
      absl::Seconds(10)));
  const absl::Time opened_by = absl::Now();
  const StreamStatusSnapshot s = pipeline.Status(kStream);
  // Three handshakes, then nothing for the cooldown: backoff, not a storm.
  EXPECT_EQ(sim.GetStats().connections_accepted, 3);
  EXPECT_FALSE(sim.WaitFor(
      [](const sim::Stats& st) { return st.connections_accepted > 3; },
      absl::Milliseconds(300)));
  EXPECT_GT(s.next_retry_at, opened_by + absl::Seconds(20));
  EXPECT_EQ(s.reconnects_total, 3u);
  EXPECT_EQ(s.events_total, 0u);
  EXPECT_EQ(s.last_http_status, 0);  // never got as far as HTTP
  EXPECT_TRUE(sim.GetStats().requests.empty());
  pipeline.StopIngester();
  EXPECT_EQ(pipeline.store()->HeadPosition(), 0u);
  absl::StatusOr<storage::StoreStats> stats = pipeline.store()->Stats();
  EXPECT_OK(stats.status());
  if (stats.ok()) {
    EXPECT_EQ(stats->dead_letters, 0u);
  }
  return s;
}

TEST(IngestTlsTest, UntrustedCaFailsVerificationAndBacksOff) {
  ASSERT_OK_AND_ASSIGN(sim::TestPki pki, sim::MakeTestPki());
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(TlsSimOptions(pki, 50)));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.ca_file = WriteTestFile("other-ca.pem", pki.other_ca_pem);
  const StreamStatusSnapshot s = RunUntilBreakerOpens(*sim, io, *pipeline);
  EXPECT_TRUE(absl::StrContains(s.last_error, "TLS handshake with 127.0.0.1:"))
      << s.last_error;
  EXPECT_TRUE(absl::StrContains(s.last_error,
                                "certificate verification failed: unable to "
                                "get local issuer certificate"))
      << s.last_error;
}

TEST(IngestTlsTest, NoExtraCaMeansTheTestCertificateIsNotTrusted) {
  ASSERT_OK_AND_ASSIGN(sim::TestPki pki, sim::MakeTestPki());
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(TlsSimOptions(pki, 50)));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  const StreamStatusSnapshot s =
      RunUntilBreakerOpens(*sim, ClientOptions(*sim, {kStream}), *pipeline);
  EXPECT_TRUE(
      absl::StrContains(s.last_error, "certificate verification failed: "))
      << s.last_error;
}

class WrongNameTest : public ::testing::TestWithParam<const char*> {};

TEST_P(WrongNameTest, CertificateForAnotherNameFails) {
  const std::string host = GetParam();
  ASSERT_OK_AND_ASSIGN(sim::TestPki pki, sim::MakeTestPki());
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(TlsSimOptions(
                                     pki, 50, /*wrong_name=*/true)));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.upstream_url = absl::StrCat("https://", host, ":", sim->port());
  io.ca_file = WriteTestFile("ca.pem", pki.ca_pem);  // the right CA
  const StreamStatusSnapshot s = RunUntilBreakerOpens(*sim, io, *pipeline);
  EXPECT_TRUE(
      absl::StrContains(s.last_error, "certificate verification failed: "))
      << s.last_error;
  EXPECT_TRUE(absl::StrContains(s.last_error, host == "localhost"
                                                  ? "hostname mismatch"
                                                  : "IP address mismatch"))
      << s.last_error;
}

INSTANTIATE_TEST_SUITE_P(Hosts, WrongNameTest,
                         ::testing::Values("127.0.0.1", "localhost"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(
                               info.param[0] == 'l' ? "HostName" : "IpAddress");
                         });

}  // namespace
}  // namespace chstream::ingest::testing
