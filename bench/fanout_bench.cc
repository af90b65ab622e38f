// File: bench/fanout_bench.cc
//
// Live fan-out latency of the real chstreamd: starts it on a fresh database
// following its built-in simulator over real HTTP (--simulate
// --simulator_rate=200: ~200 company events/s), connects --subscribers
// Subscribe streams (start: now, no filter) spread over --channels
// connections with the gRPC callback client API, and records for every
// delivered event
//
//   latency = client receive time - event.received_at
//
// received_at is when chstreamd read the line from the upstream socket; the
// commit follows after parsing and group commit (--batch_max_delay, 5 ms by
// default), and the commit time itself is not in the Event message. The
// figure is therefore read-to-delivery, an upper bound on commit-to-delivery
// (by at most the parse + writer-queue + commit time). Client and server
// share this machine's clock.
//
// Prints p50/p90/p99/p99.9/max over the measured window (after
// --warmup_seconds), delivered events per subscriber, and chstreamd's CPU
// and peak RSS. Stops by itself after --seconds.
//
//   bazel run --config=opt //bench:fanout_bench --
//       [--subscribers=100] [--channels=4] [--seconds=30] [--rate=200]
//       [--warmup_seconds=3] [--chstreamd=path/to/chstreamd]
//
// Thread-safety: each reactor's callbacks are serialised by gRPC; the
// driver reads a reactor's samples only after its OnDone.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.grpc.pb.h"

