// Tests of the gRPC security settings against a real server on 127.0.0.1:0
// with real channels: TLS, mutual TLS, bearer tokens (plaintext and TLS),
// the refusal of insecure remote binding, and key-file hygiene.
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "ingest/simulator/test_certs.h"
#include "server/company_stream_service.h"
#include "server/config.h"
#include "server/executor.h"
#include "server/file_permissions.h"
#include "server/grpc_auth.h"
#include "server/grpc_credentials.h"
#include "server/grpc_server.h"
#include "server/subscription_hub.h"
#include "storage/store.h"
#include "tests/testing/reflection_client.h"

namespace chstream::server {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Env = absl::flat_hash_map<std::string, std::string>;

constexpr char kToken[] = "tok-3f9a1c5e-right";
constexpr char kOtherToken[] = "second-token-77";

std::string TempPath(const std::string& name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

std::string WriteFile(const std::string& name, const std::string& text,
                      mode_t mode = 0600) {
  const std::string path = TempPath(name);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  EXPECT_EQ(::chmod(path.c_str(), mode), 0) << path;
  return path;
}

// LoadConfig without picking up a stray .env from the working directory.
absl::StatusOr<Config> Load(std::vector<std::string> args, Env env = {}) {
  if (!env.contains("CHSTREAM_ENV_FILE")) {
    env["CHSTREAM_ENV_FILE"] = WriteFile("empty.env", "");
  }
  ConfigExit exit_request{-1, ""};
  return LoadConfig(args, env, &exit_request);
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(Clock::Real()->Now() +
                                       absl::Seconds(10)));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

// Records, for every call that reaches the server's interceptors, whether
// its initial metadata still held an authorization entry.
class MetadataRecorder : public grpc::experimental::Interceptor {
 public:
  explicit MetadataRecorder(std::atomic<int>* calls_with_authorization,
                            std::atomic<int>* calls)
      : with_auth_(calls_with_authorization), calls_(calls) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                POST_RECV_INITIAL_METADATA)) {
      ++*calls_;
      if (methods->GetRecvInitialMetadata()->count("authorization") > 0) {
        ++*with_auth_;
      }
    }
    methods->Proceed();
  }

 private:
  std::atomic<int>* with_auth_;
  std::atomic<int>* calls_;
};

class MetadataRecorderFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  MetadataRecorderFactory(std::atomic<int>* with_auth, std::atomic<int>* calls)
      : with_auth_(with_auth), calls_(calls) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new MetadataRecorder(with_auth_, calls_);
  }

 private:
  std::atomic<int>* with_auth_;
  std::atomic<int>* calls_;
};

// A real CompanyStream server (store in TEST_TMPDIR, hub, executor,
// service) behind the credentials that BuildGrpcSecurity makes from
// `config`.
class SecuredServer {
 public:
  explicit SecuredServer(const Config& config,
                         GrpcServer::Interceptors interceptors = {}) {
    static int counter = 0;
    auto store = storage::Store::Open(
        TempPath(absl::StrCat("security-", counter++, ".db")));
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    executor_ = std::make_unique<Executor>(2);
    ServiceOptions so;
    so.version = "test";
    so.upstream = "none";
    so.started_at = Clock::Real()->Now();
    service_ = std::make_unique<CompanyStreamService>(
        store_.get(), &hub_, executor_.get(), nullptr, Clock::Real(), so);
    absl::StatusOr<GrpcSecurity> security = BuildGrpcSecurity(config);
    EXPECT_TRUE(security.ok()) << security.status();
    security_ = *security;
    auto grpc = GrpcServer::Start("127.0.0.1:0", service_.get(),
                                  std::move(interceptors),
                                  security_.credentials);
    EXPECT_TRUE(grpc.ok()) << grpc.status();
    grpc_ = *std::move(grpc);
  }
  ~SecuredServer() { grpc_->Shutdown(absl::Seconds(1)); }

  std::string address() const {
    return absl::StrCat("127.0.0.1:", grpc_->port());
  }
  const GrpcSecurity& security() const { return security_; }

  std::shared_ptr<grpc::Channel> Channel(
      std::shared_ptr<grpc::ChannelCredentials> creds) const {
    // A fresh connection per channel: a TLS failure must not be hidden by a
    // subchannel shared with an earlier, successful channel.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(address(), creds, args);
  }

 private:
  std::unique_ptr<storage::Store> store_;
  SubscriptionHub hub_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<CompanyStreamService> service_;
  GrpcSecurity security_;
  std::unique_ptr<GrpcServer> grpc_;
};

