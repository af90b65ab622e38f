#include "ingest/simulator/simulator_flags.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest::sim {
namespace {

using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(SimulatorFlagsTest, DefaultsSuitTheBinary) {
  ASSERT_OK_AND_ASSIGN(SimulatorFlags flags, ParseSimulatorFlags({}));
  EXPECT_FALSE(flags.help);
  EXPECT_THAT(flags.options.keys, ElementsAre("sim-key"));
  EXPECT_EQ(flags.options.retention_events, 200'000);
  EXPECT_EQ(flags.options.retention_bytes, 32 << 20);
  EXPECT_EQ(flags.options.address, "127.0.0.1");
  EXPECT_EQ(flags.options.port, 0);
  EXPECT_EQ(flags.options.companies_rate, 10);
  EXPECT_EQ(flags.options.heartbeat_interval, absl::Seconds(30));
  EXPECT_TRUE(flags.options.headers_on_first_byte);
  EXPECT_EQ(flags.log_level, "info");
}

TEST(SimulatorFlagsTest, ParsesEveryKindOfValue) {
  ASSERT_OK_AND_ASSIGN(SimulatorFlags flags,
                       ParseSimulatorFlags({"--port=8090",
                                            "--keys",
                                            "k1, k2",
                                            "--tls_cert=/tmp/c.pem",
                                            "--tls_key=/tmp/k.pem",
                                            "--seed=42",
                                            "--rate=0",
                                            "--rates=filings=5,officers=0.5",
                                            "--streams=companies,filings",
                                            "--initial_events=7",
                                            "--max_events=100",
                                            "--retention_events=-1",
                                            "--retention_bytes=-1",
                                            "--heartbeat_seconds=0.05",
                                            "--headers_immediately",
                                            "--invalid_timepoint_status=400",
                                            "--future_timepoint=tail",
                                            "--max_connections_per_key=2",
                                            "--cap_mode=evict",
                                            "--max_connects_per_minute=30",
                                            "--threads=2",
                                            "--go_html_escape",
                                            "--profile_only=true",
                                            "--published_at=plain,offset",
                                            "--gap_probability=0",
                                            "--split_random=9",
                                            "--coalesce",
                                            "--nolone_newline_chunks",
                                            "--malformed_every=5",
                                            "--close_after_events=3",
                                            "--close_style=clean",
                                            "--close_mid_line",
                                            "--stall=false",
                                            "--heartbeats_die=1",
                                            "--max_connection_age_seconds=2.5",
                                            "--slow_reader_timeout_seconds=4",
                                            "--fail_first_attempts=2",
                                            "--fail_status=502",
                                            "--fail_delay_seconds=0.5",
                                            "--retry_after_seconds=60",
                                            "--log_level=debug"}));
  const Options& o = flags.options;
  EXPECT_EQ(o.port, 8090);
  EXPECT_THAT(o.keys, ElementsAre("k1", "k2"));
  EXPECT_EQ(flags.tls_cert_path, "/tmp/c.pem");
  EXPECT_EQ(flags.tls_key_path, "/tmp/k.pem");
  EXPECT_EQ(o.seed, 42u);
  EXPECT_EQ(o.companies_rate, 0);
  EXPECT_THAT(o.stream_rates,
              ElementsAre(Pair("filings", 5), Pair("officers", 0.5)));
  EXPECT_THAT(o.streams, ElementsAre("companies", "filings"));
  EXPECT_EQ(o.initial_events_per_stream, 7);
  EXPECT_EQ(o.max_events_per_stream, 100);
  EXPECT_EQ(o.retention_events, -1);
  EXPECT_EQ(o.retention_bytes, -1);
  EXPECT_EQ(o.heartbeat_interval, absl::Milliseconds(50));
  EXPECT_FALSE(o.headers_on_first_byte);
  EXPECT_EQ(o.invalid_timepoint_status, 400);
  EXPECT_TRUE(o.future_timepoint_tails);
  EXPECT_EQ(o.max_connections_per_key, 2);
  EXPECT_EQ(o.cap_mode, CapMode::kEvictOldest);
  EXPECT_EQ(o.max_connects_per_minute, 30);
  EXPECT_EQ(o.threads, 2);
  EXPECT_TRUE(o.generator.go_html_escape);
  EXPECT_TRUE(o.generator.profile_only);
  EXPECT_THAT(o.generator.published_at_formats,
              ElementsAre(PublishedAtFormat::kPlainUtc,
                          PublishedAtFormat::kMicrosOffset));
  EXPECT_EQ(o.generator.gap_probability, 0);
  EXPECT_EQ(o.faults.split_random, 9u);
  EXPECT_TRUE(o.faults.coalesce);
  EXPECT_FALSE(o.faults.lone_newline_chunks);
  EXPECT_EQ(o.faults.malformed_every, 5);
  EXPECT_EQ(o.faults.close_after_events, 3);
  EXPECT_EQ(o.faults.close_style, CloseStyle::kClean);
  EXPECT_TRUE(o.faults.close_mid_line);
  EXPECT_FALSE(o.faults.stall);
  EXPECT_TRUE(o.faults.heartbeats_die);
  EXPECT_EQ(o.faults.max_connection_age, absl::Milliseconds(2500));
  EXPECT_EQ(o.faults.slow_reader_timeout, absl::Seconds(4));
  EXPECT_EQ(o.faults.fail_first_attempts, 2);
  EXPECT_EQ(o.faults.fail_status, 502);
  EXPECT_EQ(o.faults.fail_delay, absl::Milliseconds(500));
  EXPECT_EQ(o.faults.retry_after_seconds, 60);
  EXPECT_EQ(flags.log_level, "debug");
}

TEST(SimulatorFlagsTest, RejectsBadInput) {
  EXPECT_THAT(ParseSimulatorFlags({"--nope=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --nope")));
  EXPECT_THAT(ParseSimulatorFlags({"positional"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument")));
  EXPECT_THAT(
      ParseSimulatorFlags({"--port"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
  for (const char* bad :
       {"--port=70000", "--port=x", "--rate=-1", "--rate=fast",
        "--streams=insolvency", "--rates=companies", "--rates=nope=1",
        "--cap_mode=drop", "--close_style=slam", "--future_timepoint=400",
        "--invalid_timepoint_status=404", "--heartbeat_seconds=0",
        "--gap_probability=2", "--coalesce=maybe", "--published_at=local",
        "--keys=", "--noport"}) {
    EXPECT_THAT(ParseSimulatorFlags({bad}),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << bad;
  }
}

TEST(SimulatorFlagsTest, HelpListsEveryFlag) {
  ASSERT_OK_AND_ASSIGN(SimulatorFlags flags, ParseSimulatorFlags({"--help"}));
  EXPECT_TRUE(flags.help);
  const std::string help = SimulatorFlagsHelp();
  for (const char* name : {"address",
                           "port",
                           "keys",
                           "tls_cert",
                           "tls_key",
                           "seed",
                           "rate",
                           "rates",
                           "streams",
                           "initial_events",
                           "max_events",
                           "retention_events",
                           "retention_bytes",
                           "heartbeat_seconds",
                           "headers_immediately",
                           "invalid_timepoint_status",
                           "future_timepoint",
                           "max_connections_per_key",
                           "cap_mode",
                           "max_connects_per_minute",
                           "threads",
                           "go_html_escape",
                           "profile_only",
                           "published_at",
                           "split_random",
                           "coalesce",
                           "lone_newline_chunks",
                           "malformed_every",
                           "close_after_events",
                           "close_style",
                           "close_mid_line",
                           "stall",
                           "heartbeats_die",
                           "max_connection_age_seconds",
                           "slow_reader_timeout_seconds",
                           "fail_first_attempts",
                           "fail_status",
                           "fail_delay_seconds",
                           "retry_after_seconds",
                           "log_level",
                           "help"}) {
    EXPECT_TRUE(absl::StrContains(help, std::string("--") + name + " "))
        << name;
  }
}

}  // namespace
}  // namespace chstream::ingest::sim
