// The real chstreamd binary, as a user runs it: configuration errors, the
// key never appearing in any output (logs, status, metrics, errors, --help),
// and a clean, prompt shutdown on SIGTERM.
#include <signal.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ChildProcess;
using testing::WaitUntil;

constexpr char kBinary[] = "server/chstreamd";
constexpr char kKey[] = "s3cr3t-stream-key-4f1d9c";
// base64("s3cr3t-stream-key-4f1d9c:"), as sent in the Authorization header.
constexpr char kKeyBase64[] = "czNjcjN0LXN0cmVhbS1rZXktNGYxZDljOg==";

std::string TempDir() { return std::getenv("TEST_TMPDIR"); }

// The "host:port" a chstreamd logged for `field` in its "serving" line.
std::string LoggedAddress(const std::string& output, const std::string& field) {
  return testing::LoggedField(output, field);
}

std::string HttpGet(const std::string& host_port, const std::string& target) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  const size_t colon = host_port.rfind(':');
  beast::error_code ec;
  auto results = resolver.resolve(host_port.substr(0, colon),
                                  host_port.substr(colon + 1), ec);
  if (ec) return "";
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(results, ec);
  if (ec) return "";
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host_port);
  http::write(stream, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  return res.body();
}

std::vector<std::string> BaseEnv(const std::string& key) {
  std::vector<std::string> env = {"PATH=/usr/bin:/bin", "TZ=UTC"};
  if (!key.empty()) env.push_back(absl::StrCat("CH_STREAMING_API_KEY=", key));
  return env;
}

void ExpectNoKey(const std::string& what, const std::string& text) {
  EXPECT_THAT(text, Not(HasSubstr(kKey))) << what;
  EXPECT_THAT(text, Not(HasSubstr(kKeyBase64))) << what;
}

struct RunResult {
  std::string status_json;
  std::string metrics;
  std::string output;
  int exit_code = -1;
  absl::Duration shutdown_time;
};

// Runs chstreamd with `key` against `sim` until `ready` holds for its
// status, collects every output, and stops it with SIGTERM.
RunResult RunAgainst(ingest::sim::Simulator& sim, const std::string& key,
               const std::string& name,
               const std::function<bool(const v1::GetStatusResponse&)>& ready) {
  RunResult run;
  const std::string dir = absl::StrCat(TempDir(), "/", name);
  std::filesystem::create_directories(dir);
  ChildProcess child(kBinary,
                     {"--grpc_address=127.0.0.1:0",
                      "--metrics_address=127.0.0.1:0",
                      absl::StrCat("--upstream_url=", sim.url()),
                      "--db_path=chstream.db", "--idle_timeout=5s"},
                     BaseEnv(key), dir, dir + "/out.log");
  EXPECT_TRUE(child.started());
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(child.Output(), "chstreamd serving"); },
      absl::Seconds(30)))
      << child.Output();
  const std::string grpc_address =
      LoggedAddress(child.Output(), "grpc_address");
  const std::string metrics_address =
      LoggedAddress(child.Output(), "metrics_address");
  auto stub = v1::CompanyStream::NewStub(
      grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  v1::GetStatusResponse status;
  EXPECT_TRUE(WaitUntil(
      [&] {
        grpc::ClientContext ctx;
        status.Clear();
        return stub->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok() &&
               ready(status);
      },
      absl::Seconds(30)))
      << status.DebugString();
  (void)google::protobuf::util::MessageToJsonString(status, &run.status_json);
  run.metrics = HttpGet(metrics_address, "/metrics");
  EXPECT_THAT(run.metrics, HasSubstr("chstream_ingest_events_total"));
  const absl::Time stop_at = Clock::Real()->Now();
  run.exit_code = child.SignalAndWait(SIGTERM, absl::Seconds(10));
  run.shutdown_time = Clock::Real()->Now() - stop_at;
  run.output = child.Output();
  return run;
}

TEST(ChstreamdTest, InvalidSettingExitsWithStatus2AndOneLine) {
  const std::string dir = TempDir();
  ChildProcess child(kBinary, {"--streams=companies,bogus"}, BaseEnv(""), dir,
                     dir + "/invalid.log");
  EXPECT_EQ(child.Wait(absl::Seconds(20)), 2);
  const std::string out = child.Output();
  EXPECT_THAT(out, HasSubstr("--streams"));
  EXPECT_THAT(out, HasSubstr("bogus"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(ChstreamdTest, HelpListsSettingsAndNeverTheKey) {
  const std::string dir = TempDir();
  ChildProcess child(kBinary, {"--help"}, BaseEnv(kKey), dir,
                     dir + "/help.log");
  EXPECT_EQ(child.Wait(absl::Seconds(20)), 0);
  EXPECT_THAT(child.Output(), HasSubstr("--grpc_address"));
  EXPECT_THAT(child.Output(), HasSubstr("CH_STREAMING_API_KEY"));
  ExpectNoKey("--help", child.Output());
}

// Verifies the key never appears in any output of a full run through
// upstream failures: logs, GetStatus, /metrics; and that SIGTERM ends the
// process with status 0 within 5 s.
TEST(ChstreamdTest, KeyNeverAppearsAndShutdownIsClean) {
  ingest::sim::Options options;
  options.keys = {kKey};
  options.companies_rate = 200;
  options.heartbeat_interval = absl::Milliseconds(200);
  options.faults.fail_first_attempts = 1;
  options.faults.fail_status = 503;
  options.faults.malformed_every = 5;
  auto sim = ingest::sim::Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  RunResult run = RunAgainst(**sim, kKey, "good-key",
                       [](const v1::GetStatusResponse& s) {
                         return s.streams_size() == 1 &&
                                s.streams(0).events_total() >= 20 &&
                                s.streams(0).malformed_total() >= 1 &&
                                s.streams(0).reconnects_total() >= 1 &&
                                s.store().head_position() >= 20;
                       });
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_LT(run.shutdown_time, absl::Seconds(5));
  EXPECT_THAT(run.output, HasSubstr("\"msg\":\"stopped\""));
  ExpectNoKey("log", run.output);
  ExpectNoKey("status", run.status_json);
  ExpectNoKey("metrics", run.metrics);
}

// A rejected key: the 401 and its body are in status and logs, the key is
// not.
TEST(ChstreamdTest, RejectedKeyIsReportedWithoutTheKey) {
  ingest::sim::Options options;
  options.keys = {"the-simulator-only-accepts-this"};
  auto sim = ingest::sim::Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  RunResult run = RunAgainst(**sim, kKey, "bad-key",
                       [](const v1::GetStatusResponse& s) {
                         return s.streams_size() == 1 &&
                                s.streams(0).state() ==
                                    v1::STREAM_STATE_AUTH_FAILED;
                       });
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.status_json, HasSubstr("401"));
  EXPECT_THAT(run.status_json, HasSubstr("Invalid Authorization"));
  ExpectNoKey("log", run.output);
  ExpectNoKey("status", run.status_json);
  ExpectNoKey("metrics", run.metrics);
}

}  // namespace
}  // namespace chstream
