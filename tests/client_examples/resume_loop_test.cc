// ResumeLoop in-process against a real chstream gRPC server (TestServer):
// start points, checkpoints, caught_up/heartbeat cursors, fell_behind, the
// stall watchdog (FakeClock), retries, fatal errors and Stop().
#include "client_examples/cpp/resume_loop.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_server.h"

namespace chstream::client_examples {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::MakeEvent;
using ::chstream::testing::StatusIs;
using ::chstream::testing::TestServer;
using ::chstream::testing::TestServerOptions;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Optional;

// Waits for `done` with a deadline (no fixed sleeps).
template <typename Fn>
bool WaitFor(Fn done, absl::Duration deadline = absl::Seconds(30)) {
  const absl::Time end = Clock::Real()->Now() + deadline;
  while (!done()) {
    if (Clock::Real()->Now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

std::vector<storage::Event> Events(int n, int64_t first_timepoint = 1000) {
  std::vector<storage::Event> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(MakeEvent(i % 3 == 0 ? "filings" : "companies",
                            first_timepoint + i,
                            absl::StrCat("0000000", i % 5)));
  }
  return out;
}

std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t p = from; p <= to; ++p) out.push_back(p);
  return out;
}

// Records what the loop hands it; can fail or block on chosen positions.
class RecordingProcessor final : public EventProcessor {
 public:
  absl::Status Process(const v1::Event& event) override {
    if (before_process) before_process(event);
    absl::MutexLock lock(&mu_);
    if (fail_at.has_value() && event.position() == *fail_at) {
      return absl::InternalError("cannot process");
    }
    positions_.push_back(event.position());
    return absl::OkStatus();
  }
  absl::Status Checkpoint(uint64_t position) override {
    absl::MutexLock lock(&mu_);
    checkpoints_.push_back(position);
    return checkpoint_status;
  }
  std::vector<uint64_t> positions() const {
    absl::MutexLock lock(&mu_);
    return positions_;
  }
  std::vector<uint64_t> checkpoints() const {
    absl::MutexLock lock(&mu_);
    return checkpoints_;
  }

  // Set before Run().
  std::function<void(const v1::Event&)> before_process;
  std::optional<uint64_t> fail_at;
  absl::Status checkpoint_status;

