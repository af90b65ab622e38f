// The grpcurl scripts in client_examples/grpcurl/: syntax (bash -n), and what
// they would run. grpcurl itself cannot be installed on the build machines,
// so a fake `grpcurl` on PATH records its arguments; the test then parses
// them with grpcurl's flag rules (Go's flag package: flags first, unknown
// flags are errors), resolves the method or symbol in the generated
// descriptor pool and parses the -d body into the method's request type with
// protobuf's own proto3 JSON parser, as grpcurl does after reflection.
#include <dirent.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "chstream/v1/chstream.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.pb.h"
#include "gtest/gtest.h"

namespace chstream::client_examples {
namespace {

using ::google::protobuf::DescriptorPool;
using ::google::protobuf::Message;
using ::google::protobuf::MethodDescriptor;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kScriptDir[] = "client_examples/grpcurl";  // in runfiles
constexpr char kAddr[] = "192.0.2.7:6000";

const std::vector<std::string>& AllScripts() {
  static const auto* scripts =
      new std::vector<std::string>{"company.sh",
                                   "company_resources.sh",
                                   "describe.sh",
                                   "health_check.sh",
                                   "health_watch.sh",
                                   "list.sh",
                                   "replay_from_position.sh",
                                   "replay_from_time.sh",
                                   "resource.sh",
                                   "status.sh",
                                   "subscribe.sh"};
  return *scripts;
}

std::string TestTmp() { return std::getenv("TEST_TMPDIR"); }

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// grpcurl's flags as of v1.8/v1.9 (cmd/grpcurl/grpcurl.go).
const std::set<std::string>& BoolFlags() {
  static const auto* flags = new std::set<std::string>{"plaintext",
                                                       "insecure",
                                                       "emit-defaults",
                                                       "keep-proto-names",
                                                       "format-error",
                                                       "msg-template",
                                                       "v",
                                                       "vv",
                                                       "allow-unknown-fields",
                                                       "expand-headers",
                                                       "alts",
                                                       "use-reflection",
                                                       "help",
                                                       "version"};
  return *flags;
}
const std::set<std::string>& ValueFlags() {
  static const auto* flags = new std::set<std::string>{"d",
                                                       "format",
                                                       "max-time",
                                                       "connect-timeout",
                                                       "keepalive-time",
                                                       "max-msg-sz",
                                                       "H",
                                                       "rpc-header",
                                                       "reflect-header",
                                                       "authority",
                                                       "servername",
                                                       "cacert",
                                                       "cert",
                                                       "key",
                                                       "protoset",
                                                       "proto",
                                                       "import-path",
                                                       "protoset-out",
                                                       "proto-out-dir",
                                                       "user-agent"};
  return *flags;
}

// One grpcurl command line, parsed.
struct GrpcurlCall {
  std::map<std::string, std::string> flags;  // bool flags map to "true"
  std::string address;
  std::string verb;                // "list", "describe" or "" (invoke)
  std::string symbol;              // service/symbol, or the method
  std::vector<std::string> extra;  // positional arguments grpcurl rejects
};

// Parses like Go's flag package: flags ("-x", "--x", "-x=v", "-x v") until
// the first non-flag argument or "--".
GrpcurlCall ParseGrpcurl(const std::vector<std::string>& args) {
  GrpcurlCall call;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.size() < 2 || a[0] != '-') break;
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (BoolFlags().count(name) != 0) {
      call.flags[name] = value.value_or("true");
    } else if (ValueFlags().count(name) != 0) {
      if (!value.has_value()) {
        EXPECT_LT(i + 1, args.size()) << "-" << name << " needs a value";
        if (i + 1 >= args.size()) return call;
        value = args[++i];
      }
      call.flags[name] = *value;
    } else {
      ADD_FAILURE() << "grpcurl has no flag -" << name;
    }
  }
  std::vector<std::string> rest(args.begin() + i, args.end());
  if (!rest.empty()) {
    call.address = rest[0];
    rest.erase(rest.begin());
  }
  if (!rest.empty() && (rest[0] == "list" || rest[0] == "describe")) {
    call.verb = rest[0];
    rest.erase(rest.begin());
  }
  if (!rest.empty()) {
    call.symbol = rest[0];
    rest.erase(rest.begin());
  }
  call.extra = rest;
  return call;
}

struct ScriptRun {
  int exit_code = -1;
  bool grpcurl_ran = false;
  GrpcurlCall call;
};

class GrpcurlScriptsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Link the generated descriptors of both APIs into the pool.
    (void)v1::SubscribeRequest::descriptor();
    (void)grpc::health::v1::HealthCheckRequest::descriptor();
    const std::string bin = TestTmp() + "/fakebin";
    ASSERT_EQ(mkdir(bin.c_str(), 0755), 0);
    std::ofstream(bin + "/grpcurl")
        << "#!/bin/sh\n"
           "for a in \"$@\"; do printf '%s\\0' \"$a\"; done "
           "> \"$FAKE_GRPCURL_ARGS\"\n"
           "exit \"${FAKE_GRPCURL_EXIT:-0}\"\n";
    ASSERT_EQ(chmod((bin + "/grpcurl").c_str(), 0755), 0);
  }

  // Runs `script` with the fake grpcurl; `env` adds variables.
  ScriptRun Run(const std::string& script,
                const std::vector<std::string>& args = {},
                const std::map<std::string, std::string>& env = {},
                int grpcurl_exit = 0) {
    const std::string args_file =
        absl::StrCat(TestTmp(), "/args", ++runs_, ".bin");
    std::string cmd = absl::StrCat(
        "env -i PATH=", Quote(TestTmp() + "/fakebin:/usr/bin:/bin"),
        " ADDR=", kAddr, " FAKE_GRPCURL_ARGS=", Quote(args_file),
        " FAKE_GRPCURL_EXIT=", grpcurl_exit);
    for (const auto& [k, v] : env) absl::StrAppend(&cmd, " ", k, "=", Quote(v));
    absl::StrAppend(&cmd, " bash ",
                    Quote(absl::StrCat(kScriptDir, "/", script)));
    for (const std::string& a : args) absl::StrAppend(&cmd, " ", Quote(a));
    absl::StrAppend(&cmd, " >/dev/null 2>&1");
    ScriptRun run;
    const int status = std::system(cmd.c_str());
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(args_file, std::ios::binary);
    if (in) {
      run.grpcurl_ran = true;
      std::string all((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
      std::vector<std::string> argv;
      size_t start = 0;
      for (size_t nul; (nul = all.find('\0', start)) != std::string::npos;
           start = nul + 1) {
        argv.push_back(all.substr(start, nul - start));
      }
      run.call = ParseGrpcurl(argv);
    }
    return run;
  }

  // Checks what every call has in common, then parses -d (if any) into the
  // method's request. Returns nullptr (after a test failure) if it cannot.
  static std::unique_ptr<Message> CheckInvoke(const ScriptRun& run,
                                              const std::string& method) {
    EXPECT_TRUE(run.grpcurl_ran);
    const GrpcurlCall& call = run.call;
    EXPECT_EQ(call.flags.count("plaintext"), 1u);
    EXPECT_EQ(call.flags.count("proto"), 0u) << "reflection only";
    EXPECT_EQ(call.flags.count("protoset"), 0u) << "reflection only";
    EXPECT_EQ(call.address, kAddr);
    EXPECT_EQ(call.verb, "");
    EXPECT_EQ(call.symbol, method);
    EXPECT_THAT(call.extra, IsEmpty());
    std::string dotted = method;
    const size_t slash = dotted.rfind('/');
    if (slash != std::string::npos) dotted[slash] = '.';
    const MethodDescriptor* m =
        DescriptorPool::generated_pool()->FindMethodByName(dotted);
    if (m == nullptr) {
      ADD_FAILURE() << "no method " << method;
      return nullptr;
    }
    std::unique_ptr<Message> request(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(m->input_type())
            ->New());
    const auto it = call.flags.find("d");
    if (it != call.flags.end()) {
      const auto status = google::protobuf::util::JsonStringToMessage(
          it->second, request.get());
      if (!status.ok()) {
        ADD_FAILURE() << "-d " << it->second << ": " << status.ToString();
        return nullptr;
      }
    }
    return request;
  }

  template <typename T>
  static T As(const std::unique_ptr<Message>& m) {
    T out;
    if (m != nullptr) out.CopyFrom(*m);
    return out;
  }

  static inline int runs_ = 0;  // unique argument files across tests
};

TEST_F(GrpcurlScriptsTest, EveryScriptIsValidBashAndExecutable) {
  for (const std::string& script : AllScripts()) {
    const std::string path = absl::StrCat(kScriptDir, "/", script);
    EXPECT_EQ(std::system(absl::StrCat("bash -n ", Quote(path)).c_str()), 0)
        << script;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
    EXPECT_NE(st.st_mode & S_IXUSR, 0u) << script << " is not executable";
    std::ifstream in(path);
    std::string first_line;
    std::getline(in, first_line);
    EXPECT_EQ(first_line, "#!/usr/bin/env bash") << script;
  }
}

// Verifies that the list above is every script there is.
TEST_F(GrpcurlScriptsTest, EveryScriptIsCovered) {
  std::vector<std::string> found;
  DIR* d = opendir(kScriptDir);
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > 3 && name.substr(name.size() - 3) == ".sh") {
      found.push_back(name);
    }
  }
  closedir(d);
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, AllScripts());
}

