#include "client_examples/cpp/event_log.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::client_examples {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

v1::Event MakeEvent(uint64_t position, std::string uri = "/company/SC571653") {
  v1::Event e;
  e.set_position(position);
  e.set_stream("companies");
  e.set_timepoint(47695461);
  e.set_type(v1::EVENT_TYPE_CHANGED);
  e.set_resource_uri(std::move(uri));
  e.set_company_number("SC571653");
  e.mutable_published_at()->set_seconds(1659453666);  // 2022-08-02T15:21:06Z
  return e;
}

std::string TestPath(const std::string& name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

TEST(EventLogTest, FormatsOneJsonObjectPerLine) {
  v1::Event e = MakeEvent(42);
  EXPECT_EQ(EventLog::FormatLine(e),
            "{\"position\":42,\"stream\":\"companies\",\"timepoint\":47695461,"
            "\"type\":\"changed\",\"resource_uri\":\"/company/SC571653\","
            "\"company_number\":\"SC571653\","
            "\"published_at\":\"2022-08-02T15:21:06.000000Z\"}");
  e.set_type(v1::EVENT_TYPE_DELETED);
  e.set_resource_uri("/odd\"uri\\");
  EXPECT_THAT(EventLog::FormatLine(e),
              HasSubstr("\"type\":\"deleted\",\"resource_uri\":"
                        "\"/odd\\\"uri\\\\\""));
}

TEST(EventLogTest, ParsesThePositionOfItsOwnLines) {
  ASSERT_OK_AND_ASSIGN(
      uint64_t p, EventLog::ParsePosition(EventLog::FormatLine(MakeEvent(7))));
  EXPECT_EQ(p, 7u);
  for (const char* bad :
       {"", "{}", "{\"position\":}", "{\"position\":x,", "{\"position\":12",
        "{\"stream\":\"a\"}", "{\"position\":99999999999999999999999,"}) {
    EXPECT_FALSE(EventLog::ParsePosition(bad).ok()) << bad;
  }
}

TEST(EventLogTest, NewFileHasNoPosition) {
  const std::string path = TestPath("new.jsonl");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
  EXPECT_FALSE(log->last_position().has_value());
  EXPECT_EQ(log->truncated_bytes(), 0u);
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0);
}

TEST(EventLogTest, ReopenRecoversTheLastPosition) {
  const std::string path = TestPath("reopen.jsonl");
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
    ASSERT_THAT(log->Append(MakeEvent(3)), IsOk());
    ASSERT_THAT(log->Append(MakeEvent(9)), IsOk());
    ASSERT_THAT(log->Sync(), IsOk());
    EXPECT_THAT(log->last_position(), Optional(9u));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
  EXPECT_THAT(log->last_position(), Optional(9u));
  ASSERT_THAT(log->Append(MakeEvent(10)), IsOk());
  EXPECT_EQ(ReadAll(path),
            absl::StrCat(EventLog::FormatLine(MakeEvent(3)), "\n",
                         EventLog::FormatLine(MakeEvent(9)), "\n",
                         EventLog::FormatLine(MakeEvent(10)), "\n"));
}

// Verifies that the log never holds a position twice or out of order.
TEST(EventLogTest, RefusesPositionsNotAfterTheLast) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log,
                       EventLog::Open(TestPath("order.jsonl")));
  ASSERT_THAT(log->Append(MakeEvent(5)), IsOk());
  EXPECT_THAT(log->Append(MakeEvent(5)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("position 5 is not after 5")));
  EXPECT_THAT(log->Append(MakeEvent(4)),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_THAT(log->last_position(), Optional(5u));
}

TEST(EventLogTest, CutsOffATornLastLine) {
  const std::string path = TestPath("torn.jsonl");
  const std::string whole = EventLog::FormatLine(MakeEvent(1)) + "\n";
  const std::string torn = EventLog::FormatLine(MakeEvent(2)).substr(0, 30);
  WriteAll(path, whole + torn);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
  EXPECT_THAT(log->last_position(), Optional(1u));
  EXPECT_EQ(log->truncated_bytes(), torn.size());
  EXPECT_EQ(ReadAll(path), whole);
  ASSERT_THAT(log->Append(MakeEvent(2)), IsOk());
  EXPECT_EQ(ReadAll(path), whole + EventLog::FormatLine(MakeEvent(2)) + "\n");
}

TEST(EventLogTest, AFileOfOnlyATornLineBecomesEmpty) {
  const std::string path = TestPath("only_torn.jsonl");
  WriteAll(path, "{\"position\":1,\"str");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
  EXPECT_FALSE(log->last_position().has_value());
  EXPECT_EQ(log->truncated_bytes(), 18u);
  EXPECT_EQ(ReadAll(path), "");
}

TEST(EventLogTest, RefusesAFileItDidNotWrite) {
  const std::string path = TestPath("foreign.txt");
  WriteAll(path, "hello\nworld\n");
  EXPECT_THAT(EventLog::Open(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not written by this subscriber")));
  EXPECT_EQ(ReadAll(path), "hello\nworld\n");  // untouched
}

// Verifies the backwards scan across its 4 KiB read chunks: a last line
// longer than a chunk, and a last line starting just after a chunk edge.
TEST(EventLogTest, FindsTheLastLineAcrossReadChunks) {
  const std::string path = TestPath("long.jsonl");
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
    for (uint64_t p = 1; p <= 200; ++p)
      ASSERT_THAT(log->Append(MakeEvent(p)), IsOk());
    ASSERT_THAT(log->Append(MakeEvent(201, "/" + std::string(10'000, 'x'))),
                IsOk());
  }
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(path));
    EXPECT_THAT(log->last_position(), Optional(201u));
  }
  // Shorter lines of varying length: whatever the alignment, the position
  // found is the last one.
  for (int pad = 0; pad < 40; ++pad) {
    const std::string p2 = TestPath(absl::StrCat("align", pad, ".jsonl"));
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(p2));
      for (uint64_t p = 1; p <= 60; ++p) {
        ASSERT_THAT(
            log->Append(MakeEvent(p, "/" + std::string(pad + p % 3, 'y'))),
            IsOk());
      }
    }
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventLog> log, EventLog::Open(p2));
    EXPECT_THAT(log->last_position(), Optional(60u)) << "pad " << pad;
  }
}

}  // namespace
}  // namespace chstream::client_examples
