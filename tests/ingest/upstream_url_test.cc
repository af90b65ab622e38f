// Tests of ingest/upstream_url.h: parsing, and that neither errors nor
// ToString() (used in logs and status) carry user info, path or query.
#include "ingest/upstream_url.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using ::chstream::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(UpstreamUrlTest, ParsesHostPortAndPath) {
  ASSERT_OK_AND_ASSIGN(
      UpstreamUrl a, ParseUpstreamUrl("https://stream.companieshouse.gov.uk"));
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.host, "stream.companieshouse.gov.uk");
  EXPECT_EQ(a.port, "443");
  EXPECT_EQ(a.base_path, "");
  ASSERT_OK_AND_ASSIGN(UpstreamUrl b,
                       ParseUpstreamUrl("http://[::1]:8080/prefix/"));
  EXPECT_FALSE(b.tls);
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, "8080");
  EXPECT_EQ(b.base_path, "/prefix");
  EXPECT_EQ(b.HostHeader(), "[::1]:8080");
}

// Verifies that a URL with user info is refused without echoing it.
TEST(UpstreamUrlTest, ErrorsNeverEchoUserInfoPathOrQuery) {
  EXPECT_THAT(ParseUpstreamUrl("https://user:hunter2@host/x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("user info"), Not(HasSubstr("hunter2")),
                             Not(HasSubstr("user:")))));
  EXPECT_THAT(ParseUpstreamUrl("https://host:99999/secret-path?token=t0k"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("host"), Not(HasSubstr("secret-path")),
                             Not(HasSubstr("t0k")))));
  EXPECT_THAT(
      ParseUpstreamUrl("ftp://u:hunter2@host"),
      StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hunter2"))));
}

// Verifies that ToString(), which reaches logs, drops the path and query.
TEST(UpstreamUrlTest, ToStringHasNoPath) {
  ASSERT_OK_AND_ASSIGN(
      UpstreamUrl url,
      ParseUpstreamUrl("https://hooks.example.com/services/T0/B0/s3cret"));
  EXPECT_EQ(url.ToString(), "https://hooks.example.com/...");
  EXPECT_EQ(url.base_path, "/services/T0/B0/s3cret");  // still used to POST
}

}  // namespace
}  // namespace chstream::ingest
