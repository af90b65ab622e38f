#include "client_examples/cpp/subscriber_flags.h"

#include <string>
#include <vector>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::client_examples {
namespace {

using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<SubscriberFlags> Parse(std::vector<std::string> args,
                                      bool* help = nullptr) {
  bool ignored = false;
  return ParseSubscriberFlags(args, help != nullptr ? help : &ignored);
}

TEST(SubscriberFlagsTest, Defaults) {
  ASSERT_OK_AND_ASSIGN(SubscriberFlags f, Parse({}));
  EXPECT_EQ(f.address, "127.0.0.1:50051");
  EXPECT_EQ(f.position_file, "chstream.position");
  EXPECT_EQ(f.start, StartFrom::kNow);
  EXPECT_TRUE(f.streams.empty());
  EXPECT_TRUE(f.companies.empty());
  EXPECT_EQ(f.heartbeat_seconds, 10u);
  EXPECT_EQ(f.output, "");
  EXPECT_EQ(f.checkpoint_events, 100);
  EXPECT_EQ(f.checkpoint_interval, absl::Seconds(1));
  EXPECT_EQ(f.log_level, "info");
}

TEST(SubscriberFlagsTest, EveryFlagInBothForms) {
  ASSERT_OK_AND_ASSIGN(
      SubscriberFlags f,
      Parse({"--address=10.0.0.1:9000", "--position_file", "/tmp/p",
             "--start=beginning", "--streams=companies, filings,", "--company",
             "sc571653,00000006", "--heartbeat_seconds=2",
             "--output=/tmp/out.jsonl", "--checkpoint_events", "7",
             "--checkpoint_interval_ms=250", "--log_level=warning"}));
  EXPECT_EQ(f.address, "10.0.0.1:9000");
  EXPECT_EQ(f.position_file, "/tmp/p");
  EXPECT_EQ(f.start, StartFrom::kBeginning);
  EXPECT_THAT(f.streams, ElementsAre("companies", "filings"));
  EXPECT_THAT(f.companies, ElementsAre("SC571653", "00000006"));
  EXPECT_EQ(f.heartbeat_seconds, 2u);
  EXPECT_EQ(f.output, "/tmp/out.jsonl");
  EXPECT_EQ(f.checkpoint_events, 7);
  EXPECT_EQ(f.checkpoint_interval, absl::Milliseconds(250));
  EXPECT_EQ(f.log_level, "warning");
}

TEST(SubscriberFlagsTest, Help) {
  bool help = false;
  ASSERT_TRUE(Parse({"--start=now", "--help"}, &help).ok());
  EXPECT_TRUE(help);
  EXPECT_THAT(SubscriberUsage(), HasSubstr("--position_file"));
}

TEST(SubscriberFlagsTest, RejectsBadInput) {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(Parse({"--nope=1"}), StatusIs(kInvalid, HasSubstr("--nope")));
  EXPECT_THAT(Parse({"--start=yesterday"}),
              StatusIs(kInvalid, HasSubstr("beginning or now")));
  EXPECT_THAT(Parse({"--heartbeat_seconds=0"}),
              StatusIs(kInvalid, HasSubstr("from 1 to 3600")));
  EXPECT_THAT(Parse({"--heartbeat_seconds=3601"}),
              StatusIs(kInvalid, ::testing::_));
  EXPECT_THAT(Parse({"--heartbeat_seconds=ten"}),
              StatusIs(kInvalid, ::testing::_));
  EXPECT_THAT(Parse({"--checkpoint_events=0"}),
              StatusIs(kInvalid, ::testing::_));
  EXPECT_THAT(Parse({"--address"}),
              StatusIs(kInvalid, HasSubstr("needs a value")));
  EXPECT_THAT(Parse({"--address="}), StatusIs(kInvalid, ::testing::_));
  EXPECT_THAT(Parse({"extra"}), StatusIs(kInvalid, HasSubstr("unexpected")));
  EXPECT_THAT(Parse({"--log_level=loud"}), StatusIs(kInvalid, ::testing::_));
}

}  // namespace
}  // namespace chstream::client_examples