TEST_F(GrpcurlScriptsTest, List) {
  ScriptRun run = Run("list.sh");
  EXPECT_EQ(run.exit_code, 0);
  ASSERT_TRUE(run.grpcurl_ran);
  EXPECT_EQ(run.call.flags.count("plaintext"), 1u);
  EXPECT_EQ(run.call.address, kAddr);
  EXPECT_EQ(run.call.verb, "list");
  EXPECT_EQ(run.call.symbol, "");
  run = Run("list.sh", {"chstream.v1.CompanyStream"});
  EXPECT_EQ(run.call.verb, "list");
  EXPECT_EQ(run.call.symbol, "chstream.v1.CompanyStream");
  EXPECT_EQ(Run("list.sh", {"a", "b"}).exit_code, 2);
}

TEST_F(GrpcurlScriptsTest, Describe) {
  ScriptRun run = Run("describe.sh");
  EXPECT_EQ(run.exit_code, 0);
  ASSERT_TRUE(run.grpcurl_ran);
  EXPECT_EQ(run.call.flags.count("plaintext"), 1u);
  EXPECT_EQ(run.call.address, kAddr);
  EXPECT_EQ(run.call.verb, "describe");
  EXPECT_EQ(run.call.symbol, "chstream.v1.CompanyStream");
  EXPECT_NE(
      DescriptorPool::generated_pool()->FindServiceByName(run.call.symbol),
      nullptr);
  run = Run("describe.sh", {"chstream.v1.SubscribeRequest"});
  EXPECT_EQ(run.call.symbol, "chstream.v1.SubscribeRequest");
}

TEST_F(GrpcurlScriptsTest, Status) {
  ScriptRun run = Run("status.sh");
  EXPECT_EQ(run.exit_code, 0);
  ASSERT_NE(CheckInvoke(run, "chstream.v1.CompanyStream/GetStatus"), nullptr);
  EXPECT_EQ(run.call.flags.count("emit-defaults"), 1u);
  EXPECT_EQ(run.call.flags.count("d"), 0u);
}

