// File: bench/ingest_bench.cc
//
// End-to-end ingest throughput: the upstream simulator publishes N ~1.3 KB
// company-profile events as fast as they are read (rate 0, profile_only),
// and the real Ingester -> WriterSink -> EventWriter -> Store pipeline
// follows it over HTTP or HTTPS (a throwaway test PKI) into a fresh SQLite
// file. Reports events/s committed, commit latency p50/p99 (EventWriter's
// histogram), batch sizes, CPU time and peak RSS.
//
// By default the simulator runs as a separate process
// (//ingest/simulator:ch_simulator), so that the peak RSS and CPU reported
// for chstream are chstream's own; the simulator's are reported apart.
// --simulator=inprocess runs it inside this process instead (then the RSS
// includes it). With --mode=both (the default) each mode runs in a fresh
// child process, so that each peak RSS is that mode's own.
//
//   bazel run --config=opt //bench:ingest_bench -- --events=500000
//       [--mode=http|https|both] [--sync_full] [--simulator=inprocess]
//       [--dir=/tmp] [--queue_capacity=16384] [--queue_bytes=33554432]
//       [--max_batch=4096]
//       [--max_delay_ms=0] [--keep]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/log.h"
#include "bench/bench_util.h"
#include "ingest/ingester.h"
#include "ingest/simulator/event_generator.h"
#include "ingest/simulator/simulator.h"
#include "ingest/simulator/test_certs.h"
#include "ingest/writer_sink.h"
#include "storage/event_writer.h"
#include "storage/histogram.h"
#include "storage/store.h"

extern char** environ;

namespace chstream::bench {
namespace {

constexpr char kKey[] = "bench-key";
constexpr char kStream[] = "companies";
constexpr char kSimulatorRunfile[] = "chstream/ingest/simulator/ch_simulator";

struct Flags {
  int64_t events = 500'000;
  std::string mode = "both";  // http, https, both
  std::string simulator = "process";
  std::string simulator_binary;  // default: from the runfiles
  std::string dir = "/tmp";
  bool sync_full = false;
  bool keep = false;
  int64_t queue_capacity = 16384;
  // EventWriter::Options::queue_bytes (chstreamd's --writer_queue_bytes);
  // 0 = no byte bound (items only, as before --writer_queue_bytes).
  int64_t queue_bytes = 32 << 20;
  int64_t max_batch = 4096;
  double max_delay_ms = 0;  // chstreamd's --batch_max_delay default
  int64_t sim_retention = 20'000;
};

bool ParseFlags(const std::vector<std::string>& args, Flags* f) {
  for (const std::string& arg : args) {
    std::string v;
    bool ok = true;
    if (FlagValue(arg, "events", &v)) {
      ok = absl::SimpleAtoi(v, &f->events) && f->events > 0;
    } else if (FlagValue(arg, "mode", &v)) {
      f->mode = v;
      ok = v == "http" || v == "https" || v == "both";
    } else if (FlagValue(arg, "simulator", &v)) {
      f->simulator = v;
      ok = v == "process" || v == "inprocess";
    } else if (FlagValue(arg, "simulator_binary", &v)) {
      f->simulator_binary = v;
    } else if (FlagValue(arg, "dir", &v)) {
      f->dir = v;
    } else if (FlagValue(arg, "queue_capacity", &v)) {
      ok = absl::SimpleAtoi(v, &f->queue_capacity) && f->queue_capacity > 0;
    } else if (FlagValue(arg, "queue_bytes", &v)) {
      ok = absl::SimpleAtoi(v, &f->queue_bytes) && f->queue_bytes >= 0;
    } else if (FlagValue(arg, "max_batch", &v)) {
      ok = absl::SimpleAtoi(v, &f->max_batch) && f->max_batch > 0;
    } else if (FlagValue(arg, "max_delay_ms", &v)) {
      ok = absl::SimpleAtod(v, &f->max_delay_ms) && f->max_delay_ms >= 0;
    } else if (FlagValue(arg, "sim_retention", &v)) {
      ok = absl::SimpleAtoi(v, &f->sim_retention) && f->sim_retention > 0;
    } else if (arg == "--sync_full") {
      f->sync_full = true;
    } else if (arg == "--keep") {
      f->keep = true;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "ingest_bench: bad flag %s\n", arg.c_str());
      return false;
    }
  }
  return true;
}

// This process's threads (task ids).
std::set<int64_t> Tasks() {
  std::set<int64_t> out;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task", ec)) {
    int64_t tid;
    if (absl::SimpleAtoi(entry.path().filename().string(), &tid)) {
      out.insert(tid);
    }
  }
  return out;
}