namespace chstream::bench {
namespace {

struct Flags {
  int subscribers = 100;
  int channels = 4;
  int seconds = 30;
  int warmup_seconds = 3;
  double rate = 200;
  std::string chstreamd;
  std::string dir = "/tmp";
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name, std::string* out) {
      const std::string prefix = absl::StrCat("--", name, "=");
      if (arg.rfind(prefix, 0) != 0) return false;
      *out = arg.substr(prefix.size());
      return true;
    };
    std::string v;
    bool ok = true;
    if (value("subscribers", &v)) {
      ok = absl::SimpleAtoi(v, &flags->subscribers) && flags->subscribers > 0;
    } else if (value("channels", &v)) {
      ok = absl::SimpleAtoi(v, &flags->channels) && flags->channels > 0;
    } else if (value("seconds", &v)) {
      ok = absl::SimpleAtoi(v, &flags->seconds) && flags->seconds > 0;
    } else if (value("warmup_seconds", &v)) {
      ok = absl::SimpleAtoi(v, &flags->warmup_seconds) &&
           flags->warmup_seconds >= 0;
    } else if (value("rate", &v)) {
      ok = absl::SimpleAtod(v, &flags->rate) && flags->rate > 0;
    } else if (value("chstreamd", &v)) {
      flags->chstreamd = v;
    } else if (value("dir", &v)) {
      flags->dir = v;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return flags->warmup_seconds < flags->seconds;
}

// ---------------------------------------------------------------------------
// chstreamd as a child process.

bool IsExecutable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0;
}

// --chstreamd, else the data dependency in the runfiles, else bazel-bin.
std::string FindChstreamd(const std::string& flag, const char* argv0) {
  if (!flag.empty()) return flag;
  std::vector<std::string> candidates;
  if (const char* dir = getenv("RUNFILES_DIR")) {
    candidates.push_back(absl::StrCat(dir, "/chstream/server/chstreamd"));
  }
  candidates.push_back(absl::StrCat(argv0, ".runfiles/chstream/server/chstreamd"));
  candidates.push_back("server/chstreamd");
  candidates.push_back("bazel-bin/server/chstreamd");
  for (const std::string& c : candidates) {
    if (IsExecutable(c)) return c;
  }
  return "";
}

// kB from a "Key:   1234 kB" line of /proc/PID/status; -1 if absent.
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

// utime + stime of a process, in seconds, from /proc/PID/stat.
double ProcCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // Fields after "(comm)": state is field 3; utime and stime are 14, 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class Daemon {
 public:
  // Starts `binary` with `args` (and `env` added), its stdout and stderr
  // going to `log_path`, and waits until it logs "chstreamd serving".
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
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
        return absl::InternalError(
            absl::StrCat("chstreamd exited early (status ", status,
                         "); see ", log_path));
      }
      std::ifstream in(log_path);
      std::string line;
      while (std::getline(in, line)) {
        if (line.find("\"chstreamd serving\"") == std::string::npos) continue;
        const std::string key = "\"grpc_address\":\"";
        const size_t at = line.find(key);
        if (at == std::string::npos) continue;
        const size_t end = line.find('"', at + key.size());
        daemon->grpc_address_ = line.substr(at + key.size(), end - at - key.size());
        return daemon;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::DeadlineExceededError("chstreamd did not start; see " +
                                       log_path);
  }

  ~Daemon() { Stop(); }

  pid_t pid() const { return pid_; }
  const std::string& grpc_address() const { return grpc_address_; }

  // SIGTERM, then SIGKILL after 15 s. Returns the exit status (-1 if
  // killed or already stopped).
  int Stop() {
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

 private:
  Daemon(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_;
  std::string log_path_;
  std::string grpc_address_;
};

// ---------------------------------------------------------------------------
// Subscribers.

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

class Subscriber final : public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  Subscriber(v1::CompanyStream::Stub* stub, absl::Time measure_from,
             absl::Time measure_until)
      : measure_from_(measure_from), measure_until_(measure_until) {
    v1::SubscribeRequest request;
    request.mutable_start()->set_now(true);
    stub->async()->Subscribe(&ctx_, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    const absl::Time now = absl::Now();
    switch (response_.message_case()) {
      case v1::SubscribeResponse::kEvent: {
        const v1::Event& e = response_.event();
        if (e.position() <= last_position_) ++out_of_order_;
        last_position_ = e.position();
        ++events_;
        if (now >= measure_from_ && now < measure_until_) {
          const absl::Time received_at =
              absl::FromUnixSeconds(e.received_at().seconds()) +
              absl::Nanoseconds(e.received_at().nanos());
          latencies_ms_.push_back(
              static_cast<float>(absl::ToDoubleMilliseconds(now - received_at)));
        }
        break;
      }
      case v1::SubscribeResponse::kCaughtUp:
        caught_up_.store(true, std::memory_order_release);
        break;
      case v1::SubscribeResponse::kFellBehind:
        ++fell_behind_;
        break;
      default:
        break;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  void Cancel() { ctx_.TryCancel(); }
  bool caught_up() const { return caught_up_.load(std::memory_order_acquire); }
  bool WaitDone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
  }

  // Valid after WaitDone() returned true.
  const std::vector<float>& latencies_ms() const { return latencies_ms_; }
  uint64_t events() const { return events_; }
  uint64_t fell_behind() const { return fell_behind_; }
  uint64_t out_of_order() const { return out_of_order_; }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  const absl::Time measure_from_;
  const absl::Time measure_until_;
  grpc::ClientContext ctx_;
  v1::SubscribeResponse response_;
  std::atomic<bool> caught_up_{false};
  uint64_t last_position_ = 0;
  uint64_t events_ = 0;
  uint64_t fell_behind_ = 0;
  uint64_t out_of_order_ = 0;
  std::vector<float> latencies_ms_;
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

double Percentile(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
}

int Run(const Flags& flags, const char* argv0) {
  const std::string binary = FindChstreamd(flags.chstreamd, argv0);
  if (binary.empty()) {
    std::fprintf(stderr, "chstreamd not found; pass --chstreamd=PATH\n");
    return 2;
  }
  std::string dir = flags.dir + "/chstream-fanout-bench-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string log_path = dir + "/chstreamd.log";
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(
      binary,
      {"--db_path=" + dir + "/fanout.db", "--grpc_address=127.0.0.1:0",
       "--metrics_address=127.0.0.1:0", "--simulate",
       absl::StrCat("--simulator_rate=", flags.rate),
       absl::StrCat("--max_subscribers=", flags.subscribers + 10),
       "--log_level=info"},
      {}, log_path, absl::Minutes(1));
  if (!daemon.ok()) {
    std::fprintf(stderr, "%s\n", daemon.status().ToString().c_str());
    return 1;
  }
  const pid_t pid = (*daemon)->pid();
  std::printf("chstreamd pid %d on %s, simulator rate %.0f events/s (log %s)\n",
              pid, (*daemon)->grpc_address().c_str(), flags.rate,
              log_path.c_str());

  std::vector<std::unique_ptr<v1::CompanyStream::Stub>> stubs;
  for (int i = 0; i < flags.channels; ++i) {
    stubs.push_back(v1::CompanyStream::NewStub(
        MakeChannel((*daemon)->grpc_address(), i)));
  }
  auto head = [&stubs]() -> uint64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetStatusResponse status;
    if (!stubs[0]->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) {
      return 0;
    }
    return status.store().head_position();
  };

  const absl::Time start = absl::Now();
  const absl::Time measure_from = start + absl::Seconds(flags.warmup_seconds);
  const absl::Time end = start + absl::Seconds(flags.seconds);
  std::vector<std::unique_ptr<Subscriber>> subs;
  for (int i = 0; i < flags.subscribers; ++i) {
    subs.push_back(std::make_unique<Subscriber>(
        stubs[i % stubs.size()].get(), measure_from, end));
  }
  // All live (caught_up received) before the measured window opens.
  while (absl::Now() < measure_from) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  size_t live = 0;
  for (const auto& s : subs) live += s->caught_up() ? 1 : 0;
  const double cpu0 = ProcCpuSeconds(pid);
  const uint64_t head0 = head();
  while (absl::Now() < end) absl::SleepFor(absl::Milliseconds(100));
  const double cpu = ProcCpuSeconds(pid) - cpu0;
  const uint64_t head1 = head();
  for (const auto& s : subs) s->Cancel();
  size_t finished = 0;
  const absl::Time done_deadline = absl::Now() + absl::Seconds(20);
  for (const auto& s : subs) finished += s->WaitDone(done_deadline) ? 1 : 0;
  const int64_t hwm_kb = ProcStatusKb(pid, "VmHWM");

  std::vector<float> all;
  uint64_t min_events = UINT64_MAX, max_events = 0, fell_behind = 0,
           out_of_order = 0, errors = 0;
  for (const auto& s : subs) {
    all.insert(all.end(), s->latencies_ms().begin(), s->latencies_ms().end());
    min_events = std::min(min_events, s->events());
    max_events = std::max(max_events, s->events());
    fell_behind += s->fell_behind();
    out_of_order += s->out_of_order();
    if (s->status().error_code() != grpc::StatusCode::CANCELLED) ++errors;
  }
  std::sort(all.begin(), all.end());
  const double window = flags.seconds - flags.warmup_seconds;
  std::printf(
      "subscribers %d (live at window start %zu, finished %zu, ended with an "
      "error other than CANCELLED %llu) on %d channels\n",
      flags.subscribers, live, finished,
      static_cast<unsigned long long>(errors), flags.channels);
  std::printf(
      "committed in window: %llu events (%.0f events/s); delivered per "
      "subscriber min %llu max %llu; fell_behind %llu; out of order %llu\n",
      static_cast<unsigned long long>(head1 - head0),
      static_cast<double>(head1 - head0) / window,
      static_cast<unsigned long long>(min_events),
      static_cast<unsigned long long>(max_events),
      static_cast<unsigned long long>(fell_behind),
      static_cast<unsigned long long>(out_of_order));
  std::printf(
      "received_at-to-delivery latency over %zu deliveries in %.0f s: "
      "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
      all.size(), window, Percentile(all, 0.5), Percentile(all, 0.9),
      Percentile(all, 0.99), Percentile(all, 0.999),
      all.empty() ? 0.0 : all.back());
  std::printf("chstreamd CPU %.2f s in the window (%.0f%% of one core), peak "
              "RSS (VmHWM) %.1f MB\n",
              cpu, 100 * cpu / window, static_cast<double>(hwm_kb) / 1024);
  const bool ok = finished == subs.size() && errors == 0 && out_of_order == 0;
  subs.clear();
  const int exit_status = (*daemon)->Stop();
  std::printf("chstreamd exit status %d\n", exit_status);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) {
  chstream::bench::Flags flags;
  if (!chstream::bench::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: fanout_bench [--subscribers=N] [--channels=N] "
                 "[--seconds=N] [--warmup_seconds=N] [--rate=R] "
                 "[--chstreamd=PATH] [--dir=DIR]\n");
    return 2;
  }
  return chstream::bench::Run(flags, argv[0]);
}