grpc::Status CallGetStatus(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& token = "") {
  auto stub = v1::CompanyStream::NewStub(channel);
  v1::GetStatusRequest request;
  v1::GetStatusResponse response;
  return stub->GetStatus(Context(token).get(), request, &response);
}

grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                         grpc::health::v1::HealthCheckResponse* response) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest request;
  return stub->Check(Context().get(), request, response);
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(
    const std::string& ca_pem, const std::string& cert_pem = "",
    const std::string& key_pem = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  options.pem_cert_chain = cert_pem;
  options.pem_private_key = key_pem;
  return grpc::SslCredentials(options);
}

class GrpcTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(pki_, ingest::sim::MakeTestPki());
    ASSERT_OK_AND_ASSIGN(client_pki_, ingest::sim::MakeClientPki());
    cert_ = WriteFile("server.crt", pki_.server_cert_pem, 0644);
    key_ = WriteFile("server.key", pki_.server_key_pem);
    client_ca_ = WriteFile("client-ca.crt", client_pki_.ca_pem, 0644);
  }

  Config TlsConfig() {
    Config c;
    c.grpc_tls_cert = cert_;
    c.grpc_tls_key = key_;
    return c;
  }

  ingest::sim::TestPki pki_;
  ingest::sim::ClientPki client_pki_;
  std::string cert_, key_, client_ca_;
};

