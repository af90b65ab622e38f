// The real subscriber binary (//client_examples:subscriber) against an
// in-process chstream server, as a child process: killed (SIGTERM and
// SIGKILL) and restarted while events are committed, it must end with every
// committed event in its output exactly once, in order.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client_examples/cpp/event_log.h"
#include "client_examples/cpp/position_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_convert.h"
#include "tests/integration/test_server.h"
#include "tests/testing/child_process.h"

extern char** environ;

namespace chstream::client_examples {
namespace {

using ::chstream::testing::MakeEvent;
using ::chstream::testing::TestServer;

constexpr char kSubscriber[] = "client_examples/subscriber";  // in runfiles

// Waits for `done` with a deadline (no fixed sleeps).
template <typename Fn>
bool WaitFor(Fn done, absl::Duration deadline = absl::Seconds(60)) {
  const absl::Time end = Clock::Real()->Now() + deadline;
  while (!done()) {
    if (Clock::Real()->Now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

std::vector<storage::Event> Events(int n, int64_t first_timepoint) {
  std::vector<storage::Event> out;
  for (int i = 0; i < n; ++i) {
    const int64_t tp = first_timepoint + i;
    out.push_back(MakeEvent(tp % 3 == 0 ? "filings" : "companies", tp,
                            absl::StrCat("0000000", tp % 7)));
  }
  return out;
}

std::string TestPath(const std::string& name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// The position of the last complete line of the output, 0 if none. Reads
// only the tail, so it is cheap to poll.
uint64_t LastOutputPosition(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return 0;
  const std::streamoff size = in.tellg();
  const std::streamoff from = size > 4096 ? size - 4096 : 0;
  in.seekg(from);
  std::string tail(static_cast<size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  tail.resize(static_cast<size_t>(in.gcount()));
  const size_t end = tail.rfind('\n');
  if (end == std::string::npos) return 0;
  const size_t start = tail.rfind('\n', end == 0 ? 0 : end - 1);
  const size_t begin =
      (start == std::string::npos || start >= end) ? 0 : start + 1;
  absl::StatusOr<uint64_t> p = EventLog::ParsePosition(
      std::string_view(tail).substr(begin, end - begin));
  return p.ok() ? *p : 0;
}

std::optional<uint64_t> SavedPosition(const std::string& path) {
  absl::StatusOr<std::optional<uint64_t>> p = ReadPositionFile(path);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : std::nullopt;
}

// The expected output: one FormatLine per stored event.
std::string ExpectedOutput(TestServer& server, uint64_t after = 0) {
  absl::StatusOr<storage::Page> page = server.store()->ReadPage(
      after, UINT64_MAX, storage::Filter(), 1'000'000, 1'000'000);
  EXPECT_TRUE(page.ok()) << page.status();
  std::string out;
  if (!page.ok()) return out;
  for (const storage::Event& e : page->events) {
    v1::Event proto;
    server::ToProto(e, &proto);
    absl::StrAppend(&out, EventLog::FormatLine(proto), "\n");
  }
  return out;
}

std::vector<std::string> Environment() {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) out.push_back(*e);
  return out;
}

// A subscriber child process in this directory and environment, its
// stdout and stderr appended to TEST_TMPDIR/subscriber.log. Exit codes as
// ChildProcess returns them (128 + signal when killed by one; -1 if it did
// not end within a minute, after which the destructor kills it).
class Subscriber : public ::chstream::testing::ChildProcess {
 public:
  explicit Subscriber(const std::vector<std::string>& args)
      : ChildProcess(kSubscriber, args, Environment(), ".",
                     TestPath("subscriber.log")) {}

  int KillAndWait(int sig) { return SignalAndWait(sig, absl::Minutes(1)); }
  int Wait() { return ChildProcess::Wait(absl::Minutes(1)); }
};

TEST(SubscriberTest, BinaryIsInRunfiles) {
  EXPECT_EQ(::access(kSubscriber, X_OK), 0) << kSubscriber;
}

TEST(SubscriberTest, KilledAndRestartedWhileEventsFlowDeliversEachEventOnce) {
  TestServer server;
  server.CommitAndWait(Events(120, 1));  // a backlog to start with
  const std::string output = TestPath("flow.jsonl");
  const std::string position = TestPath("flow.position");
  const std::vector<std::string> args = {
      "--address=" + server.address(), "--position_file=" + position,
      "--output=" + output, "--start=beginning", "--heartbeat_seconds=1",
      // Odd and small: most kills land between two saves, so restarts
      // depend on the output's own record of what was processed.
      "--checkpoint_events=7", "--checkpoint_interval_ms=200"};

  // Commits continuously, at most 50 events ahead of the output, so that
  // events keep flowing while the subscriber runs (mostly live, after a
  // short catch-up from storage) and while it is down.
  std::atomic<bool> stop_committing{false};
  std::thread committer([&] {
    int64_t timepoint = 1000;
    while (!stop_committing.load()) {
      if (server.store()->HeadPosition() > LastOutputPosition(output) + 50) {
        std::this_thread::yield();
        continue;
      }
      server.CommitAndWait(Events(3, timepoint));
      timepoint += 3;
    }
  });

  const int kSignals[] = {SIGTERM, SIGTERM, SIGKILL, SIGTERM,
                          SIGKILL, SIGTERM, SIGKILL};
  for (int sig : kSignals) {
    SCOPED_TRACE(absl::StrCat("signal ", sig));
    const uint64_t before = LastOutputPosition(output);
    Subscriber sub(args);
    ASSERT_TRUE(sub.started());
    // Let this incarnation make real progress while commits go on.
    ASSERT_TRUE(
        WaitFor([&] { return LastOutputPosition(output) >= before + 60; }));
    const int code = sub.KillAndWait(sig);
    const uint64_t last = LastOutputPosition(output);
    if (sig == SIGTERM) {
      EXPECT_EQ(code, 0);
      // A clean stop saves exactly what was processed.
      EXPECT_EQ(SavedPosition(position), std::optional<uint64_t>(last));
    } else {
      EXPECT_EQ(code, 128 + SIGKILL);
      // Never ahead of the output; usually behind it.
      const std::optional<uint64_t> saved = SavedPosition(position);
      ASSERT_TRUE(saved.has_value());
      EXPECT_LE(*saved, last);
    }
  }
  stop_committing.store(true);
  committer.join();

  // One last run drains everything, then stops cleanly.
  const uint64_t head = server.store()->HeadPosition();
  {
    Subscriber sub(args);
    ASSERT_TRUE(WaitFor([&] { return LastOutputPosition(output) == head; }));
    EXPECT_EQ(sub.KillAndWait(SIGTERM), 0);
  }
  EXPECT_EQ(SavedPosition(position), std::optional<uint64_t>(head));

  // Every committed event exactly once, in order, with its fields.
  const std::string got = ReadAll(output);
  const std::vector<std::string> lines =
      absl::StrSplit(got, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), head);
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StatusOr<uint64_t> p = EventLog::ParsePosition(lines[i]);
    ASSERT_TRUE(p.ok()) << lines[i];
    ASSERT_EQ(*p, i + 1) << "line " << i + 1;
  }
  EXPECT_EQ(got, ExpectedOutput(server));
  EXPECT_GT(head, 120u + 60u);  // live events, not only the backlog
}

// Verifies the de-duplication on restart: events already in the output but
// after the saved position (a crash between the two writes) are skipped.
TEST(SubscriberTest, ResumesAfterTheOutputWhenItIsAheadOfThePositionFile) {
  TestServer server;
  server.CommitAndWait(Events(30, 1));
  const std::string output = TestPath("ahead.jsonl");
  const std::string position = TestPath("ahead.position");
  const std::string all = ExpectedOutput(server);
  // The first 20 lines, but only 12 saved.
  size_t cut = 0;
  for (int i = 0; i < 20; ++i) cut = all.find('\n', cut) + 1;
  { std::ofstream(output, std::ios::binary) << all.substr(0, cut); }
  ASSERT_TRUE(WritePositionFile(position, 12).ok());

  Subscriber sub({"--address=" + server.address(),
                  "--position_file=" + position, "--output=" + output,
                  "--start=beginning"});
  ASSERT_TRUE(WaitFor([&] { return LastOutputPosition(output) == 30; }));
  EXPECT_EQ(sub.KillAndWait(SIGINT), 0);
  EXPECT_EQ(ReadAll(output), all);
  EXPECT_EQ(SavedPosition(position), std::optional<uint64_t>(30));
}

// Verifies that --start=now skips the backlog, saves where it subscribed
// before any event arrives, and that a restart resumes from there rather
// than from "now" again.
TEST(SubscriberTest, StartNowResumesWhereItSubscribed) {
  TestServer server;
  server.CommitAndWait(Events(25, 1));
  const std::string output = TestPath("now.jsonl");
  const std::string position = TestPath("now.position");
  const std::vector<std::string> args = {"--address=" + server.address(),
                                         "--position_file=" + position,
                                         "--output=" + output, "--start=now"};
  {
    Subscriber sub(args);
    ASSERT_TRUE(WaitFor([&] {
      absl::StatusOr<std::optional<uint64_t>> p = ReadPositionFile(position);
      return p.ok() && p->has_value();
    }));
    EXPECT_EQ(sub.KillAndWait(SIGTERM), 0);
  }
  EXPECT_EQ(SavedPosition(position), std::optional<uint64_t>(25));
  EXPECT_EQ(ReadAll(output), "");
  server.CommitAndWait(Events(5, 100));  // while it is down
  {
    Subscriber sub(args);
    ASSERT_TRUE(WaitFor([&] { return LastOutputPosition(output) == 30; }));
    EXPECT_EQ(sub.KillAndWait(SIGTERM), 0);
  }
  EXPECT_EQ(ReadAll(output), ExpectedOutput(server, 25));
}

TEST(SubscriberTest, FilterFlagsSelectEvents) {
  TestServer server;
  server.CommitAndWait(Events(30, 1));
  const std::string output = TestPath("filter.jsonl");
  const std::string position = TestPath("filter.position");
  Subscriber sub({"--address=" + server.address(),
                  "--position_file=" + position, "--output=" + output,
                  "--start=beginning", "--streams=companies",
                  "--company=00000003"});
  // Everything was scanned once the caught_up position is saved.
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<std::optional<uint64_t>> p = ReadPositionFile(position);
    return p.ok() && p->has_value() && **p == 30;
  }));
  EXPECT_EQ(sub.KillAndWait(SIGTERM), 0);
  const std::vector<std::string> lines =
      absl::StrSplit(ReadAll(output), '\n', absl::SkipEmpty());
  // Timepoints 1..30: companies are those not divisible by 3; company
  // 00000003 is timepoint % 7 == 3: 3 (filings), 10, 17, 24 (filings).
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], ::testing::HasSubstr("\"timepoint\":10,"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("\"timepoint\":17,"));
}

TEST(SubscriberTest, ExitCodes) {
  EXPECT_EQ(Subscriber({"--help"}).Wait(), 0);
  EXPECT_EQ(Subscriber({"--start=yesterday"}).Wait(), 2);
  TestServer server;
  // Rejected by the server as INVALID_ARGUMENT: fatal, not retried.
  EXPECT_EQ(Subscriber({"--address=" + server.address(),
                        "--position_file=" + TestPath("bad.position"),
                        "--output=" + TestPath("bad.jsonl"),
                        "--streams=company"})
                .Wait(),
            1);
  // An output file that is not the subscriber's.
  { std::ofstream(TestPath("foreign.txt")) << "not json\n"; }
  EXPECT_EQ(Subscriber({"--address=" + server.address(),
                        "--position_file=" + TestPath("f.position"),
                        "--output=" + TestPath("foreign.txt")})
                .Wait(),
            1);
}

}  // namespace
}  // namespace chstream::client_examples
