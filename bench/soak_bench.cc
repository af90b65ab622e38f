// File: bench/soak_bench.cc
//
// Soak test of the real chstreamd (run by hand, not in the suite): it follows
// its built-in simulator (--simulate --simulator_rate=--rate) for --seconds
// while --subscribers Subscribe streams (no filter) read everything, of
// which --frozen stop reading for --freeze_seconds every
// --freeze_every_seconds and then read on; every --kill_every_seconds
// chstreamd is killed with SIGKILL and restarted on the same database and
// port. Every subscriber resumes after an error with start.after_position =
// the last position it received, so with no filter it must see every
// position exactly once, in order. At the end (no more kills or freezes) it
// waits until every subscriber has reached the head, then reports per
// subscriber
//   - lost positions (a gap: position > last + 1) and repeated ones
//     (position <= last), which must be 0;
//   - reassigned positions: the same position seen with a different
//     (stream, timepoint) by two subscribers or across restarts (must be 0);
//   - reconnects, fell_behind messages and how the calls ended;
// and chstreamd's RSS: sampled every --sample_seconds, and the peak (VmHWM)
// of each process life (between kills), which should stay flat.
// Exits 1 if anything was lost, repeated or reassigned, or a subscriber did
// not reach the head within --drain_seconds.
//
//   bazel run --config=opt //bench:soak_bench -- [--seconds=1800]
//       [--rate=2000] [--subscribers=100] [--frozen=10] [--freeze_seconds=60]
//       [--freeze_every_seconds=180] [--kill_every_seconds=60]
//       [--sample_seconds=10] [--drain_seconds=120] [--channels=4]
//       [--start_timeout_seconds=600] [--chstreamd=PATH] [--dir=/tmp]
//       [--chstreamd_flag=--name=value ...]
//
// --chstreamd_flag passes a flag to chstreamd (repeatable), e.g.
// --chstreamd_flag=--max_subscriber_lag=60s. --kill_every_seconds=0 keeps
// one process for the whole run (the RSS-over-time figure).
// --start_timeout_seconds bounds each (re)start until chstreamd serves: a
// restart after kill -9 on a multi-GB database recovers its WAL first, which
// took over a minute on the loaded 2-core machine (the old fixed 1 min
// timeout ended a 30-minute run at restart 25).
//
// Subscribers use the synchronous API, one thread each (a frozen subscriber
// simply does not call Read, so gRPC flow control pushes back on the
// server), and decode only the fields they check from the wire bytes.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "chstream/v1/chstream.grpc.pb.h"