// The one thread in `after` but not in `before` (-1 if not exactly one).
int64_t NewTask(const std::set<int64_t>& before,
                const std::set<int64_t>& after) {
  int64_t found = -1;
  for (int64_t tid : after) {
    if (before.count(tid) == 0) {
      if (found != -1) return -1;
      found = tid;
    }
  }
  return found;
}

double TaskCpuSeconds(int64_t tid) {
  if (tid < 0) return -1;
  return StatCpuSeconds(absl::StrCat("/proc/self/task/", tid, "/stat"));
}

std::string FindSimulatorBinary(const Flags& flags, const char* argv0) {
  if (!flags.simulator_binary.empty()) return flags.simulator_binary;
  std::vector<std::string> candidates;
  if (const char* r = std::getenv("RUNFILES_DIR"); r != nullptr && *r) {
    candidates.push_back(absl::StrCat(r, "/", kSimulatorRunfile));
  }
  candidates.push_back(absl::StrCat(argv0, ".runfiles/", kSimulatorRunfile));
  candidates.push_back("ingest/simulator/ch_simulator");
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

bool WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  return static_cast<bool>(out);
}

// The simulator, as a child process or in this one.
class SimulatorHandle {
 public:
  static absl::StatusOr<std::unique_ptr<SimulatorHandle>> Start(
      const Flags& flags, const std::string& binary, const std::string& dir,
      const ingest::sim::TestPki* pki) {
    auto h = std::unique_ptr<SimulatorHandle>(new SimulatorHandle());
    if (flags.simulator == "inprocess") {
      ingest::sim::Options o;
      o.keys = {kKey};
      o.companies_rate = 0;
      o.streams = {kStream};
      o.generator.profile_only = true;
      o.max_events_per_stream = flags.events;
      o.retention_events = flags.sim_retention;
      if (pki != nullptr) {
        o.tls_cert_pem = pki->server_cert_pem;
        o.tls_key_pem = pki->server_key_pem;
      }
      auto sim = ingest::sim::Simulator::Start(o);
      if (!sim.ok()) return sim.status();
      h->in_process_ = *std::move(sim);
      h->url_ = h->in_process_->url();
      return h;
    }
    if (binary.empty()) {
      return absl::NotFoundError(
          "ch_simulator not found; pass --simulator_binary=PATH");
    }
    std::vector<std::string> args = {
        binary,
        "--port=0",
        absl::StrCat("--keys=", kKey),
        "--rate=0",
        "--streams=companies",
        "--profile_only",
        absl::StrCat("--max_events=", flags.events),
        absl::StrCat("--retention_events=", flags.sim_retention),
        "--log_level=warning",
    };
    if (pki != nullptr) {
      const std::string cert = absl::StrCat(dir, "/server.pem");
      const std::string key = absl::StrCat(dir, "/server.key");
      if (!WriteFile(cert, pki->server_cert_pem) ||
          !WriteFile(key, pki->server_key_pem)) {
        return absl::InternalError("cannot write the server certificate");
      }
      args.push_back(absl::StrCat("--tls_cert=", cert));
      args.push_back(absl::StrCat("--tls_key=", key));
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe(out) != 0) return absl::InternalError("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, out[1]);
    const int rc = posix_spawn(&h->pid_, binary.c_str(), &actions, nullptr,
                               argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      h->pid_ = -1;
      return absl::InternalError(absl::StrCat("cannot start ", binary));
    }
    // "listening on <url>\n" once it accepts connections.
    std::string line;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (line.find('\n') == std::string::npos) {
      pollfd p{out[0], POLLIN, 0};
      const int left =
          static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (left <= 0 || ::poll(&p, 1, left) <= 0) break;
      char buf[256];
      const ssize_t n = ::read(out[0], buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    constexpr char kPrefix[] = "listening on ";
    const size_t at = line.find(kPrefix);
    if (at == std::string::npos) {
      return absl::UnavailableError(
          absl::StrCat("ch_simulator did not start: '", line, "'"));
    }
    h->url_ = line.substr(at + sizeof(kPrefix) - 1);
    h->url_ = h->url_.substr(0, h->url_.find('\n'));
    return h;
  }

  ~SimulatorHandle() { Stop(); }

  const std::string& url() const { return url_; }
  bool separate() const { return pid_ > 0; }
  int64_t PeakRssKb() const {
    return pid_ > 0 ? ProcStatusKb(pid_, "VmHWM") : -1;
  }
  double CpuSeconds() const { return pid_ > 0 ? ProcCpuSeconds(pid_) : -1; }

  void Stop() {
    if (in_process_ != nullptr) in_process_->Stop();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  SimulatorHandle() = default;
  pid_t pid_ = -1;
  std::unique_ptr<ingest::sim::Simulator> in_process_;
  std::string url_;
};

// One run (http or https) in this process.
int RunMode(const Flags& flags, bool tls, const char* argv0) {
  log::SetMinLevel(log::Level::kWarning);
  char tmpl[PATH_MAX];
  std::snprintf(tmpl, sizeof(tmpl), "%s/ingest_bench.XXXXXX",
                flags.dir.c_str());
  if (::mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "cannot create a directory in %s\n",
                 flags.dir.c_str());
    return 1;
  }
  const std::string dir = tmpl;

  std::optional<ingest::sim::TestPki> pki;
  std::string ca_file;
  if (tls) {
    absl::StatusOr<ingest::sim::TestPki> made = ingest::sim::MakeTestPki();
    if (!made.ok()) {
      std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
      return 1;
    }
    pki = *std::move(made);
    ca_file = absl::StrCat(dir, "/ca.pem");
    WriteFile(ca_file, pki->ca_pem);
  }
  absl::StatusOr<std::unique_ptr<SimulatorHandle>> sim = SimulatorHandle::Start(
      flags, FindSimulatorBinary(flags, argv0), dir, pki ? &*pki : nullptr);
  if (!sim.ok()) {
    std::fprintf(stderr, "%s\n", sim.status().ToString().c_str());
    return 1;
  }

  const std::set<int64_t> tasks_before_store = Tasks();
  storage::Store::Options store_options;
  store_options.synchronous_full = flags.sync_full;
  const std::string db = absl::StrCat(dir, "/bench.db");
  absl::StatusOr<std::unique_ptr<storage::Store>> store =
      storage::Store::Open(db, store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }

  const std::set<int64_t> tasks_before_writer = Tasks();
  const int64_t checkpointer_tid =
      NewTask(tasks_before_store, tasks_before_writer);
  absl::Mutex mu;
  uint64_t committed = 0;
  absl::Time first_commit = absl::InfinitePast();
  std::atomic<ingest::Ingester*> live{nullptr};
  storage::EventWriter::Options wo;
  wo.queue_capacity = static_cast<size_t>(flags.queue_capacity);
  wo.queue_bytes = flags.queue_bytes > 0
                       ? static_cast<size_t>(flags.queue_bytes)
                       : std::numeric_limits<size_t>::max() / 2;
  wo.max_batch = static_cast<size_t>(flags.max_batch);
  wo.max_delay = absl::Milliseconds(flags.max_delay_ms);
  storage::EventWriter writer(
      store->get(), wo,
      [&](const storage::CommitResult& r) {
        if (ingest::Ingester* i = live.load()) i->OnCommitted(r);
        absl::MutexLock lock(&mu);
        if (committed == 0) first_commit = absl::Now();
        committed += r.events->size();
      },
      Clock::Real());
  writer.Start();
  const std::set<int64_t> tasks_before_ingester = Tasks();
  const int64_t writer_tid =
      NewTask(tasks_before_writer, tasks_before_ingester);
  ingest::WriterSink sink(&writer);

  ingest::IngesterOptions io;
  io.upstream_url = (*sim)->url();
  io.keys = {kKey};
  io.streams = {kStream};
  io.ca_file = ca_file;
  io.start_timepoints[kStream] =
      ingest::sim::DefaultFirstTimepoint(ingest::sim::StreamKind::kCompanies);
  io.idle_timeout = absl::Seconds(30);
  io.seed = 1;
  ingest::Ingester ingester(io, &sink, Clock::Real());
  live.store(&ingester);

  const double cpu0 = SelfCpuSeconds();
  const absl::Time t0 = absl::Now();
  if (absl::Status s = ingester.Start({}); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const uint64_t want = static_cast<uint64_t>(flags.events);
  bool done;
  {
    absl::MutexLock lock(&mu);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return committed >= want;
    };
    done = mu.AwaitWithTimeout(
        absl::Condition(&reached),
        absl::Seconds(60) + absl::Milliseconds(flags.events / 2));
  }
  const absl::Time t1 = absl::Now();
  const double cpu1 = SelfCpuSeconds();
  const int64_t sim_rss_kb = (*sim)->PeakRssKb();
  const double sim_cpu = (*sim)->CpuSeconds();
  const bool separate = (*sim)->separate();
  // The ingester's io thread: the busiest thread it started (asio may also
  // have started a resolver thread).
  double reader_cpu = -1;
  for (int64_t tid : Tasks()) {
    if (tasks_before_ingester.count(tid) == 0) {
      reader_cpu = std::max(reader_cpu, TaskCpuSeconds(tid));
    }
  }
  const double writer_cpu = TaskCpuSeconds(writer_tid);
  const double checkpointer_cpu = TaskCpuSeconds(checkpointer_tid);
  double load1 = -1;
  {
    std::ifstream in("/proc/loadavg");
    in >> load1;
  }

  std::vector<ingest::StreamStatusSnapshot> status = ingester.Snapshot();
  live.store(nullptr);
  ingester.Stop();
  writer.Stop();
  (*sim)->Stop();
  const int64_t rss_kb = ProcStatusKb(getpid(), "VmHWM");
  const storage::EventWriter::Stats ws = writer.GetStats();
  const uint64_t head = (*store)->HeadPosition();
  absl::StatusOr<storage::StoreStats> ss = (*store)->Stats();
  store->reset();

  uint64_t committed_now;
  absl::Time first;
  {
    absl::MutexLock lock(&mu);
    committed_now = committed;
    first = first_commit;
  }
  const double seconds = absl::ToDoubleSeconds(t1 - t0);
  const double rate = static_cast<double>(committed_now) / seconds;
  auto q = [&](double quantile) {
    return 1000 * storage::Histogram::Quantile(ws.latency_bucket_bounds_seconds,
                                               ws.latency_bucket_counts,
                                               quantile);
  };
  const ingest::StreamStatusSnapshot& st = status.at(0);
  std::printf(
      "mode=%s simulator=%s sync=%s events=%llu\n"
      "  committed:      %llu events in %.2f s = %.0f events/s "
      "(first commit after %.0f ms)\n"
      "  commit latency: p50 %.2f ms, p99 %.2f ms, mean %.2f ms over %llu "
      "batches (mean batch %.0f events)\n"
      "  upstream:       %.1f MB read, reader waited %.2f s on a full writer "
      "queue, %llu reconnects, %llu malformed\n"
      "  chstream:       peak RSS (VmHWM) %.1f MB, CPU %.2f s (%.0f%% of one "
      "core)\n",
      tls ? "https" : "http", separate ? "process" : "inprocess",
      flags.sync_full ? "FULL" : "NORMAL",
      static_cast<unsigned long long>(flags.events),
      static_cast<unsigned long long>(committed_now), seconds, rate,
      first == absl::InfinitePast() ? -1.0
                                    : absl::ToDoubleMilliseconds(first - t0),
      q(0.5), q(0.99),
      ws.latency_count == 0 ? 0.0
                            : 1000 * ws.latency_sum_seconds /
                                  static_cast<double>(ws.latency_count),
      static_cast<unsigned long long>(ws.batches),
      ws.batch_size_count == 0
          ? 0.0
          : ws.batch_size_sum / static_cast<double>(ws.batch_size_count),
      static_cast<double>(st.bytes_total) / 1e6,
      absl::ToDoubleSeconds(st.reader_wait),
      static_cast<unsigned long long>(st.reconnects_total),
      static_cast<unsigned long long>(st.malformed_total),
      static_cast<double>(rss_kb) / 1024, cpu1 - cpu0,
      100 * (cpu1 - cpu0) / seconds);
  std::printf(
      "  threads (CPU s): ingest io %.2f (%.1f us/event), writer %.2f (%.1f "
      "us/event), checkpointer %.2f\n",
      reader_cpu, 1e6 * reader_cpu / static_cast<double>(committed_now),
      writer_cpu, 1e6 * writer_cpu / static_cast<double>(committed_now),
      checkpointer_cpu);
  if (separate) {
    std::printf("  simulator:      peak RSS (VmHWM) %.1f MB, CPU %.2f s\n",
                static_cast<double>(sim_rss_kb) / 1024, sim_cpu);
  }
  {
    // What the CPU time allows, whatever else runs on the machine: every
    // event costs this much CPU in chstream (and in the simulator when it is
    // a separate process); the busiest thread caps a single stream.
    const double n = static_cast<double>(committed_now);
    const double per_event =
        ((cpu1 - cpu0) + (separate ? std::max(sim_cpu, 0.0) : 0)) / n;
    const double busiest = std::max(reader_cpu, writer_cpu) / n;
    const double cores = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
    std::printf(
        "  CPU ceiling:    %.1f us of CPU per event (chstream%s) -> at most "
        "%.0f events/s on %.0f idle cores; busiest thread %.1f us/event -> "
        "at most %.0f events/s\n",
        1e6 * per_event, separate ? " + simulator" : "", cores / per_event,
        cores, 1e6 * busiest, 1 / busiest);
  }
  std::printf("  machine:        load average %.2f at the end\n", load1);
  if (ss.ok()) {
    std::printf("  database:       %.1f MB on disk (file + WAL)\n",
                static_cast<double>(ss->db_size_bytes) / 1e6);
  }
  std::printf(
      "RESULT mode=%s events_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "
      "rss_mb=%.1f sim_rss_mb=%.1f\n",
      tls ? "https" : "http", rate, q(0.5), q(0.99),
      static_cast<double>(rss_kb) / 1024,
      static_cast<double>(sim_rss_kb) / 1024);
  std::fflush(stdout);

  if (!flags.keep) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  } else {
    std::printf("  kept %s\n", dir.c_str());
  }
  if (!done || committed_now != want || head != want || ws.duplicates != 0 ||
      ws.dead_letters != 0) {
    std::fprintf(stderr,
                 "ingest_bench: incomplete or wrong: committed %llu, head "
                 "%llu, duplicates %llu, dead letters %llu\n",
                 static_cast<unsigned long long>(committed_now),
                 static_cast<unsigned long long>(head),
                 static_cast<unsigned long long>(ws.duplicates),
                 static_cast<unsigned long long>(ws.dead_letters));
    return 1;
  }
  return 0;
}

// Runs this binary again for one mode, so that its peak RSS is its own.
int RunChild(const char* argv0, const std::vector<std::string>& args,
             const std::string& mode) {
  std::vector<std::string> child = {argv0};
  for (const std::string& a : args) {
    if (a.rfind("--mode=", 0) != 0) child.push_back(a);
  }
  child.push_back(absl::StrCat("--mode=", mode));
  std::vector<char*> argv;
  for (std::string& a : child) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(),
                  environ) != 0) {
    std::fprintf(stderr, "cannot re-run myself\n");
    return 1;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int Main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  Flags flags;
  if (!ParseFlags(args, &flags)) return 2;
  if (flags.mode == "both") {
    std::printf("ingest_bench: %d CPUs\n",
                static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
    std::fflush(stdout);
    const int http = RunChild(argv[0], args, "http");
    const int https = RunChild(argv[0], args, "https");
    return http != 0 ? http : https;
  }
  return RunMode(flags, flags.mode == "https", argv[0]);
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) { return chstream::bench::Main(argc, argv); }
