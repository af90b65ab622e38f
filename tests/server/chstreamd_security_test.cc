// The real chstreamd binary with the gRPC security settings: start-up
// refusals exit 2 with one line on stderr, and a server started with mutual
// TLS and bearer tokens serves only authenticated clients (built-in
// simulator upstream, everything on 127.0.0.1:0).
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/test_certs.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ChildProcess;
using testing::WaitUntil;

constexpr char kBinary[] = "server/chstreamd";  // in runfiles
constexpr char kToken[] = "e2e-token-8d1f0b";

std::string Dir(const std::string& name) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string Write(const std::string& dir, const std::string& name,
                  const std::string& text, mode_t mode = 0600) {
  const std::string path = absl::StrCat(dir, "/", name);
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

const std::vector<std::string> kEnv = {"PATH=/usr/bin:/bin", "TZ=UTC"};

struct Exit {
  int code;
  std::string output;
};

// Runs chstreamd to its exit (it is expected to refuse to start).
Exit RunToExit(const std::string& name, std::vector<std::string> args,
               const std::vector<std::string>& extra_env = {}) {
  const std::string dir = Dir(name);
  args.push_back("--db_path=chstream.db");
  args.push_back("--metrics_address=127.0.0.1:0");
  std::vector<std::string> env = kEnv;
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  ChildProcess child(kBinary, args, env, dir, dir + "/out.log");
  EXPECT_TRUE(child.started());
  const int code = child.Wait(absl::Seconds(30));
  return {code, child.Output()};
}

// Output lines, without empty ones.
std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(ChstreamdSecurityTest, RefusesPlaintextRemoteBinding) {
  Exit e = RunToExit("remote", {"--grpc_address=0.0.0.0:0"});
  EXPECT_EQ(e.code, 2) << e.output;
  ASSERT_EQ(Lines(e.output).size(), 1u) << e.output;
  EXPECT_THAT(e.output, HasSubstr("chstreamd: refusing to serve gRPC"));
  EXPECT_THAT(e.output, HasSubstr("--allow_insecure_remote"));
}

// Verifies that a blank boolean, as a deployment template leaves it, is not
// read as true: it used to serve plaintext on every interface.
TEST(ChstreamdSecurityTest, BlankInsecureRemoteExits2NamingTheVariable) {
  Exit e = RunToExit("blank_bool", {"--grpc_address=0.0.0.0:0"},
                     {"CHSTREAM_ALLOW_INSECURE_REMOTE="});
  EXPECT_EQ(e.code, 2) << e.output;
  ASSERT_EQ(Lines(e.output).size(), 1u) << e.output;
  EXPECT_THAT(e.output, HasSubstr("chstreamd: invalid environment value ''"));
  EXPECT_THAT(e.output, HasSubstr("CHSTREAM_ALLOW_INSECURE_REMOTE"));
}

// Verifies that an upstream URL with user info is refused without showing
// the password.
TEST(ChstreamdSecurityTest, UrlWithUserInfoIsRefusedWithoutEchoingIt) {
  Exit e = RunToExit("userinfo",
                     {"--upstream_url=https://user:hunter2@127.0.0.1:1/x"},
                     {"CH_STREAMING_API_KEY=test-key-3f9a"});
  EXPECT_EQ(e.code, 2) << e.output;
  ASSERT_EQ(Lines(e.output).size(), 1u) << e.output;
  EXPECT_THAT(e.output, HasSubstr("--upstream_url"));
  EXPECT_THAT(e.output, HasSubstr("user info"));
  EXPECT_THAT(e.output, Not(HasSubstr("hunter2")));
}

// Verifies chstreamd's start-up lines, its connection log and GetStatus
// show URLs without path or query, and that a misspelt variable is warned
// about (naming the setting it resembles) without stopping the start.
TEST(ChstreamdSecurityTest, UrlsAreShownWithoutPathAndUnknownVariablesWarn) {
  const std::string dir = Dir("urls");
  std::vector<std::string> env = kEnv;
  env.push_back("CH_STREAMING_API_KEY=test-key-3f9a");
  env.push_back("CHSTREAM_SYNC_FUL=true");
  ChildProcess child(
      kBinary,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       "--db_path=chstream.db",
       "--upstream_url=http://127.0.0.1:1/up-s3cret?token=tok42",
       "--alert_webhook_url=http://127.0.0.1:1/services/T0/B0/hook-s3cret"},
      env, dir, dir + "/out.log");
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string out = child.Output();
        return absl::StrContains(out, "chstreamd serving") &&
               absl::StrContains(out, "connecting to upstream");
      },
      absl::Seconds(30)))
      << child.Output();
  const std::string address =
      testing::LoggedField(child.Output(), "grpc_address");
  ASSERT_FALSE(address.empty());
  auto stub = v1::CompanyStream::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetStatusResponse status;
  ASSERT_TRUE(stub->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok());
  EXPECT_EQ(status.upstream(), "http://127.0.0.1:1/...");
  EXPECT_EQ(child.SignalAndWait(SIGTERM, absl::Seconds(10)), 0);

  const std::string output = child.Output();
  EXPECT_THAT(output, HasSubstr("CHSTREAM_SYNC_FUL "));
  EXPECT_THAT(output, HasSubstr("CHSTREAM_SYNC_FULL"));
  EXPECT_THAT(output, HasSubstr("\"upstream\":\"http://127.0.0.1:1/...\""));
  for (const char* secret : {"up-s3cret", "tok42", "hook-s3cret"}) {
    EXPECT_THAT(output, Not(HasSubstr(secret))) << output;
  }
}