 private:
  mutable absl::Mutex mu_;
  std::vector<uint64_t> positions_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> checkpoints_ ABSL_GUARDED_BY(mu_);
};

ResumeLoopOptions TestOptions(const std::string& address) {
  ResumeLoopOptions o;
  o.address = address;
  o.start = StartFrom::kBeginning;
  o.heartbeat_seconds = 3600;  // no heartbeat unless a test asks for one
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(10);
  o.checkpoint_events = 1000;
  o.checkpoint_interval = absl::Hours(1);
  o.uniform01 = [] { return 1.0; };
  return o;
}

// Runs a loop on its own thread.
class Runner {
 public:
  Runner(ResumeLoopOptions options, EventProcessor* processor)
      : loop_(std::move(options), processor), thread_([this] {
          result_ = loop_.Run();
          done_.Notify();
        }) {}
  ~Runner() {
    loop_.Stop();
    thread_.join();
  }
  ResumeLoop& loop() { return loop_; }
  // Stops the loop and returns Run()'s status.
  absl::Status Stop() {
    loop_.Stop();
    return Wait();
  }
  absl::Status Wait() {
    EXPECT_TRUE(done_.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return result_;
  }

 private:
  ResumeLoop loop_;
  absl::Status result_;
  absl::Notification done_;
  std::thread thread_;
};

TEST(ResumeLoopTest, FromBeginningThenLiveCheckpointingEveryNEvents) {
  TestServer server;
  server.CommitAndWait(Events(35));
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.checkpoint_events = 10;
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  // 10, 20, 30 by count, then 35 on caught_up.
  EXPECT_THAT(processor.checkpoints(), ElementsAre(10, 20, 30, 35));
  server.CommitAndWait(Events(12, 5000));
  ASSERT_TRUE(WaitFor([&] { return processor.positions().size() == 47; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAreArray(Range(1, 47)));
  // 45 by count (10 since the last save), 47 saved on the way out.
  EXPECT_THAT(processor.checkpoints(), ElementsAre(10, 20, 30, 35, 45, 47));
  const ResumeLoopStats stats = runner.loop().stats();
  EXPECT_EQ(stats.calls, 1u);
  EXPECT_EQ(stats.events, 47u);
  EXPECT_EQ(stats.duplicates, 0u);
  EXPECT_EQ(stats.failed_calls, 0u);
  EXPECT_THAT(stats.checkpointed, Optional(47u));
}

TEST(ResumeLoopTest, ResumesAfterTheGivenPosition) {
  TestServer server;
  server.CommitAndWait(Events(50));
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.after_position = 30;
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAreArray(Range(31, 50)));
}

// Verifies that a `start = now` subscriber records where it started before
// any event arrives, so that a restart does not skip what came in between.
TEST(ResumeLoopTest, StartNowSavesTheCaughtUpPosition) {
  TestServer server;
  server.CommitAndWait(Events(10));
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.start = StartFrom::kNow;
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  EXPECT_TRUE(processor.positions().empty());
  EXPECT_THAT(processor.checkpoints(), ElementsAre(10));
  server.CommitAndWait(Events(5, 2000));
  ASSERT_TRUE(WaitFor([&] { return processor.positions().size() == 5; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAreArray(Range(11, 15)));
  EXPECT_THAT(processor.checkpoints(), ElementsAre(10, 15));
}

// Verifies that caught_up moves the cursor past events the filter skipped.
TEST(ResumeLoopTest, FilteredCursorAdvancesToCaughtUp) {
  TestServer server;
  server.CommitAndWait(Events(11));  // filings at 1, 4, 7, 10; 11 is companies
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.filter.add_streams("filings");
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAre(1, 4, 7, 10));
  EXPECT_THAT(processor.checkpoints(), ElementsAre(11));
}

TEST(ResumeLoopTest, SavesUnsavedEventsOnAnIdleHeartbeat) {
  TestServer server;
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.heartbeat_seconds = 1;
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  server.CommitAndWait(Events(3));
  // Not by count (1000) nor by time (1 h): only a heartbeat can save it.
  ASSERT_TRUE(WaitFor([&] {
    std::vector<uint64_t> c = processor.checkpoints();
    return !c.empty() && c.back() == 3;
  }));
  EXPECT_GE(runner.loop().stats().heartbeats, 1u);
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAre(1, 2, 3));
}

TEST(ResumeLoopTest, FellBehindIsLoggedAndNothingIsLost) {
  TestServerOptions server_options;
  server_options.subscriber_queue = 1;
  TestServer server(server_options);
  RecordingProcessor processor;
  absl::Notification release;
  processor.before_process = [&](const v1::Event& e) {
    if (e.position() == 1) release.WaitForNotification();
  };
  Runner runner(TestOptions(server.address()), &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  // A burst in several transactions while the processor is stuck.
  for (int i = 0; i < 10; ++i) server.CommitAndWait(Events(20, 100 + 20 * i));
  release.Notify();
  ASSERT_TRUE(WaitFor([&] { return processor.positions().size() == 200; }));
  EXPECT_GE(runner.loop().stats().fell_behind, 1u);
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAreArray(Range(1, 200)));
  EXPECT_EQ(runner.loop().stats().duplicates, 0u);
}

// Verifies the watchdog: no message at all for 3 heartbeat periods cancels
// the call, and the loop resumes after the last position.
TEST(ResumeLoopTest, SilentStreamIsCancelledAndResumed) {
  TestServer server;
  server.CommitAndWait(Events(4));
  FakeClock clock;
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.clock = &clock;
  options.watchdog_tick = absl::Milliseconds(1);
  Runner runner(options, &processor);  // heartbeat 3600 s: none will come
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  EXPECT_EQ(runner.loop().stats().stalls, 0u);
  clock.Advance(absl::Hours(3) + absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 2; }));
  ResumeLoopStats stats = runner.loop().stats();
  EXPECT_EQ(stats.stalls, 1u);
  EXPECT_EQ(stats.calls, 2u);
  EXPECT_EQ(stats.last_error_code,
            static_cast<int>(grpc::StatusCode::CANCELLED));
  server.CommitAndWait(Events(2, 3000));
  ASSERT_TRUE(WaitFor([&] { return processor.positions().size() == 6; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAreArray(Range(1, 6)));
}

// What the client has heard from the server or done about its silence:
// every message kind that resets the watchdog, and the stalls it declared.
uint64_t Reactions(const ResumeLoopStats& s) {
  return s.events + s.caught_up + s.fell_behind + s.heartbeats +
         s.server_checkpoints + s.stalls;
}

// The pacing's state, shared by the test and the server's read threads.
struct Pace {
  absl::Mutex mu;
  ResumeLoop* loop ABSL_GUARDED_BY(mu) = nullptr;  // once running
  bool done ABSL_GUARDED_BY(mu) = false;           // the loop is going away
  uint64_t seen_calls ABSL_GUARDED_BY(mu) = 0;
  uint64_t seen_reactions ABSL_GUARDED_BY(mu) = 0;
};

// Verifies item 5 of issue 9: a narrow filter catching up over a long log
// (each storage read takes 1 s on the shared FakeClock: ~50 s in all, far
// more than the 3-heartbeat stall limit) gets through. The server's
// checkpoints keep the stream alive and move the cursor, so that even a
// call the watchdog cancels resumes past what was already scanned.
//
// The reads are paced so that the client's watchdog sees every second the
// scan takes, whatever the machine's speed: before each read after a call's
// first, the server waits (up to 2 s of real time) until the client has
// heard from it since the previous read, or has given up on the call.
// Without this pacing the whole scan took less real time than the
// watchdog's tick, and the test passed on a server that sends no
// checkpoints. With it, such a server is silent for 3 reads, every call is
// cancelled after scanning 200-300 positions and resumes from the start
// (checked by disabling the checkpoint in server/stream_reactors.cc: the
// event never arrives).
TEST(ResumeLoopTest, NarrowFilterCatchUpGetsThroughOnCheckpoints) {
  FakeClock clock;
  Pace pace;
  TestServerOptions server_options;
  server_options.clock = &clock;
  server_options.max_scan = 100;
  server_options.before_read = [&clock, &pace] {
    absl::MutexLock lock(&pace.mu);
    pace.mu.AwaitWithTimeout(
        absl::Condition(
            +[](Pace* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
              return p->loop != nullptr || p->done;
            },
            &pace),
        absl::Seconds(30));
    if (pace.loop != nullptr && !pace.done) {
      ResumeLoop& loop = *pace.loop;
      const uint64_t calls = pace.seen_calls;
      const uint64_t reactions = pace.seen_reactions;
      if (loop.stats().calls == calls) {
        WaitFor(
            [&] {
              const ResumeLoopStats s = loop.stats();
              return s.calls != calls || Reactions(s) > reactions;
            },
            absl::Seconds(2));
      }
      const ResumeLoopStats s = loop.stats();
      pace.seen_calls = s.calls;
      pace.seen_reactions = Reactions(s);
    }
    clock.Advance(absl::Seconds(1));
  };
  TestServer server(server_options);
  for (int i = 0; i < 5; ++i) server.CommitAndWait(Events(1000, 1000 * i + 1));
  server.CommitAndWait({MakeEvent("companies", 90'000, "SC000001")});
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.clock = &clock;
  options.watchdog_tick = absl::Milliseconds(1);
  options.heartbeat_seconds = 1;
  options.filter.add_company_numbers("SC000001");
  Runner r(options, &processor);
  {
    absl::MutexLock lock(&pace.mu);
    pace.loop = &r.loop();
  }
  ASSERT_TRUE(WaitFor([&] { return processor.positions().size() == 1; },
                      absl::Seconds(60)))
      << "calls: " << r.loop().stats().calls
      << ", stalls: " << r.loop().stats().stalls;
  EXPECT_THAT(processor.positions(), ElementsAre(5001));
  const ResumeLoopStats stats = r.loop().stats();
  EXPECT_GE(stats.server_checkpoints, 1u);
  {
    absl::MutexLock lock(&pace.mu);
    pace.done = true;
  }
  EXPECT_THAT(r.Stop(), IsOk());
  // Saved cursors only ever move forward.
  std::vector<uint64_t> saved = processor.checkpoints();
  EXPECT_TRUE(std::is_sorted(saved.begin(), saved.end()));
}

TEST(ResumeLoopTest, RetriesWhileTheServerIsUnreachableUntilStopped) {
  RecordingProcessor processor;
  // Nothing listens on port 1.
  Runner runner(TestOptions("127.0.0.1:1"), &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().failed_calls >= 3; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  const ResumeLoopStats stats = runner.loop().stats();
  EXPECT_EQ(stats.last_error_code,
            static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_TRUE(processor.checkpoints().empty());
}

// Verifies that Stop() ends a long backoff wait at once.
TEST(ResumeLoopTest, StopInterruptsTheBackoffWait) {
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions("127.0.0.1:1");
  options.initial_backoff = absl::Hours(1);
  options.max_backoff = absl::Hours(1);
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().failed_calls == 1; }));
  EXPECT_THAT(runner.Stop(), IsOk());  // Wait() fails the test after 30 s
}

TEST(ResumeLoopTest, ServerShutdownIsRetriedAsUnavailable) {
  TestServer server;
  server.CommitAndWait(Events(3));
  RecordingProcessor processor;
  Runner runner(TestOptions(server.address()), &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  // The call ends (UNAVAILABLE, or CANCELLED if a reconnect slipped in
  // during the grace period); once the server is gone, every attempt fails
  // with UNAVAILABLE and the loop keeps trying.
  server.Shutdown();
  const uint64_t failed = runner.loop().stats().failed_calls;
  ASSERT_TRUE(WaitFor(
      [&] { return runner.loop().stats().failed_calls >= failed + 2; }));
  EXPECT_EQ(runner.loop().stats().last_error_code,
            static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAre(1, 2, 3));
}

TEST(ResumeLoopTest, InvalidArgumentIsFatal) {
  TestServer server;
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.filter.add_streams("company");  // not a stream
  Runner runner(options, &processor);
  EXPECT_THAT(runner.Wait(), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("companies")));
  EXPECT_EQ(runner.loop().stats().calls, 1u);
}

// Verifies the loop learns the server's store_id (for the position file)
// and sends it back as expected_store_id when it resumes.
TEST(ResumeLoopTest, LearnsTheStoreIdAndResumesWithIt) {
  TestServer server;
  server.CommitAndWait(Events(5));
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.after_position = 2;
  options.expected_store_id = server.store()->store_id();  // the right one
  Runner runner(options, &processor);
  ASSERT_TRUE(WaitFor([&] { return runner.loop().stats().caught_up == 1; }));
  EXPECT_THAT(runner.Stop(), IsOk());
  EXPECT_THAT(processor.positions(), ElementsAre(3, 4, 5));
  EXPECT_EQ(runner.loop().stats().store_id, server.store()->store_id());

  RecordingProcessor fresh_processor;
  Runner fresh(TestOptions(server.address()), &fresh_processor);
  ASSERT_TRUE(WaitFor([&] { return fresh.loop().stats().caught_up == 1; }));
  EXPECT_EQ(fresh.loop().stats().store_id, server.store()->store_id());
}

// Verifies that a position saved under another store identity is not used
// to resume: the loop stops with FAILED_PRECONDITION instead of skipping or
// repeating events whose positions were reassigned.
TEST(ResumeLoopTest, StoreIdMismatchIsFatal) {
  TestServer server;
  server.CommitAndWait(Events(5));
  RecordingProcessor processor;
  ResumeLoopOptions options = TestOptions(server.address());
  options.after_position = 2;
  options.expected_store_id = "0123456789abcdef0123456789abcdef";
  Runner runner(options, &processor);
  EXPECT_THAT(runner.Wait(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("reassigned")));
  EXPECT_EQ(runner.loop().stats().calls, 1u);
  EXPECT_THAT(processor.positions(), ::testing::IsEmpty());
}

// Verifies that a processing failure ends the loop and that everything
// before the failing event is saved.
TEST(ResumeLoopTest, ProcessorErrorStopsAfterSavingWhatWasDone) {
  TestServer server;
  server.CommitAndWait(Events(8));
  RecordingProcessor processor;
  processor.fail_at = 5;
  Runner runner(TestOptions(server.address()), &processor);
  EXPECT_THAT(runner.Wait(), StatusIs(absl::StatusCode::kInternal,
                                      HasSubstr("cannot process")));
  EXPECT_THAT(processor.positions(), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(processor.checkpoints(), ElementsAre(4));
}

TEST(ResumeLoopTest, CheckpointErrorIsFatalAndNotRetried) {
  TestServer server;
  server.CommitAndWait(Events(3));
  RecordingProcessor processor;
  processor.checkpoint_status = absl::ResourceExhaustedError("disk full");
  Runner runner(TestOptions(server.address()), &processor);
  EXPECT_THAT(runner.Wait(), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("disk full")));
  EXPECT_THAT(processor.checkpoints(), ElementsAre(3));  // once, on caught_up
}

TEST(ResumeLoopTest, StopBeforeRunReturnsAtOnce) {
  RecordingProcessor processor;
  ResumeLoop loop(TestOptions("127.0.0.1:1"), &processor);
  loop.Stop();
  EXPECT_THAT(loop.Run(), IsOk());
  EXPECT_EQ(loop.stats().calls, 0u);
}

}  // namespace
}  // namespace chstream::client_examples
