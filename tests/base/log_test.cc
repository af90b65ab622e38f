#include "base/log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::log {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetSinkForTest([this](std::string_view line) { lines_.emplace_back(line); });
  }
  void TearDown() override { SetSinkForTest(nullptr); }
  std::vector<std::string> lines_;
};

TEST_F(LogTest, WritesOneJsonObjectPerLine) {
  Info("connected", {{"stream", "companies"}, {"http_status", 200},
                     {"ok", true}, {"lag", 1.5}});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_THAT(lines_[0], HasSubstr("\"level\":\"info\""));
  EXPECT_THAT(lines_[0], HasSubstr("\"msg\":\"connected\""));
  EXPECT_THAT(lines_[0], HasSubstr("\"stream\":\"companies\""));
  EXPECT_THAT(lines_[0], HasSubstr("\"http_status\":200"));
  EXPECT_THAT(lines_[0], HasSubstr("\"ok\":true"));
  EXPECT_EQ(lines_[0].front(), '{');
  EXPECT_EQ(lines_[0].back(), '}');
}

TEST_F(LogTest, EscapesStrings) {
  Info("quote \" and newline \n", {{"k", "tab\there"}});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_THAT(lines_[0], HasSubstr(R"(quote \" and newline \n)"));
  EXPECT_THAT(lines_[0], HasSubstr(R"(tab\there)"));
}

// Verifies that a registered secret never reaches a log line, whichever part
// of the line carries it.
TEST_F(LogTest, RedactsSecretsEverywhere) {
  AddSecret("s3cr3t-key-value");
  Error("upstream said s3cr3t-key-value is bad",
        {{"error", "Basic s3cr3t-key-value:"},
         {"status", absl::UnauthenticatedError("key s3cr3t-key-value")}});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_THAT(lines_[0], Not(HasSubstr("s3cr3t-key-value")));
  EXPECT_THAT(lines_[0], HasSubstr("[REDACTED]"));
  EXPECT_EQ(Redact("x s3cr3t-key-value y"), "x [REDACTED] y");
}

TEST_F(LogTest, DropsLinesBelowMinLevel) {
  SetMinLevel(Level::kWarning);
  Info("hidden");
  Warning("shown");
  SetMinLevel(Level::kInfo);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_THAT(lines_[0], HasSubstr("shown"));
}

// Verifies that a URL keeps only scheme, host and port: user info, path and
// query may hold secrets (Slack/Teams webhooks carry theirs in the path).
TEST(RedactUrlTest, KeepsSchemeHostAndPortOnly) {
  EXPECT_EQ(RedactUrl("https://stream.companieshouse.gov.uk"),
            "https://stream.companieshouse.gov.uk");
  EXPECT_EQ(RedactUrl("https://hooks.slack.com/services/T0/B0/XyZsecret"),
            "https://hooks.slack.com/...");
  EXPECT_EQ(RedactUrl("https://user:pass@host:8443/p?token=t#f"),
            "https://host:8443/...");
  EXPECT_EQ(RedactUrl("http://[::1]:8080?q=secret"), "http://[::1]:8080/...");
  EXPECT_EQ(RedactUrl("http://h/"), "http://h");
  EXPECT_EQ(RedactUrl("HTTP://user@h"), "http://h");
  // Not a URL: passed through only when nothing in it could be a secret.
  EXPECT_EQ(RedactUrl("simulator"), "simulator");
  EXPECT_EQ(RedactUrl("user:pass@host/x"), "[URL redacted]");
  EXPECT_EQ(RedactUrl("://pass@"), "[URL redacted]");
  EXPECT_EQ(RedactUrl(""), "");
}

}  // namespace
}  // namespace chstream::log
