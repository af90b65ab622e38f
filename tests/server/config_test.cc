#include "server/config.h"

#include <fstream>
#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::server {
namespace {

using ::chstream::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::HasSubstr;
using ::testing::Not;
using Env = absl::flat_hash_map<std::string, std::string>;

std::string TempPath(const std::string& name) {
  return std::string(getenv("TEST_TMPDIR")) + "/" + name;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

absl::StatusOr<Config> Load(std::vector<std::string> args, Env env = {}) {
  ConfigExit exit_request{-1, ""};
  // Never pick up a stray .env from the test's working directory.
  if (!env.contains("CHSTREAM_ENV_FILE")) {
    bool has_flag = false;
    for (const auto& a : args) has_flag |= a.rfind("--env_file", 0) == 0;
    if (!has_flag) {
      WriteFile(TempPath("empty.env"), "");
      env["CHSTREAM_ENV_FILE"] = TempPath("empty.env");
    }
  }
  return LoadConfig(args, env, &exit_request);
}

TEST(ConfigTest, Defaults) {
  ASSERT_OK_AND_ASSIGN(Config c, Load({}));
  EXPECT_EQ(c.grpc_address, "127.0.0.1:50051");
  EXPECT_THAT(c.streams, ElementsAre("companies"));
  EXPECT_EQ(c.upstream_url, "https://stream.companieshouse.gov.uk");
  EXPECT_EQ(c.idle_timeout, absl::Seconds(90));
  EXPECT_EQ(c.max_connections_per_key, 10);
  EXPECT_TRUE(c.api_keys.empty());
  EXPECT_TRUE(c.UseSimulator());
  EXPECT_EQ(c.db_path.back(), 'b');
  EXPECT_EQ(c.db_path[0], '/');  // resolved against the working directory
}

// Verifies the retention settings: defaults, days, binary sizes, the
// environment, and what an invalid value says.
TEST(ConfigTest, RetentionSettings) {
  ASSERT_OK_AND_ASSIGN(Config d, Load({}));
  EXPECT_EQ(d.retain_for, absl::ZeroDuration());
  EXPECT_EQ(d.retain_bytes, 0);
  EXPECT_EQ(d.retain_dead_letters_for, absl::Hours(24 * 30));
  ASSERT_OK_AND_ASSIGN(Config c,
                       Load({"--retain_for=90d", "--retain_bytes=20G"},
                            {{"CHSTREAM_RETAIN_DEAD_LETTERS_FOR", "36h"}}));
  EXPECT_EQ(c.retain_for, absl::Hours(24 * 90));
  EXPECT_EQ(c.retain_bytes, int64_t{20} << 30);
  EXPECT_EQ(c.retain_dead_letters_for, absl::Hours(36));
  ASSERT_OK_AND_ASSIGN(c, Load({"--retain_for=30s", "--retain_bytes=1536"}));
  EXPECT_EQ(c.retain_for, absl::Seconds(30));
  EXPECT_EQ(c.retain_bytes, 1536);
  ASSERT_OK_AND_ASSIGN(c, Load({"--retain_bytes=500MiB"}));
  EXPECT_EQ(c.retain_bytes, int64_t{500} << 20);
  for (const char* bad : {"--retain_for=3x", "--retain_for=-1d",
                          "--retain_bytes=12Q", "--retain_bytes=-5"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<Config> r = Load({bad});
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("--retain_"));
  }
}

// Verifies flag > environment > .env > default, setting by setting.
TEST(ConfigTest, Precedence) {
  const std::string env_file = TempPath("precedence.env");
  WriteFile(env_file,
            "# comment\n"
            "export CHSTREAM_GRPC_ADDRESS=127.0.0.1:1111\n"
            "CHSTREAM_STREAMS='filings,charges'\n"
            "CHSTREAM_IDLE_TIMEOUT=\"30s\"  \n"
            "CHSTREAM_MAX_SUBSCRIBERS=7 # trailing comment\n");
  ASSERT_OK_AND_ASSIGN(
      Config c,
      Load({"--env_file=" + env_file, "--grpc_address=127.0.0.1:3333"},
           {{"CHSTREAM_GRPC_ADDRESS", "127.0.0.1:2222"},
            {"CHSTREAM_STREAMS", "officers"}}));
  EXPECT_EQ(c.grpc_address, "127.0.0.1:3333");    // flag
  EXPECT_THAT(c.streams, ElementsAre("officers"));  // environment
  EXPECT_EQ(c.idle_timeout, absl::Seconds(30));     // .env
  EXPECT_EQ(c.max_subscribers, 7);                  // .env
  EXPECT_EQ(c.breaker_failures, 5);                 // default
  EXPECT_EQ(c.env_file, env_file);
}

TEST(ConfigTest, StreamsAll) {
  ASSERT_OK_AND_ASSIGN(Config c, Load({"--streams=all"}));
  EXPECT_EQ(c.streams.size(), 9u);
}

TEST(ConfigTest, InvalidValuesNameTheSettingAndWhatIsAllowed) {
  EXPECT_THAT(Load({"--streams=companies,bogus"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--streams"), HasSubstr("bogus"),
                             HasSubstr("filings"))));
  EXPECT_THAT(Load({"--idle_timeout=soon"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--idle_timeout"),
                             HasSubstr("CHSTREAM_IDLE_TIMEOUT"),
                             HasSubstr("duration"))));
  EXPECT_THAT(Load({}, {{"CHSTREAM_MAX_SUBSCRIBERS", "-1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("an integer from 1")));
  EXPECT_THAT(Load({"--upstream_url=ftp://x"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("http:// or https://")));
  EXPECT_THAT(Load({"--grpc_address=nowhere"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("HOST:PORT")));
  EXPECT_THAT(Load({"--no_such_flag=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag")));
  EXPECT_THAT(Load({"--on_timepoint_expired=panic"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resume_from_head or stop")));
  EXPECT_THAT(Load({"--start_timepoint=companies"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("<stream>:<timepoint>")));
}

TEST(ConfigTest, KeyIsNeverAFlag) {
  EXPECT_THAT(Load({"--api_key=abc"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("CH_STREAMING_API_KEY"),
                             Not(HasSubstr("abc")))));
}

TEST(ConfigTest, KeyFromEnvironmentEnvFileOrKeyFile) {
  ASSERT_OK_AND_ASSIGN(Config a, Load({}, {{"CH_STREAMING_API_KEY", " k1 "}}));
  EXPECT_THAT(a.api_keys, ElementsAre("k1"));
  EXPECT_FALSE(a.UseSimulator());

  const std::string env_file = TempPath("key.env");
  WriteFile(env_file, "CH_STREAMING_API_KEY=k2,k3\n");
  ASSERT_OK_AND_ASSIGN(Config b, Load({"--env_file=" + env_file}));
  EXPECT_THAT(b.api_keys, ElementsAre("k2", "k3"));

  const std::string key_file = TempPath("key.txt");
  WriteFile(key_file, "k4\n");
  ASSERT_OK_AND_ASSIGN(Config c,
                       Load({}, {{"CH_STREAMING_API_KEY_FILE", key_file}}));
  EXPECT_THAT(c.api_keys, ElementsAre("k4"));

  ASSERT_OK_AND_ASSIGN(Config d, Load({"--simulate"},
                                      {{"CH_STREAMING_API_KEY", "k5"}}));
  EXPECT_TRUE(d.UseSimulator());
}

TEST(ConfigTest, TooManyStreamsForTheKeysIsAStartupError) {
  EXPECT_THAT(Load({"--streams=all", "--max_connections_per_key=2"},
                   {{"CH_STREAMING_API_KEY", "k1,k2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--max_connections_per_key")));
  EXPECT_OK(Load({"--streams=all", "--max_connections_per_key=5"},
                 {{"CH_STREAMING_API_KEY", "k1,k2"}}));
}

TEST(ConfigTest, HelpListsEverySettingWithItsDefault) {
  ConfigExit exit_request{-1, ""};
  EXPECT_FALSE(LoadConfig({"--help"}, {}, &exit_request).ok());
  EXPECT_EQ(exit_request.code, 0);
  for (const char* name :
       {"--grpc_address", "--db_path", "--streams", "--upstream_url",
        "--ca_file", "--env_file", "CHSTREAM_GRPC_ADDRESS", "127.0.0.1:50051",
        "CH_STREAMING_API_KEY"}) {
    EXPECT_THAT(exit_request.output, HasSubstr(name));
  }
}

// Verifies that an empty boolean (a deployment template's blank
// `CHSTREAM_ALLOW_INSECURE_REMOTE=`) is an error naming the variable, not
// "true", in the environment and in a .env file; a bare --flag still means
// true.
TEST(ConfigTest, EmptyBooleanIsAnErrorNamingTheVariable) {
  EXPECT_THAT(Load({"--grpc_address=0.0.0.0:50051"},
                   {{"CHSTREAM_ALLOW_INSECURE_REMOTE", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("CHSTREAM_ALLOW_INSECURE_REMOTE"),
                             HasSubstr("empty"))));
  const std::string env_file = TempPath("empty_bool.env");
  WriteFile(env_file, "CHSTREAM_SIMULATE=\n");
  EXPECT_THAT(Load({"--env_file=" + env_file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("CHSTREAM_SIMULATE"),
                             HasSubstr(env_file), HasSubstr("empty"))));
  EXPECT_THAT(Load({"--allow_insecure_remote="}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--allow_insecure_remote")));

  ASSERT_OK_AND_ASSIGN(Config bare, Load({"--allow_insecure_remote"}));
  EXPECT_TRUE(bare.allow_insecure_remote);
  ASSERT_OK_AND_ASSIGN(Config off, Load({"--noallow_insecure_remote"},
                                        {{"CHSTREAM_ALLOW_INSECURE_REMOTE",
                                          "true"}}));
  EXPECT_FALSE(off.allow_insecure_remote);
  ASSERT_OK_AND_ASSIGN(Config env_true,
                       Load({}, {{"CHSTREAM_ALLOW_INSECURE_REMOTE", "yes"}}));
  EXPECT_TRUE(env_true.allow_insecure_remote);
}

// Verifies that a misspelt CHSTREAM_* variable (environment or .env) is a
// warning naming it and the nearest setting, and not an error: orchestrators
// inject variables such as CHSTREAM_PORT.
TEST(ConfigTest, UnknownVariableIsAWarningNamingTheNearestSetting) {
  ASSERT_OK_AND_ASSIGN(Config c, Load({}, {{"CHSTREAM_SYNC_FUL", "true"},
                                           {"CHSTREAM_PORT", "8080"},
                                           {"OTHER_VARIABLE", "x"},
                                           {"CHSTREAM_ENV_FILE_X", "y"}}));
  ASSERT_EQ(c.warnings.size(), 3u);
  EXPECT_THAT(c.warnings, Contains(AllOf(HasSubstr("CHSTREAM_SYNC_FUL"),
                                         HasSubstr("CHSTREAM_SYNC_FULL"))));
  EXPECT_THAT(c.warnings, Contains(HasSubstr("CHSTREAM_PORT")));
  EXPECT_THAT(c.warnings, Contains(AllOf(HasSubstr("CHSTREAM_ENV_FILE_X"),
                                         HasSubstr("CHSTREAM_ENV_FILE"))));

  const std::string env_file = TempPath("misspelt.env");
  WriteFile(env_file, "CHSTREAM_GRPC_ADRESS=127.0.0.1:1\n");
  ASSERT_OK_AND_ASSIGN(Config d, Load({"--env_file=" + env_file}));
  ASSERT_EQ(d.warnings.size(), 1u);
  EXPECT_THAT(d.warnings[0], AllOf(HasSubstr("CHSTREAM_GRPC_ADRESS"),
                                   HasSubstr(env_file),
                                   HasSubstr("CHSTREAM_GRPC_ADDRESS")));

  ASSERT_OK_AND_ASSIGN(Config clean, Load({}));
  EXPECT_THAT(clean.warnings, IsEmpty());
}

// Verifies --synchronous (full by default: a position reaches a client only
// once durable) and the older --sync_full, kept as an alias.
TEST(ConfigTest, SynchronousDefaultsToFullAndSyncFullStillWorks) {
  ASSERT_OK_AND_ASSIGN(Config def, Load({}));
  EXPECT_TRUE(def.sync_full);
  ASSERT_OK_AND_ASSIGN(Config normal, Load({"--synchronous=normal"}));
  EXPECT_FALSE(normal.sync_full);
  ASSERT_OK_AND_ASSIGN(Config env_normal,
                       Load({}, {{"CHSTREAM_SYNCHRONOUS", "NORMAL"}}));
  EXPECT_FALSE(env_normal.sync_full);
  ASSERT_OK_AND_ASSIGN(Config old_true, Load({"--sync_full"}));
  EXPECT_TRUE(old_true.sync_full);
  ASSERT_OK_AND_ASSIGN(Config old_false,
                       Load({}, {{"CHSTREAM_SYNC_FULL", "false"}}));
  EXPECT_FALSE(old_false.sync_full);
  EXPECT_FALSE(def.new_store_id);
  ASSERT_OK_AND_ASSIGN(Config renew, Load({"--new_store_id"}));
  EXPECT_TRUE(renew.new_store_id);
  EXPECT_THAT(Load({"--synchronous=off"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--synchronous"),
                             HasSubstr("full or normal"))));
}

TEST(ConfigTest, SubscriberWriteTimeoutAndMaxReplays) {
  ASSERT_OK_AND_ASSIGN(Config d, Load({}));
  EXPECT_EQ(d.subscriber_write_timeout, absl::Seconds(30));
  EXPECT_EQ(d.max_replays, 32);
  ASSERT_OK_AND_ASSIGN(
      Config c, Load({"--max_replays=4"},
                     {{"CHSTREAM_SUBSCRIBER_WRITE_TIMEOUT", "2s"}}));
  EXPECT_EQ(c.subscriber_write_timeout, absl::Seconds(2));
  EXPECT_EQ(c.max_replays, 4);
  EXPECT_FALSE(Load({"--max_replays=0"}).ok());
}

TEST(ParseEnvFileTest, QuotesCommentsExport) {
  ASSERT_OK_AND_ASSIGN(auto kv, ParseEnvFile("A=1\n"
                                             "  export B = two words \n"
                                             "C=\"x\\\"y\\nz\"\n"
                                             "D='a # not a comment'\n"
                                             "E=v # comment\n"
                                             "# F=ignored\n"
                                             "\n"));
  ASSERT_EQ(kv.size(), 5u);
  EXPECT_EQ(kv[0], std::make_pair(std::string("A"), std::string("1")));
  EXPECT_EQ(kv[1].second, "two words");
  EXPECT_EQ(kv[2].second, "x\"y\nz");
  EXPECT_EQ(kv[3].second, "a # not a comment");
  EXPECT_EQ(kv[4].second, "v");
  EXPECT_THAT(ParseEnvFile("NOEQUALS\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(ParseEnvFile("A=\"open\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unterminated")));
}

}  // namespace
}  // namespace chstream::server