TEST(ChstreamdSecurityTest, MissingTlsFilesExit2) {
  Exit e = RunToExit("missing", {"--grpc_tls_cert=no.crt",
                                 "--grpc_tls_key=no.key"});
  EXPECT_EQ(e.code, 2) << e.output;
  ASSERT_EQ(Lines(e.output).size(), 1u) << e.output;
  EXPECT_THAT(e.output, HasSubstr("invalid --grpc_tls_cert"));
  EXPECT_THAT(e.output, HasSubstr("no.crt"));
}

TEST(ChstreamdSecurityTest, MismatchedKeyExits2WithoutShowingIt) {
  ASSERT_OK_AND_ASSIGN(ingest::sim::TestPki pki, ingest::sim::MakeTestPki());
  const std::string dir = Dir("mismatch");
  Write(dir, "server.crt", pki.server_cert_pem, 0644);
  Write(dir, "server.key", pki.wrong_name_key_pem);
  Exit e = RunToExit("mismatch", {"--grpc_tls_cert=server.crt",
                                  "--grpc_tls_key=server.key"});
  EXPECT_EQ(e.code, 2) << e.output;
  ASSERT_EQ(Lines(e.output).size(), 1u) << e.output;
  EXPECT_THAT(e.output, HasSubstr("does not match"));
  EXPECT_THAT(e.output, Not(HasSubstr("PRIVATE KEY")));
}

TEST(ChstreamdSecurityTest, ServesOnlyAuthenticatedClients) {
  ASSERT_OK_AND_ASSIGN(ingest::sim::TestPki pki, ingest::sim::MakeTestPki());
  ASSERT_OK_AND_ASSIGN(ingest::sim::ClientPki client, ingest::sim::MakeClientPki());
  const std::string dir = Dir("serving");
  Write(dir, "server.crt", pki.server_cert_pem, 0644);
  Write(dir, "server.key", pki.server_key_pem, 0644);  // warned about
  Write(dir, "clients.crt", client.ca_pem, 0644);
  Write(dir, "tokens", absl::StrCat("# clients\n", kToken, "\n"));
  ChildProcess child(
      kBinary,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       "--db_path=chstream.db", "--grpc_tls_cert=server.crt",
       "--grpc_tls_key=server.key", "--grpc_client_ca=clients.crt",
       "--grpc_auth_token_file=tokens"},
      kEnv, dir, dir + "/out.log");
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(WaitUntil(
      [&] { return absl::StrContains(child.Output(), "chstreamd serving"); },
      absl::Seconds(30)))
      << child.Output();
  const std::string output = child.Output();
  EXPECT_THAT(output, HasSubstr("\"tls\":true,\"mutual_tls\":true,"
                                "\"bearer_tokens\":1"));
  EXPECT_THAT(output, HasSubstr("accessible by group or other"));
  EXPECT_THAT(output, HasSubstr("server.key"));
  // (std::regex trips GCC 12's -Wmaybe-uninitialized under --config=asan.)
  const std::string address = testing::LoggedField(output, "grpc_address");
  ASSERT_FALSE(address.empty());

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = pki.ca_pem;
  tls.pem_cert_chain = client.client_cert_pem;
  tls.pem_private_key = client.client_key_pem;
  auto stub = v1::CompanyStream::NewStub(
      grpc::CreateChannel(address, grpc::SslCredentials(tls)));
  auto call = [&](const std::string& token) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::GetStatusResponse response;
    return stub->GetStatus(&ctx, v1::GetStatusRequest(), &response);
  };
  grpc::Status ok = call(kToken);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(call("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  EXPECT_EQ(child.SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
  EXPECT_THAT(child.Output(), Not(HasSubstr(kToken)));
}

}  // namespace
}  // namespace chstream
