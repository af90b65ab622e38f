#include "bench/bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace chstream::bench {
namespace {

bool IsExecutable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0;
}

}  // namespace

bool FlagValue(const std::string& arg, const char* name, std::string* value) {
  const std::string prefix = absl::StrCat("--", name, "=");
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

std::string FindChstreamd(const std::string& flag, const char* argv0) {
  if (!flag.empty()) return flag;
  std::vector<std::string> candidates;
  if (const char* dir = getenv("RUNFILES_DIR")) {
    candidates.push_back(absl::StrCat(dir, "/chstream/server/chstreamd"));
  }
  candidates.push_back(
      absl::StrCat(argv0, ".runfiles/chstream/server/chstreamd"));
  candidates.push_back("server/chstreamd");
  candidates.push_back("bazel-bin/server/chstreamd");
  for (const std::string& c : candidates) {
    if (IsExecutable(c)) return c;
  }
  return "";
}

std::optional<ChstreamdBench> SetUpChstreamdBench(
    const std::string& chstreamd_flag, const char* argv0,
    const std::string& parent, const std::string& name, int* exit_code) {
  ChstreamdBench bench;
  bench.binary = FindChstreamd(chstreamd_flag, argv0);
  if (bench.binary.empty()) {
    std::fprintf(stderr, "chstreamd not found; pass --chstreamd=PATH\n");
    *exit_code = 2;
    return std::nullopt;
  }
  bench.dir = absl::StrCat(parent, "/chstream-", name, "-XXXXXX");
  if (mkdtemp(bench.dir.data()) == nullptr) {
    std::perror("mkdtemp");
    *exit_code = 1;
    return std::nullopt;
  }
  return bench;
}

int64_t ProcStatusKb(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    int64_t kb = 0;
    if (absl::SimpleAtoi(digits, &kb)) return kb;
  }
  return -1;
}

double StatCpuSeconds(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // Fields after "(comm)": state is field 3; utime and stime are 14, 15.
  int i = 3;
  for (; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  if (i <= 15) return -1;
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ProcCpuSeconds(pid_t pid) {
  return StatCpuSeconds(absl::StrCat("/proc/", pid, "/stat"));
}

double SelfCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double Percentile(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(q *
                                    static_cast<double>(sorted.size() - 1))];
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // Distinct arguments and a local subchannel pool: one TCP connection per
  // channel.
  args.SetInt("chstream.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::vector<std::pair<std::string, std::string>>& env,
    const std::string& log_path, absl::Duration timeout) {
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::InternalError("cannot create " + log_path);
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fd);
  auto daemon = std::unique_ptr<Daemon>(new Daemon(pid, log_path));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      daemon->pid_ = -1;
      return absl::InternalError(absl::StrCat("chstreamd exited early (status ",
                                              status, "); see ", log_path));
    }
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("\"chstreamd serving\"") == std::string::npos) continue;
      const std::string key = "\"grpc_address\":\"";
      const size_t at = line.find(key);
      if (at == std::string::npos) continue;
      const size_t end = line.find('"', at + key.size());
      daemon->grpc_address_ =
          line.substr(at + key.size(), end - at - key.size());
      return daemon;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError("chstreamd did not start; see " +
                                     log_path);
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void BenchSubscriber::RecordResponse(const v1::SubscribeResponse& response) {
  switch (response.message_case()) {
    case v1::SubscribeResponse::kEvent:
      RecordEvent(response.event().position(),
                  FromTimestamp(response.event().received_at().seconds(),
                                response.event().received_at().nanos()));
      break;
    case v1::SubscribeResponse::kCaughtUp:
      RecordCaughtUp();
      break;
    case v1::SubscribeResponse::kFellBehind:
      RecordFellBehind();
      break;
    default:
      break;
  }
}

}  // namespace chstream::bench
