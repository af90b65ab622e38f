// File: bench/frozen_subscribers_bench.cc
//
// chstreamd with subscribers that stop reading (issue 9, item 1). Starts
// the real chstreamd on a fresh database following a simulator at --rate
// events/s on companies (by default the simulator runs in this process, so
// that chstreamd's RSS is chstreamd's own; --embedded uses chstreamd's
// --simulate instead), connects --healthy subscribers that read everything
// and --frozen subscribers that read their first message and then nothing
// (each on its own connection, with BDP probing off so the HTTP/2 window
// stays at 64 KiB: their writes stall as a SIGSTOPped grpcurl's do). For
// --seconds it samples chstreamd's VmRSS every second and GetStatus's
// subscriber count, then prints: when each frozen call ended and with what
// status, RSS (peak and last), and what the healthy subscribers got
// (events, fell_behind).
//
//   bazel run --config=opt //bench:frozen_subscribers_bench --
//       [--rate=2000] [--frozen=10] [--healthy=2] [--seconds=60]
//       [--write_timeout=30s] [--embedded] [--chstreamd=PATH]
//
// Thread-safety: each reactor's callbacks are serialised by gRPC; the
// driver reads a reactor's results only after its OnDone, or atomics.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "ingest/simulator/simulator.h"

namespace chstream::bench {
namespace {

struct Flags {
  double rate = 2000;
  int frozen = 10;
  int healthy = 2;
  int seconds = 60;
  std::string write_timeout = "30s";
  bool embedded = false;
  std::string chstreamd;
  std::string dir = "/tmp";
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (FlagValue(arg, "rate", &v)) {
      ok = absl::SimpleAtod(v, &flags->rate) && flags->rate > 0;
    } else if (FlagValue(arg, "frozen", &v)) {
      ok = absl::SimpleAtoi(v, &flags->frozen) && flags->frozen >= 0;
    } else if (FlagValue(arg, "healthy", &v)) {
      ok = absl::SimpleAtoi(v, &flags->healthy) && flags->healthy >= 0;
    } else if (FlagValue(arg, "seconds", &v)) {
      ok = absl::SimpleAtoi(v, &flags->seconds) && flags->seconds > 0;
    } else if (FlagValue(arg, "write_timeout", &v)) {
      flags->write_timeout = v;
    } else if (arg == "--embedded") {
      flags->embedded = true;
    } else if (FlagValue(arg, "chstreamd", &v)) {
      flags->chstreamd = v;
    } else if (FlagValue(arg, "dir", &v)) {
      flags->dir = v;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

// Reads everything (healthy), or only the first message (frozen: no further
// StartRead, so gRPC stops granting flow-control window).
class Subscriber final : public BenchSubscriber,
                         public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  Subscriber(v1::CompanyStream::Stub* stub, bool frozen)
      : BenchSubscriber(absl::InfinitePast(), absl::InfiniteFuture()),
        frozen_(frozen) {
    v1::SubscribeRequest request;
    request.mutable_start()->set_now(true);
    request.set_heartbeat_seconds(3600);
    stub->async()->Subscribe(&ctx_, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    RecordResponse(response_);
    if (response_.has_fell_behind()) fell_behind_at_.push_back(absl::Now());
    if (!frozen_) StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    ended_at_.store(absl::ToUnixMillis(absl::Now()));
    RecordDone(status);
  }
  void Cancel() override { ctx_.TryCancel(); }
  int64_t ended_at_ms() const { return ended_at_.load(); }
  // Valid after WaitDone() returned true.
  const std::vector<absl::Time>& fell_behind_at() const {
    return fell_behind_at_;
  }

 private:
  const bool frozen_;
  grpc::ClientContext ctx_;
  v1::SubscribeResponse response_;
  std::atomic<int64_t> ended_at_{0};
  std::vector<absl::Time> fell_behind_at_;
};

double Mb(int64_t kb) { return static_cast<double>(kb) / 1024; }

int Run(const Flags& flags, const char* argv0) {
  int exit_code = 0;
  const std::optional<ChstreamdBench> setup = SetUpChstreamdBench(
      flags.chstreamd, argv0, flags.dir, "frozen-bench", &exit_code);
  if (!setup) return exit_code;
  const std::string& binary = setup->binary;
  const std::string& dir = setup->dir;
  std::vector<std::string> args = {
      "--db_path=" + dir + "/frozen.db",
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--streams=companies",
      "--subscriber_write_timeout=" + flags.write_timeout,
      absl::StrCat("--max_subscribers=", flags.frozen + flags.healthy + 10),
      "--log_level=info"};
  std::vector<std::pair<std::string, std::string>> env;
  std::unique_ptr<ingest::sim::Simulator> sim;
  if (flags.embedded) {
    args.push_back("--simulate");
    args.push_back(absl::StrCat("--simulator_rate=", flags.rate));
  } else {
    ingest::sim::Options so;
    so.keys = {"frozen-bench-key"};
    so.companies_rate = flags.rate;
    so.streams = {"companies"};
    absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> started =
        ingest::sim::Simulator::Start(so);
    if (!started.ok()) {
      std::fprintf(stderr, "simulator: %s\n",
                   started.status().ToString().c_str());
      return 1;
    }
    sim = *std::move(started);
    args.push_back("--upstream_url=" + sim->url());
    env.push_back({"CH_STREAMING_API_KEY", "frozen-bench-key"});
  }
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(
      binary, args, env, dir + "/chstreamd.log", absl::Minutes(1));
  if (!daemon.ok()) {
    std::fprintf(stderr, "%s\n", daemon.status().ToString().c_str());
    return 1;
  }
  const std::string address = (*daemon)->grpc_address();
  const pid_t pid = (*daemon)->pid();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::CompanyStream::Stub>> stubs;
  auto stub_on_own_connection = [&](bool frozen) {
    grpc::ChannelArguments a;
    a.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    a.SetInt("chstream.bench.index", static_cast<int>(channels.size()));
    if (frozen) a.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    a.SetMaxReceiveMessageSize(-1);
    channels.push_back(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), a));
    stubs.push_back(v1::CompanyStream::NewStub(channels.back()));
    return stubs.back().get();
  };
  std::vector<std::unique_ptr<Subscriber>> healthy, frozen;
  for (int i = 0; i < flags.healthy; ++i) {
    healthy.push_back(
        std::make_unique<Subscriber>(stub_on_own_connection(false), false));
  }
  const absl::Time frozen_at = absl::Now();
  for (int i = 0; i < flags.frozen; ++i) {
    frozen.push_back(
        std::make_unique<Subscriber>(stub_on_own_connection(true), true));
  }
  auto status_stub = v1::CompanyStream::NewStub(MakeChannel(address, 9999));
  std::printf("t(s)  rss(MB)  subscribers  head\n");
  int64_t peak_kb = 0;
  // Seconds after subscribing at which only the healthy were listed.
  double gone_at = -1;
  for (int t = 1; t <= flags.seconds; ++t) {
    absl::SleepFor(absl::Seconds(1));
    const int64_t rss = ProcStatusKb(pid, "VmRSS");
    peak_kb = std::max(peak_kb, rss);
    v1::GetStatusResponse status;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    const bool ok =
        status_stub->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok();
    if (ok && gone_at < 0 && status.subscribers_size() <= flags.healthy) {
      gone_at = absl::ToDoubleSeconds(absl::Now() - frozen_at);
    }
    if (t % 5 == 0 || t == 1) {
      std::printf("%4d  %7.1f  %11d  %llu\n", t, Mb(rss),
                  ok ? status.subscribers_size() : -1,
                  static_cast<unsigned long long>(
                      ok ? status.store().head_position() : 0));
    }
  }
  const int64_t hwm = ProcStatusKb(pid, "VmHWM");
  std::printf(
      "\nchstreamd RSS: peak sampled %.1f MB, VmHWM %.1f MB, last "
      "%.1f MB\n",
      Mb(peak_kb), Mb(hwm), Mb(ProcStatusKb(pid, "VmRSS")));
  int ended = 0;
  for (auto& s : frozen) {
    if (s->ended_at_ms() == 0) continue;
    ++ended;
    const double after =
        (s->ended_at_ms() - absl::ToUnixMillis(frozen_at)) / 1000.0;
    grpc::Status st = s->status();
    std::printf(
        "frozen: ended %.1f s after subscribing, %s: %s\n", after,
        absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code()))
            .c_str(),
        st.error_message().c_str());
  }
  std::printf("frozen subscribers ended (client saw the status): %d of %d\n",
              ended, flags.frozen);
  std::printf(
      "frozen subscribers gone from GetStatus: %s\n",
      gone_at < 0
          ? "not within the run"
          : absl::StrFormat("%.1f s after subscribing", gone_at).c_str());
  for (auto& s : frozen) s->Cancel();
  for (auto& s : healthy) s->Cancel();
  for (auto& s : healthy) s->WaitDone(absl::Now() + absl::Seconds(10));
  for (size_t i = 0; i < healthy.size(); ++i) {
    std::printf(
        "healthy %zu: %llu events, %llu fell_behind, %llu out of "
        "order\n",
        i, static_cast<unsigned long long>(healthy[i]->events()),
        static_cast<unsigned long long>(healthy[i]->fell_behind()),
        static_cast<unsigned long long>(healthy[i]->out_of_order()));
  }
  for (auto& s : frozen) s->WaitDone(absl::Now() + absl::Seconds(10));
  (*daemon)->Stop();
  return 0;
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) {
  chstream::bench::Flags flags;
  if (!chstream::bench::ParseFlags(argc, argv, &flags)) return 2;
  return chstream::bench::Run(flags, argv[0]);
}