namespace chstream::bench {
namespace {

struct Flags {
  int seconds = 1800;
  double rate = 2000;
  int subscribers = 100;
  int frozen = 10;
  int freeze_seconds = 60;
  int freeze_every_seconds = 180;
  int kill_every_seconds = 60;
  int sample_seconds = 10;
  int drain_seconds = 120;
  int channels = 4;
  int start_timeout_seconds = 600;
  std::string chstreamd;
  std::string dir = "/tmp";
  std::vector<std::string> chstreamd_flags;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    auto positive = [&v](int* out, int min) {
      return absl::SimpleAtoi(v, out) && *out >= min;
    };
    if (FlagValue(arg, "seconds", &v)) {
      ok = positive(&f->seconds, 1);
    } else if (FlagValue(arg, "rate", &v)) {
      ok = absl::SimpleAtod(v, &f->rate) && f->rate > 0;
    } else if (FlagValue(arg, "subscribers", &v)) {
      ok = positive(&f->subscribers, 1);
    } else if (FlagValue(arg, "frozen", &v)) {
      ok = positive(&f->frozen, 0);
    } else if (FlagValue(arg, "freeze_seconds", &v)) {
      ok = positive(&f->freeze_seconds, 1);
    } else if (FlagValue(arg, "freeze_every_seconds", &v)) {
      ok = positive(&f->freeze_every_seconds, 1);
    } else if (FlagValue(arg, "kill_every_seconds", &v)) {
      ok = positive(&f->kill_every_seconds, 0);
    } else if (FlagValue(arg, "sample_seconds", &v)) {
      ok = positive(&f->sample_seconds, 1);
    } else if (FlagValue(arg, "drain_seconds", &v)) {
      ok = positive(&f->drain_seconds, 1);
    } else if (FlagValue(arg, "channels", &v)) {
      ok = positive(&f->channels, 1);
    } else if (FlagValue(arg, "start_timeout_seconds", &v)) {
      ok = positive(&f->start_timeout_seconds, 1);
    } else if (FlagValue(arg, "chstreamd", &v)) {
      f->chstreamd = v;
    } else if (FlagValue(arg, "dir", &v)) {
      f->dir = v;
    } else if (FlagValue(arg, "chstreamd_flag", &v)) {
      f->chstreamd_flags.push_back(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return f->frozen <= f->subscribers &&
         f->freeze_seconds < f->freeze_every_seconds;
}

// Every position's identity as first seen: (stream, timepoint) hashed, never
// 0. Positions are dense from 1, so a flat array indexed by position works;
// positions beyond its size are not checked.
class Fingerprints {
 public:
  explicit Fingerprints(size_t capacity) : slots_(capacity) {}

  // False if `position` was seen before with another identity.
  bool Check(uint64_t position, uint64_t fingerprint) {
    if (position >= slots_.size()) return true;
    uint64_t expected = 0;
    if (slots_[position].compare_exchange_strong(expected, fingerprint)) {
      return true;
    }
    return expected == fingerprint;
  }

 private:
  std::vector<std::atomic<uint64_t>> slots_;
};

// What one SubscribeResponse carried, decoded from its wire bytes.
struct Response {
  enum Kind {
    kEvent = 1,
    kCaughtUp = 2,
    kFellBehind = 3,
    kOther = 0
  } kind = kOther;
  uint64_t position = 0;  // event.position or caught_up.position
  uint64_t fingerprint = 0;
};

Response Decode(const std::string& bytes) {
  using Input = google::protobuf::io::CodedInputStream;
  using google::protobuf::internal::WireFormatLite;
  Response r;
  Input in(reinterpret_cast<const uint8_t*>(bytes.data()),
           static_cast<int>(bytes.size()));
  const uint32_t tag = in.ReadTag();
  const uint32_t field = tag >> 3;
  if (field != 1 && field != 2) {
    r.kind = field == 3 ? Response::kFellBehind : Response::kOther;
    return r;
  }
  r.kind = field == 1 ? Response::kEvent : Response::kCaughtUp;
  uint32_t length = 0;
  if (!in.ReadVarint32(&length)) return r;
  const Input::Limit limit = in.PushLimit(static_cast<int>(length));
  std::string stream;
  uint64_t timepoint = 0;
  while (const uint32_t t = in.ReadTag()) {
    if ((t >> 3) == 1) {
      in.ReadVarint64(&r.position);
    } else if (r.kind == Response::kEvent && (t >> 3) == 2) {
      WireFormatLite::ReadString(&in, &stream);
    } else if (r.kind == Response::kEvent && (t >> 3) == 3) {
      in.ReadVarint64(&timepoint);
    } else if (!WireFormatLite::SkipField(&in, t)) {
      break;
    }
  }
  in.PopLimit(limit);
  r.fingerprint = (std::hash<std::string>()(stream) * 1000003u) ^ timepoint;
  if (r.fingerprint == 0) r.fingerprint = 1;
  return r;
}

// One subscriber: a thread that keeps a Subscribe call open, resuming after
// the last position it received whenever the call ends.
class Subscriber {
 public:
  Subscriber(int index, std::shared_ptr<grpc::Channel> channel,
             Fingerprints* fingerprints)
      : index_(index),
        channel_(std::move(channel)),
        fingerprints_(fingerprints) {}

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  // Stops reading (frozen) or reads on.
  void SetFrozen(bool frozen) { frozen_.store(frozen); }

  // Ends the current call and the thread.
  void Stop() {
    stop_.store(true);
    {
      absl::MutexLock lock(&mu_);
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    thread_.join();
  }

  uint64_t last() const { return last_.load(); }
  int index() const { return index_; }

  struct Counters {
    uint64_t events = 0, lost = 0, repeated = 0, reassigned = 0;
    uint64_t fell_behind = 0, calls = 0;
    std::map<std::string, uint64_t> endings;  // status code -> calls
  };
  Counters counters() const {
    absl::MutexLock lock(&mu_);
    return counters_;
  }

 private:
  void Run() {
    const grpc::internal::RpcMethod method(
        "/chstream.v1.CompanyStream/Subscribe",
        grpc::internal::RpcMethod::SERVER_STREAMING, channel_);
    bool have_last = false;
    while (!stop_.load()) {
      v1::SubscribeRequest request;
      if (have_last) {
        request.mutable_start()->set_after_position(last_.load());
      } else {
        request.mutable_start()->set_now(true);
      }
      grpc::ClientContext ctx;
      ctx.set_wait_for_ready(true);  // across restarts of chstreamd
      {
        absl::MutexLock lock(&mu_);
        ctx_ = &ctx;
        ++counters_.calls;
        if (stop_.load()) ctx.TryCancel();
      }
      std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
          grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
              channel_.get(), method, &ctx, request));
      grpc::ByteBuffer buffer;
      std::string bytes;
      while (reader->Read(&buffer)) {
        std::vector<grpc::Slice> slices;
        if (!buffer.Dump(&slices).ok()) continue;
        bytes.clear();
        for (const grpc::Slice& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
        Handle(Decode(bytes), &have_last);
        while (frozen_.load() && !stop_.load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      const grpc::Status status = reader->Finish();
      {
        absl::MutexLock lock(&mu_);
        ctx_ = nullptr;
        ++counters_.endings[absl::StrCat(status.error_code(), " ",
                                         status.error_message().substr(0, 60))];
      }
      if (!stop_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  void Handle(const Response& r, bool* have_last) {
    absl::MutexLock lock(&mu_);
    switch (r.kind) {
      case Response::kCaughtUp:
        if (!*have_last) {
          last_.store(r.position);
          *have_last = true;
        }
        return;
      case Response::kFellBehind:
        ++counters_.fell_behind;
        return;
      case Response::kOther:
        return;
      case Response::kEvent:
        break;
    }
    ++counters_.events;
    if (!*have_last) {  // an event before the first caught_up
      last_.store(r.position - 1);
      *have_last = true;
    }
    const uint64_t last = last_.load();
    if (r.position <= last) {
      ++counters_.repeated;
      return;
    }
    if (r.position > last + 1) counters_.lost += r.position - last - 1;
    if (!fingerprints_->Check(r.position, r.fingerprint)) {
      ++counters_.reassigned;
    }
    last_.store(r.position);
  }

  const int index_;
  const std::shared_ptr<grpc::Channel> channel_;
  Fingerprints* const fingerprints_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> frozen_{false};
  std::atomic<uint64_t> last_{0};
  mutable absl::Mutex mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  Counters counters_ ABSL_GUARDED_BY(mu_);
};

uint64_t HeadPosition(v1::CompanyStream::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse status;
  if (!stub->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) return 0;
  return status.store().head_position();
}

double Mb(int64_t kb) { return static_cast<double>(kb) / 1024; }

int Run(const Flags& flags, const char* argv0) {
  int exit_code = 0;
  const std::optional<ChstreamdBench> setup = SetUpChstreamdBench(
      flags.chstreamd, argv0, flags.dir, "soak", &exit_code);
  if (!setup) return exit_code;
  const std::string& binary = setup->binary;
  const std::string& dir = setup->dir;
  std::vector<std::string> args = {
      "--db_path=" + dir + "/soak.db", "--metrics_address=127.0.0.1:0",
      "--simulate", absl::StrCat("--simulator_rate=", flags.rate),
      absl::StrCat("--max_subscribers=", flags.subscribers + 10)};
  args.insert(args.end(), flags.chstreamd_flags.begin(),
              flags.chstreamd_flags.end());
  int life = 0;
  // Restarts bind the same port, so that channels just reconnect; see
  // PortBelowEphemeralRange for why it is not an ephemeral one.
  absl::StatusOr<int> port = PortBelowEphemeralRange();
  if (!port.ok()) {
    std::fprintf(stderr, "%s\n", port.status().ToString().c_str());
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", *port);
  auto start_daemon = [&]() -> absl::StatusOr<std::unique_ptr<Daemon>> {
    std::vector<std::string> a = args;
    a.push_back("--grpc_address=" + address);
    return Daemon::Start(binary, a, {},
                         absl::StrCat(dir, "/chstreamd.", ++life, ".log"),
                         absl::Seconds(flags.start_timeout_seconds));
  };
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = start_daemon();
  if (!daemon.ok()) {
    std::fprintf(stderr, "%s\n", daemon.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "soak: chstreamd on %s, simulator %.0f events/s, %d subscribers (%d "
      "freeze %d s every %d s), kill -9 every %d s, %d s; logs in %s\n",
      address.c_str(), flags.rate, flags.subscribers, flags.frozen,
      flags.freeze_seconds, flags.freeze_every_seconds,
      flags.kill_every_seconds, flags.seconds, dir.c_str());
  std::fflush(stdout);

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < flags.channels; ++i) {
    channels.push_back(MakeChannel(address, i));
  }
  auto status_stub = v1::CompanyStream::NewStub(MakeChannel(address, -1));
  Fingerprints fingerprints(
      static_cast<size_t>(flags.rate * (flags.seconds + flags.drain_seconds) *
                          1.5) +
      100000);
  std::vector<std::unique_ptr<Subscriber>> subs;
  for (int i = 0; i < flags.subscribers; ++i) {
    subs.push_back(std::make_unique<Subscriber>(
        i, channels[static_cast<size_t>(i) % channels.size()], &fingerprints));
    subs.back()->Start();
  }

  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(flags.seconds);
  absl::Time next_kill = flags.kill_every_seconds > 0
                             ? start + absl::Seconds(flags.kill_every_seconds)
                             : absl::InfiniteFuture();
  absl::Time next_sample = start;
  std::vector<double> life_hwm_mb;
  std::vector<double> rss_samples_mb;
  int kills = 0;
  while (absl::Now() < end) {
    const absl::Time now = absl::Now();
    // Frozen subscribers: from 30 s into each period, for freeze_seconds.
    const int64_t into =
        absl::ToInt64Seconds(now - start) % flags.freeze_every_seconds;
    const bool freeze = into >= 30 && into < 30 + flags.freeze_seconds;
    for (int i = 0; i < flags.frozen; ++i) subs[i]->SetFrozen(freeze);

    if (now >= next_sample) {
      const pid_t pid = (*daemon)->pid();
      const int64_t rss = ProcStatusKb(pid, "VmRSS");
      rss_samples_mb.push_back(Mb(rss));
      uint64_t min_last = UINT64_MAX, max_last = 0;
      for (const auto& s : subs) {
        min_last = std::min(min_last, s->last());
        max_last = std::max(max_last, s->last());
      }
      std::printf(
          "t=%4llds life %d pid %d RSS %.1f MB HWM %.1f MB head %llu "
          "subscribers' last position min %llu max %llu%s\n",
          static_cast<long long>(absl::ToInt64Seconds(now - start)), life, pid,
          Mb(rss), Mb(ProcStatusKb(pid, "VmHWM")),
          static_cast<unsigned long long>(HeadPosition(status_stub.get())),
          static_cast<unsigned long long>(min_last),
          static_cast<unsigned long long>(max_last), freeze ? " (frozen)" : "");
      std::fflush(stdout);
      next_sample += absl::Seconds(flags.sample_seconds);
    }
    if (now >= next_kill) {
      life_hwm_mb.push_back(Mb(ProcStatusKb((*daemon)->pid(), "VmHWM")));
      kill((*daemon)->pid(), SIGKILL);
      (*daemon)->Stop();  // reaps it
      ++kills;
      const absl::Time restart_at = absl::Now();
      daemon = start_daemon();
      std::printf("restart %d: %.1f s until serving\n", kills,
                  absl::ToDoubleSeconds(absl::Now() - restart_at));
      if (!daemon.ok()) {
        std::fprintf(stderr, "restart %d: %s\n", kills,
                     daemon.status().ToString().c_str());
        for (auto& s : subs) s->Stop();
        return 1;
      }
      next_kill += absl::Seconds(flags.kill_every_seconds);
    }
    absl::SleepFor(absl::Milliseconds(200));
  }

  // Drain: nobody frozen, no more kills; every subscriber must reach the
  // head as of now.
  for (auto& s : subs) s->SetFrozen(false);
  uint64_t head = 0;
  for (int i = 0; i < 50 && head == 0; ++i) {
    head = HeadPosition(status_stub.get());
    if (head == 0) absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Time drain_deadline =
      absl::Now() + absl::Seconds(flags.drain_seconds);
  size_t behind = subs.size();
  while (absl::Now() < drain_deadline) {
    behind = 0;
    for (const auto& s : subs) behind += s->last() < head ? 1 : 0;
    if (behind == 0) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  const pid_t pid = (*daemon)->pid();
  life_hwm_mb.push_back(Mb(ProcStatusKb(pid, "VmHWM")));
  for (auto& s : subs) s->Stop();

  Subscriber::Counters total;
  uint64_t min_events = UINT64_MAX, max_events = 0;
  int bad = 0;
  std::map<std::string, uint64_t> endings;
  for (const auto& s : subs) {
    const Subscriber::Counters c = s->counters();
    total.events += c.events;
    total.lost += c.lost;
    total.repeated += c.repeated;
    total.reassigned += c.reassigned;
    total.fell_behind += c.fell_behind;
    total.calls += c.calls;
    min_events = std::min(min_events, c.events);
    max_events = std::max(max_events, c.events);
    for (const auto& [k, v] : c.endings) endings[k] += v;
    if (c.lost + c.repeated + c.reassigned > 0 || s->last() < head) {
      ++bad;
      std::printf(
          "subscriber %d%s: last %llu (head %llu), lost %llu, repeated %llu, "
          "reassigned %llu, calls %llu\n",
          s->index(), s->index() < flags.frozen ? " (freezes)" : "",
          static_cast<unsigned long long>(s->last()),
          static_cast<unsigned long long>(head),
          static_cast<unsigned long long>(c.lost),
          static_cast<unsigned long long>(c.repeated),
          static_cast<unsigned long long>(c.reassigned),
          static_cast<unsigned long long>(c.calls));
    }
  }
  std::printf(
      "head %llu after %d s and %d kills; events received per subscriber "
      "min %llu max %llu; lost %llu, repeated %llu, reassigned %llu; %zu "
      "subscribers short of the head after the %d s drain\n",
      static_cast<unsigned long long>(head), flags.seconds, kills,
      static_cast<unsigned long long>(min_events),
      static_cast<unsigned long long>(max_events),
      static_cast<unsigned long long>(total.lost),
      static_cast<unsigned long long>(total.repeated),
      static_cast<unsigned long long>(total.reassigned), behind,
      flags.drain_seconds);
  std::printf(
      "calls %llu (reconnects %llu), fell_behind messages %llu; "
      "how calls ended:\n",
      static_cast<unsigned long long>(total.calls),
      static_cast<unsigned long long>(total.calls - subs.size()),
      static_cast<unsigned long long>(total.fell_behind));
  for (const auto& [k, v] : endings) {
    std::printf("  %6llu x code %s\n", static_cast<unsigned long long>(v),
                k.c_str());
  }
  std::string lives;
  for (double mb : life_hwm_mb) absl::StrAppend(&lives, " ", mb);
  std::sort(rss_samples_mb.begin(), rss_samples_mb.end());
  std::printf("chstreamd peak RSS (VmHWM) per life, MB:%s\n", lives.c_str());
  if (!rss_samples_mb.empty()) {
    std::printf("RSS samples: min %.1f MB, median %.1f MB, max %.1f MB\n",
                rss_samples_mb.front(),
                rss_samples_mb[rss_samples_mb.size() / 2],
                rss_samples_mb.back());
  }
  subs.clear();
  std::printf("chstreamd exit status %d\n", (*daemon)->Stop());
  const bool ok = bad == 0 && behind == 0;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) {
  chstream::bench::Flags flags;
  if (!chstream::bench::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: soak_bench [--seconds=N] [--rate=R] "
                 "[--subscribers=N] [--frozen=N] [--freeze_seconds=N] "
                 "[--freeze_every_seconds=N (> freeze_seconds)] "
                 "[--kill_every_seconds=N (0 = never)] [--sample_seconds=N] "
                 "[--drain_seconds=N] [--channels=N] [--chstreamd=PATH] "
                 "[--dir=DIR] [--chstreamd_flag=--name=value ...]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return chstream::bench::Run(flags, argv[0]);
}
