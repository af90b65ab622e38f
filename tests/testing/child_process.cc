#include "tests/testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/clock.h"

namespace chstream::testing {
namespace {

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time end = Clock::Real()->Now() + timeout;
  while (!done()) {
    if (Clock::Real()->Now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string LoggedField(const std::string& output, const std::string& field) {
  const std::string key = "\"" + field + "\":\"";
  const size_t start = output.find(key);
  if (start == std::string::npos) return "";
  const size_t from = start + key.size();
  const size_t end = output.find('"', from);
  return end == std::string::npos ? "" : output.substr(from, end - from);
}

ChildProcess::ChildProcess(const std::string& binary,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& env,
                           const std::string& dir,
                           const std::string& output_path)
    : output_path_(output_path) {
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = env;
  // Under --config=tsan/asan the child is instrumented too: it needs the
  // same sanitizer options (tools/tsan/suppressions.txt for gRPC and
  // abseil internals) and the preloaded abseil annotations, or it reports
  // the uninstrumented libraries' hand-offs as races and slows to a crawl.
  for (const char* name :
       {"TSAN_OPTIONS", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LD_PRELOAD"}) {
    const char* value = std::getenv(name);
    if (value == nullptr) continue;
    const std::string prefix = std::string(name) + "=";
    bool given = false;
    for (const std::string& e : env_storage) given |= e.rfind(prefix, 0) == 0;
    if (!given) env_storage.push_back(prefix + value);
  }
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  // The binary path may be relative to our working directory.
  char cwd[4096];
  std::string exe = binary;
  if (!exe.empty() && exe[0] != '/' && ::getcwd(cwd, sizeof(cwd)) != nullptr) {
    exe = std::string(cwd) + "/" + exe;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  started_ = posix_spawn(&pid_, exe.c_str(), &actions, &attr, argv.data(),
                         envp.data()) == 0;
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (!started_) pid_ = -1;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  int status;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    exit_code_ = ExitCode(status);
    return false;
  }
  return true;
}

int ChildProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return exit_code_;
  WaitUntil([&] { return !Running(); }, timeout);
  return pid_ > 0 ? -1 : exit_code_;
}

int ChildProcess::SignalAndWait(int sig, absl::Duration timeout) {
  if (pid_ > 0) ::kill(pid_, sig);
  return Wait(timeout);
}

std::string ChildProcess::Output() const {
  return ReadFileOrEmpty(output_path_);
}

}  // namespace chstream::testing