TEST_F(GrpcurlScriptsTest, ReplayFromPosition) {
  ScriptRun run = Run("replay_from_position.sh", {"1200", "50"});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_EQ(req.start().from_case(), v1::StartPoint::kAfterPosition);
  EXPECT_EQ(req.start().after_position(), 1200u);
  EXPECT_EQ(req.limit(), 50u);

  run = Run("replay_from_position.sh");
  req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_EQ(req.start().from_case(), v1::StartPoint::kAfterPosition);
  EXPECT_EQ(req.start().after_position(), 0u);
  EXPECT_EQ(req.limit(), 10u);

  run = Run("replay_from_position.sh", {"12; rm -rf /"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_FALSE(run.grpcurl_ran);

  run = Run("replay_from_position.sh", {"7"},
            {{"STORE_ID", "0123456789abcdef0123456789abcdef"}});
  req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_EQ(req.expected_store_id(), "0123456789abcdef0123456789abcdef");
  run = Run("replay_from_position.sh", {"7"}, {{"STORE_ID", "x\"y"}});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_FALSE(run.grpcurl_ran);
}

TEST_F(GrpcurlScriptsTest, ReplayFromTime) {
  ScriptRun run = Run("replay_from_time.sh", {"2024-03-01T09:30:00Z", "100"});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_EQ(req.start().from_case(), v1::StartPoint::kPublishedSince);
  EXPECT_EQ(req.start().published_since().seconds(), 1709285400);
  EXPECT_EQ(req.limit(), 100u);

  run = Run("replay_from_time.sh", {"2024-03-01T09:30:00.5+01:00"});
  req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_EQ(req.start().published_since().seconds(), 1709285400 - 3600);
  EXPECT_EQ(req.start().published_since().nanos(), 500'000'000);

  // Default: 10 minutes ago.
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  run = Run("replay_from_time.sh");
  req = As<v1::ReplayEventsRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ReplayEvents"));
  EXPECT_GE(req.start().published_since().seconds(), now - 11 * 60);
  EXPECT_LE(req.start().published_since().seconds(), now - 9 * 60);
  EXPECT_EQ(req.limit(), 10u);

  for (const char* bad : {"yesterday", "2024-03-01", "2024-03-01T09:30:00"}) {
    run = Run("replay_from_time.sh", {bad});
    EXPECT_EQ(run.exit_code, 2) << bad;
    EXPECT_FALSE(run.grpcurl_ran) << bad;
  }
}

TEST_F(GrpcurlScriptsTest, SubscribeDefaults) {
  ScriptRun run = Run("subscribe.sh");
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::SubscribeRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/Subscribe"));
  EXPECT_EQ(req.start().from_case(), v1::StartPoint::kNow);
  EXPECT_THAT(req.filter().streams(), IsEmpty());
  EXPECT_THAT(req.filter().company_numbers(), IsEmpty());
  EXPECT_EQ(req.heartbeat_seconds(), 5u);
  EXPECT_EQ(run.call.flags["max-time"], "30");
}

TEST_F(GrpcurlScriptsTest, SubscribeWithFilterAndResume) {
  ScriptRun run = Run("subscribe.sh", {"companies", "filings"},
                      {{"COMPANY", "SC571653"},
                       {"AFTER_POSITION", "1200"},
                       {"STORE_ID", "0123456789abcdef0123456789abcdef"},
                       {"MAX_TIME", "300"},
                       {"HEARTBEAT_SECONDS", "10"}});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::SubscribeRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/Subscribe"));
  EXPECT_EQ(req.start().from_case(), v1::StartPoint::kAfterPosition);
  EXPECT_EQ(req.start().after_position(), 1200u);
  EXPECT_THAT(req.filter().streams(), ElementsAre("companies", "filings"));
  EXPECT_THAT(req.filter().company_numbers(), ElementsAre("SC571653"));
  EXPECT_EQ(req.heartbeat_seconds(), 10u);
  EXPECT_EQ(req.expected_store_id(), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(run.call.flags["max-time"], "300");
}

// Verifies that the -max-time deadline (grpcurl exit 64 + DeadlineExceeded)
// is a normal end, and that other failures pass through.
TEST_F(GrpcurlScriptsTest, SubscribeExitCodes) {
  EXPECT_EQ(Run("subscribe.sh", {}, {}, 64 + 4).exit_code, 0);
  EXPECT_EQ(Run("subscribe.sh", {}, {}, 64 + 14).exit_code, 78);  // UNAVAILABLE
  EXPECT_EQ(Run("subscribe.sh", {}, {}, 1).exit_code, 1);
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>,
                             std::map<std::string, std::string>>>{
           {{"Companies!"}, {}},
           {{}, {{"AFTER_POSITION", "-1"}}},
           {{}, {{"COMPANY", "x\"y"}}},
           {{}, {{"MAX_TIME", "soon"}}},
           {{}, {{"HEARTBEAT_SECONDS", "1.5"}}},
           {{}, {{"STORE_ID", "not-an-id"}}}}) {
    ScriptRun run = Run("subscribe.sh", args, env);
    EXPECT_EQ(run.exit_code, 2);
    EXPECT_FALSE(run.grpcurl_ran);
  }
}

TEST_F(GrpcurlScriptsTest, Company) {
  ScriptRun run = Run("company.sh", {"SC571653"});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::GetCompanyRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/GetCompany"));
  EXPECT_EQ(req.company_number(), "SC571653");
  EXPECT_EQ(Run("company.sh").exit_code, 2);
  run = Run("company.sh", {"\"}"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_FALSE(run.grpcurl_ran);
  EXPECT_EQ(Run("company.sh", {"99999999"}, {}, 64 + 5).exit_code, 69);
}

TEST_F(GrpcurlScriptsTest, Resource) {
  const std::string uri =
      "/company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc";
  ScriptRun run = Run("resource.sh", {uri});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::GetResourceRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/GetResource"));
  EXPECT_EQ(req.resource_uri(), uri);
  run = Run("resource.sh", {"company/04567890/exemptions"});
  EXPECT_EQ(As<v1::GetResourceRequest>(
                CheckInvoke(run, "chstream.v1.CompanyStream/GetResource"))
                .resource_uri(),
            "company/04567890/exemptions");
  EXPECT_EQ(Run("resource.sh").exit_code, 2);
  for (const char* bad : {"", "/company/x\"}", "/a b"}) {
    run = Run("resource.sh", {bad});
    EXPECT_EQ(run.exit_code, 2) << bad;
    EXPECT_FALSE(run.grpcurl_ran) << bad;
  }
  EXPECT_EQ(Run("resource.sh", {"/company/99999999"}, {}, 64 + 5).exit_code,
            69);
}

TEST_F(GrpcurlScriptsTest, CompanyResources) {
  ScriptRun run = Run("company_resources.sh", {"07217743"});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<v1::ListCompanyResourcesRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ListCompanyResources"));
  EXPECT_EQ(req.company_number(), "07217743");
  EXPECT_THAT(req.resource_kinds(), IsEmpty());
  EXPECT_EQ(req.page_size(), 0u);
  EXPECT_EQ(req.page_token(), "");
  EXPECT_FALSE(req.include_deleted());

  run = Run("company_resources.sh",
            {"07217743", "company-psc-individual", "company-psc-corporate"},
            {{"PAGE_SIZE", "1000"},
             {"PAGE_TOKEN", "cjE6ODowNzIxNzc0Mxo-_"},
             {"INCLUDE_DELETED", "1"}});
  EXPECT_EQ(run.exit_code, 0);
  req = As<v1::ListCompanyResourcesRequest>(
      CheckInvoke(run, "chstream.v1.CompanyStream/ListCompanyResources"));
  EXPECT_THAT(req.resource_kinds(),
              ElementsAre("company-psc-individual", "company-psc-corporate"));
  EXPECT_EQ(req.page_size(), 1000u);
  EXPECT_EQ(req.page_token(), "cjE6ODowNzIxNzc0Mxo-_");
  EXPECT_TRUE(req.include_deleted());

  EXPECT_EQ(Run("company_resources.sh").exit_code, 2);
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>,
                             std::map<std::string, std::string>>>{
           {{"x\"y"}, {}},
           {{"07217743", "Officers!"}, {}},
           {{"07217743"}, {{"PAGE_SIZE", "-1"}}},
           {{"07217743"}, {{"PAGE_TOKEN", "a\"b"}}},
           {{"07217743"}, {{"INCLUDE_DELETED", "yes"}}}}) {
    run = Run("company_resources.sh", args, env);
    EXPECT_EQ(run.exit_code, 2);
    EXPECT_FALSE(run.grpcurl_ran);
  }
}

TEST_F(GrpcurlScriptsTest, HealthCheck) {
  ScriptRun run = Run("health_check.sh");
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<grpc::health::v1::HealthCheckRequest>(
      CheckInvoke(run, "grpc.health.v1.Health/Check"));
  EXPECT_EQ(req.service(), "");
  run = Run("health_check.sh", {"chstream.v1.CompanyStream"});
  req = As<grpc::health::v1::HealthCheckRequest>(
      CheckInvoke(run, "grpc.health.v1.Health/Check"));
  EXPECT_EQ(req.service(), "chstream.v1.CompanyStream");
  EXPECT_EQ(Run("health_check.sh", {"a\"b"}).exit_code, 2);
}

TEST_F(GrpcurlScriptsTest, HealthWatch) {
  ScriptRun run = Run("health_watch.sh", {"chstream.v1.CompanyStream"});
  EXPECT_EQ(run.exit_code, 0);
  auto req = As<grpc::health::v1::HealthCheckRequest>(
      CheckInvoke(run, "grpc.health.v1.Health/Watch"));
  EXPECT_EQ(req.service(), "chstream.v1.CompanyStream");
  EXPECT_EQ(run.call.flags["max-time"], "60");
  EXPECT_EQ(Run("health_watch.sh", {}, {{"MAX_TIME", "5"}}, 64 + 4).exit_code,
            0);
  EXPECT_EQ(Run("health_watch.sh", {}, {}, 64 + 14).exit_code, 78);
}

}  // namespace
}  // namespace chstream::client_examples