TEST_F(GrpcTlsTest, ConnectsWithTheRightCa) {
  SecuredServer server(TlsConfig());
  EXPECT_TRUE(server.security().tls);
  EXPECT_FALSE(server.security().mutual_tls);
  grpc::Status status = CallGetStatus(server.Channel(TlsCredentials(pki_.ca_pem)));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(GrpcTlsTest, FailsWithTheWrongCa) {
  SecuredServer server(TlsConfig());
  grpc::Status status =
      CallGetStatus(server.Channel(TlsCredentials(pki_.other_ca_pem)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

TEST_F(GrpcTlsTest, PlaintextClientIsRefused) {
  SecuredServer server(TlsConfig());
  grpc::Status status =
      CallGetStatus(server.Channel(grpc::InsecureChannelCredentials()));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, MutualTlsAcceptsAClientCertSignedByTheClientCa) {
  Config c = TlsConfig();
  c.grpc_client_ca = client_ca_;
  SecuredServer server(c);
  EXPECT_TRUE(server.security().mutual_tls);
  grpc::Status status = CallGetStatus(server.Channel(TlsCredentials(
      pki_.ca_pem, client_pki_.client_cert_pem, client_pki_.client_key_pem)));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(GrpcTlsTest, MutualTlsRejectsAClientWithoutACert) {
  Config c = TlsConfig();
  c.grpc_client_ca = client_ca_;
  SecuredServer server(c);
  grpc::Status status = CallGetStatus(server.Channel(TlsCredentials(pki_.ca_pem)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  // Health is behind the handshake too.
  grpc::health::v1::HealthCheckResponse health;
  EXPECT_EQ(HealthCheck(server.Channel(TlsCredentials(pki_.ca_pem)), &health)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, MutualTlsRejectsAClientCertFromAnotherCa) {
  Config c = TlsConfig();
  c.grpc_client_ca = client_ca_;
  SecuredServer server(c);
  grpc::Status status = CallGetStatus(server.Channel(TlsCredentials(
      pki_.ca_pem, client_pki_.rogue_cert_pem, client_pki_.rogue_key_pem)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

// Verifies the grpc::AuthMetadataProcessor path (secure credentials).
TEST_F(GrpcTlsTest, BearerTokensOverTls) {
  Config c = TlsConfig();
  c.grpc_auth_token_file = WriteFile("tls-tokens", absl::StrCat(kToken, "\n"));
  SecuredServer server(c);
  EXPECT_EQ(server.security().tokens, 1u);
  auto channel = server.Channel(TlsCredentials(pki_.ca_pem));
  EXPECT_TRUE(CallGetStatus(channel, kToken).ok());
  grpc::Status missing = CallGetStatus(channel);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("authorization: Bearer"));
  EXPECT_EQ(CallGetStatus(channel, "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::health::v1::HealthCheckResponse health;
  EXPECT_TRUE(HealthCheck(channel, &health).ok());
}

TEST_F(GrpcTlsTest, StartupErrorsNameTheFlagAndFile) {
  Config c = TlsConfig();
  c.grpc_tls_cert = TempPath("does-not-exist.crt");
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--grpc_tls_cert " + c.grpc_tls_cert)));

  c = TlsConfig();
  c.grpc_tls_key = WriteFile("other.key", pki_.wrong_name_key_pem);
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not match")));

  c = TlsConfig();
  c.grpc_tls_key = WriteFile("not-a-key", "hello\n");
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--grpc_tls_key")));

  c = TlsConfig();
  c.grpc_tls_cert = WriteFile("not-a-cert", "hello\n");
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no PEM certificate")));

  c = TlsConfig();
  c.grpc_client_ca = WriteFile("not-a-ca", "hello\n");
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--grpc_client_ca")));

  c = Config();
  c.grpc_client_ca = client_ca_;
  EXPECT_THAT(BuildGrpcSecurity(c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs --grpc_tls_cert")));
}

// Verifies that the key never appears in an error, only the file names.
TEST_F(GrpcTlsTest, MismatchErrorDoesNotShowTheKey) {
  Config c = TlsConfig();
  c.grpc_tls_key = WriteFile("other2.key", pki_.wrong_name_key_pem);
  absl::Status s = BuildGrpcSecurity(c).status();
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("PRIVATE KEY")));
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
}

class GrpcTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config c;
    c.grpc_auth_token_file = WriteFile(
        "tokens", absl::StrCat("# downstream services\n\n", kToken, "\n  ",
                               kOtherToken, "  \n"));
    GrpcServer::Interceptors interceptors;
    interceptors.push_back(std::make_unique<MetadataRecorderFactory>(
        &calls_with_authorization_, &intercepted_calls_));
    server_ = std::make_unique<SecuredServer>(c, std::move(interceptors));
    channel_ = server_->Channel(grpc::InsecureChannelCredentials());
  }

  std::atomic<int> calls_with_authorization_{0};
  std::atomic<int> intercepted_calls_{0};
  std::unique_ptr<SecuredServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Verifies that the token is removed from the call once checked, so that
// interceptors and handlers never see it, and that rejected calls never
// reach them.
TEST_F(GrpcTokenTest, ConsumesTheAuthorizationMetadata) {
  ASSERT_TRUE(CallGetStatus(channel_, kToken).ok());
  EXPECT_EQ(intercepted_calls_.load(), 1);
  EXPECT_EQ(calls_with_authorization_.load(), 0);
  EXPECT_EQ(CallGetStatus(channel_, "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(intercepted_calls_.load(), 1);
}

TEST_F(GrpcTokenTest, AcceptsEveryListedToken) {
  EXPECT_EQ(server_->security().tokens, 2u);
  EXPECT_FALSE(server_->security().tls);
  grpc::Status status = CallGetStatus(channel_, kToken);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(CallGetStatus(channel_, kOtherToken).ok());
}

TEST_F(GrpcTokenTest, RejectsAMissingToken) {
  grpc::Status status = CallGetStatus(channel_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("missing bearer token"));
  EXPECT_THAT(status.error_message(), HasSubstr("authorization: Bearer"));
}

TEST_F(GrpcTokenTest, RejectsAWrongToken) {
  grpc::Status status = CallGetStatus(channel_, "not-the-token");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("invalid bearer token"));
  EXPECT_THAT(status.error_message(), Not(HasSubstr("not-the-token")));
  // A prefix of a valid token is not valid.
  EXPECT_EQ(CallGetStatus(channel_, std::string(kToken).substr(0, 5)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GrpcTokenTest, RejectsANonBearerScheme) {
  auto stub = v1::CompanyStream::NewStub(channel_);
  auto ctx = Context();
  ctx->AddMetadata("authorization", absl::StrCat("Basic ", kToken));
  v1::GetStatusRequest request;
  v1::GetStatusResponse response;
  grpc::Status status = stub->GetStatus(ctx.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("not a bearer token"));
}

TEST_F(GrpcTokenTest, GuardsStreamingCalls) {
  auto stub = v1::CompanyStream::NewStub(channel_);
  v1::ReplayEventsRequest request;
  {
    auto ctx = Context();
    auto reader = stub->ReplayEvents(ctx.get(), request);
    v1::Event event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto ctx = Context(kToken);
    auto reader = stub->ReplayEvents(ctx.get(), request);
    v1::Event event;
    while (reader->Read(&event)) {
    }
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
}

TEST_F(GrpcTokenTest, HealthAndReflectionNeedNoToken) {
  grpc::health::v1::HealthCheckResponse health;
  grpc::Status status = HealthCheck(channel_, &health);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  chstream::testing::ReflectionClient reflection(channel_);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> services,
                       reflection.ListServices());
  EXPECT_THAT(services, Contains(std::string(kServiceName)));
  EXPECT_THAT(reflection.Describe(kServiceName), IsOk());
}

// Verifies that tokens are registered as log secrets.
TEST_F(GrpcTokenTest, TokensAreRedactedFromLogs) {
  EXPECT_EQ(log::Redact(absl::StrCat("x ", kToken, " y")),
            "x [REDACTED] y");
}

TEST(TokenAuthenticatorTest, ChecksBearerValues) {
  TokenAuthenticator auth({"alpha", "beta"});
  const std::string method = "/chstream.v1.CompanyStream/GetStatus";
  EXPECT_OK(auth.Check(method, {"Bearer alpha"}));
  EXPECT_OK(auth.Check(method, {"bearer   beta "}));
  EXPECT_OK(auth.Check(method, {"Bearer wrong", "Bearer beta"}));
  EXPECT_THAT(auth.Check(method, {}),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("missing bearer token")));
  EXPECT_THAT(auth.Check(method, {"Bearer alph"}),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("invalid bearer token")));
  EXPECT_THAT(auth.Check(method, {"Bearer"}),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_THAT(auth.Check(method, {"Bearer "}),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_THAT(auth.Check(method, {"Beareralpha"}),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_THAT(auth.Check("", {}),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_OK(auth.Check("/grpc.health.v1.Health/Watch", {}));
  EXPECT_OK(auth.Check(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {}));
  EXPECT_FALSE(auth.IsValidToken(""));
  EXPECT_TRUE(auth.IsValidToken("beta"));
}

TEST(TokenAuthenticatorTest, ParsesTokenFiles) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> tokens,
                       ParseTokens("# comment\n\n  one  \r\ntwo\n#three\n"));
  EXPECT_THAT(tokens, ElementsAre("one", "two"));
  EXPECT_THAT(ParseTokens("# only a comment\n\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no token")));
  absl::Status inner_space = ParseTokens("ok\nsecret part\n").status();
  EXPECT_THAT(inner_space, StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("line 2")));
  EXPECT_THAT(std::string(inner_space.message()), Not(HasSubstr("secret")));
  EXPECT_THAT(LoadTokenFile(TempPath("no-such-token-file")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--grpc_auth_token_file")));
}

TEST(RemoteExposureTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "[::1]",
                           "localhost", "LOCALHOST", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "[::]", "", "10.0.0.1",
                           "128.0.0.1", "example.com", "::ffff:10.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
  EXPECT_EQ(HostOfAddress("[::1]:50051"), "::1");
  EXPECT_EQ(HostOfAddress("0.0.0.0:1"), "0.0.0.0");
}

TEST(RemoteExposureTest, RefusesPlaintextRemoteBinding) {
  ASSERT_OK_AND_ASSIGN(Config c, Load({"--grpc_address=0.0.0.0:50051"}));
  absl::Status s = CheckRemoteExposure(c);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          HasSubstr("--allow_insecure_remote")));
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
  ASSERT_OK_AND_ASSIGN(c, Load({"--grpc_address=[::]:50051"}));
  EXPECT_THAT(CheckRemoteExposure(c),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
}

TEST(RemoteExposureTest, AllowsLoopbackProtectedOrExplicitlyAllowed) {
  ASSERT_OK_AND_ASSIGN(Config c, Load({}));
  EXPECT_OK(CheckRemoteExposure(c));
  ASSERT_OK_AND_ASSIGN(c, Load({"--grpc_address=[::1]:0"}));
  EXPECT_OK(CheckRemoteExposure(c));
  ASSERT_OK_AND_ASSIGN(
      c, Load({"--grpc_address=0.0.0.0:50051", "--allow_insecure_remote"}));
  EXPECT_TRUE(c.allow_insecure_remote);
  EXPECT_OK(CheckRemoteExposure(c));
  ASSERT_OK_AND_ASSIGN(c, Load({"--grpc_address=0.0.0.0:50051"},
                               {{"CHSTREAM_ALLOW_INSECURE_REMOTE", "true"}}));
  EXPECT_OK(CheckRemoteExposure(c));
  ASSERT_OK_AND_ASSIGN(c, Load({"--grpc_address=0.0.0.0:50051",
                                "--grpc_auth_token_file=/some/tokens"}));
  EXPECT_OK(CheckRemoteExposure(c));
  ASSERT_OK_AND_ASSIGN(c, Load({"--grpc_address=0.0.0.0:50051",
                                "--grpc_tls_cert=a.crt",
                                "--grpc_tls_key=a.key"}));
  EXPECT_OK(CheckRemoteExposure(c));
  EXPECT_EQ(c.grpc_tls_cert[0], '/');  // resolved
}

TEST(SecurityConfigTest, TlsFlagsMustBePaired) {
  EXPECT_THAT(Load({"--grpc_tls_cert=a.crt"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs both")));
  EXPECT_THAT(Load({"--grpc_tls_key=a.key"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs both")));
  EXPECT_THAT(Load({"--grpc_client_ca=ca.crt"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--grpc_client_ca")));
  EXPECT_THAT(Load({"--allow_insecure_remote=maybe"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SecurityConfigTest, HelpNeverShowsTheKey) {
  const std::string key = "ch-key-5b7e2d1a9c";
  const std::string env_file =
      WriteFile("help.env", absl::StrCat("CH_STREAMING_API_KEY=", key, "\n"));
  for (const Env& env :
       {Env{{"CH_STREAMING_API_KEY", key}}, Env{{"CHSTREAM_ENV_FILE", env_file}}}) {
    ConfigExit exit_request{-1, ""};
    absl::StatusOr<Config> c = LoadConfig({"--help"}, env, &exit_request);
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(exit_request.code, 0);
    EXPECT_THAT(exit_request.output, HasSubstr("--grpc_tls_cert"));
    EXPECT_THAT(exit_request.output, HasSubstr("--allow_insecure_remote"));
    EXPECT_THAT(exit_request.output, Not(HasSubstr(key)));
  }
}

class LogCapture {
 public:
  LogCapture() {
    log::SetSinkForTest([this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogCapture() { log::SetSinkForTest(nullptr); }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST(FilePermissionsTest, WarnsAboutAGroupReadableKeyFile) {
  const std::string key = "ch-key-0644-d41d8cd9";
  const std::string path = WriteFile("key-0644", key, 0644);
  ASSERT_OK_AND_ASSIGN(Config c,
                       Load({}, {{"CH_STREAMING_API_KEY_FILE", path}}));
  EXPECT_EQ(c.api_key_file, path);
  LogCapture capture;
  EXPECT_EQ(WarnAboutExposedSecretFiles(c), 1);
  std::vector<std::string> lines = capture.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"warning\""));
  EXPECT_THAT(lines[0], HasSubstr(path));
  EXPECT_THAT(lines[0], HasSubstr("CH_STREAMING_API_KEY_FILE"));
  EXPECT_THAT(lines[0], HasSubstr("0644"));
  EXPECT_THAT(lines[0], Not(HasSubstr(key)));
}

TEST(FilePermissionsTest, SilentForAnOwnerOnlyKeyFile) {
  const std::string path = WriteFile("key-0600", "ch-key-0600", 0600);
  ASSERT_OK_AND_ASSIGN(Config c,
                       Load({}, {{"CH_STREAMING_API_KEY_FILE", path}}));
  LogCapture capture;
  EXPECT_EQ(WarnAboutExposedSecretFiles(c), 0);
  EXPECT_TRUE(capture.lines().empty());
}

TEST(FilePermissionsTest, CoversTheEnvFileTlsKeyAndTokenFile) {
  const std::string env_file =
      WriteFile("perm.env", "CH_STREAMING_API_KEY=ch-key-env\n", 0640);
  ASSERT_OK_AND_ASSIGN(Config c, Load({}, {{"CHSTREAM_ENV_FILE", env_file}}));
  c.grpc_tls_key = WriteFile("perm-tls.key", "k", 0604);
  c.grpc_auth_token_file = WriteFile("perm-tokens", "t", 0600);
  LogCapture capture;
  EXPECT_EQ(WarnAboutExposedSecretFiles(c), 2);
  std::vector<std::string> lines = capture.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr(env_file));
  EXPECT_THAT(lines[0], HasSubstr("0640"));
  EXPECT_THAT(lines[0], Not(HasSubstr("ch-key-env")));
  EXPECT_THAT(lines[1], HasSubstr("--grpc_tls_key"));
  EXPECT_THAT(FileMode(TempPath("no-such-file")).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace chstream::server
