// Runs the ch_simulator binary as a process: --help, a bad flag, and a real
// session (start on port 0, read the URL from stdout, stream events, SIGTERM,
// clean exit). Every wait has a deadline (poll on the pipe and on a pidfd).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "tests/ingest/simulator/test_http_client.h"

extern char** environ;

namespace chstream::ingest::sim {
namespace {

using ::chstream::ingest::sim::testing::ResponseHead;
using ::chstream::ingest::sim::testing::TestHttpClient;

constexpr absl::Duration kTimeout = absl::Seconds(20);

std::string BinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "chstream",
                      "/ingest/simulator/ch_simulator");
}

class Process {
 public:
  explicit Process(const std::vector<std::string>& args) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    std::vector<std::string> argv_storage = {BinaryPath()};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) !=
        0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_ = out[0];
    if (pid_ > 0) pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  }

  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
    if (pidfd_ >= 0) close(pidfd_);
  }

  bool started() const { return pid_ > 0 && pidfd_ >= 0; }

  // Reads stdout until it contains `needle` or EOF or the deadline.
  std::string ReadStdoutUntil(const std::string& needle,
                              absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!absl::StrContains(output_, needle)) {
      pollfd p{stdout_, POLLIN, 0};
      const int ms =
          static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0 || poll(&p, 1, ms) <= 0) break;
      char buf[4096];
      const ssize_t n = read(stdout_, buf, sizeof(buf));
      if (n <= 0) break;
      output_.append(buf, static_cast<size_t>(n));
    }
    return output_;
  }

  // The exit code, or -1 if the process did not exit in time.
  int Wait(absl::Duration timeout) {
    pollfd p{pidfd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) !=
        1) {
      return -1;
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return -1;
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void Signal(int sig) { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  int pidfd_ = -1;
  bool exited_ = false;
  std::string output_;
};

TEST(ChSimulatorTest, HelpListsTheFlags) {
  Process process({"--help"});
  ASSERT_TRUE(process.started());
  const std::string out =
      process.ReadStdoutUntil("--retry_after_seconds", kTimeout);
  EXPECT_TRUE(absl::StrContains(out, "--heartbeat_seconds")) << out;
  EXPECT_TRUE(absl::StrContains(out, "--tls_cert")) << out;
  EXPECT_EQ(process.Wait(kTimeout), 0);
}

TEST(ChSimulatorTest, BadFlagExitsWithUsageError) {
  Process process({"--no_such_flag=1"});
  ASSERT_TRUE(process.started());
  EXPECT_EQ(process.Wait(kTimeout), 2);
}

TEST(ChSimulatorTest, ServesUntilSigterm) {
  Process process({"--port=0", "--keys=bin-key", "--streams=companies",
                   "--initial_events=10", "--max_events=10",
                   "--heartbeat_seconds=0.05", "--log_level=warning"});
  ASSERT_TRUE(process.started());
  const std::string out = process.ReadStdoutUntil("\n", kTimeout);
  const std::string prefix = "listening on http://127.0.0.1:";
  ASSERT_TRUE(absl::StartsWith(out, prefix)) << out;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      out.substr(prefix.size(), out.find('\n') - prefix.size()), &port))
      << out;

  ASSERT_OK_AND_ASSIGN(auto client,
                       TestHttpClient::Connect(static_cast<uint16_t>(port)));
  ASSERT_OK(client->Get("/companies?timepoint=82000000", "bin-key"));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(10, kTimeout));
  EXPECT_TRUE(absl::StrContains(events.front(), "\"timepoint\":82000000,"));

  process.Signal(SIGTERM);
  EXPECT_EQ(process.Wait(kTimeout), 0);
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    status = client->ReadLine(kTimeout).status();
  }
  EXPECT_NE(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
}

}  // namespace
}  // namespace chstream::ingest::sim
