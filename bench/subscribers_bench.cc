// File: bench/subscribers_bench.cc
//
// Memory of the real chstreamd with many connected subscribers: starts it on
// a fresh database following its built-in simulator (--simulate,
// --simulator_rate events/s on companies, five streams), watches the live
// stream for --observe_seconds to learn company numbers and resource kinds
// that actually occur, then connects --subscribers Subscribe streams
// (start: now) with narrow filters over --channels connections (gRPC
// callback client API): one in --kind_every (10) filters on one
// resource_kind, the others on one company_number (--kind_every=0: all on a
// company number). With events flowing for --seconds it samples
// chstreamd's VmRSS every 250 ms and finally reads its VmHWM (peak RSS, from
// /proc/PID/status), and prints them with delivery counts and the
// received_at-to-delivery latency of the delivered events.
//
//   bazel run --config=opt //bench:subscribers_bench --
//       [--subscribers=1000] [--channels=8] [--seconds=30] [--rate=100]
//       [--kind_every=10]
//       [--chstreamd=path/to/chstreamd]
//       [--chstreamd_flag=--synchronous=normal ...]
//
// Thread-safety: each reactor's callbacks are serialised by gRPC; the
// driver reads a reactor's results only after its OnDone.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
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
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
  int subscribers = 1000;
  int channels = 8;
  int seconds = 30;
  int observe_seconds = 3;
  // Every kind_every-th subscriber filters on a resource kind, the others
  // on a company number; 0: all on a company number.
  int kind_every = 10;
  double rate = 100;
  std::string chstreamd;
  std::string dir = "/tmp";
  // --chstreamd_flag=--synchronous=normal (repeatable): passed on to
  // chstreamd after the benchmark's own flags.
  std::vector<std::string> chstreamd_flags;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (FlagValue(arg, "subscribers", &v)) {
      ok = absl::SimpleAtoi(v, &flags->subscribers) && flags->subscribers > 0;
    } else if (FlagValue(arg, "channels", &v)) {
      ok = absl::SimpleAtoi(v, &flags->channels) && flags->channels > 0;
    } else if (FlagValue(arg, "seconds", &v)) {
      ok = absl::SimpleAtoi(v, &flags->seconds) && flags->seconds > 0;
    } else if (FlagValue(arg, "observe_seconds", &v)) {
      ok = absl::SimpleAtoi(v, &flags->observe_seconds) &&
           flags->observe_seconds > 0;
    } else if (FlagValue(arg, "kind_every", &v)) {
      ok = absl::SimpleAtoi(v, &flags->kind_every) && flags->kind_every >= 0;
    } else if (FlagValue(arg, "rate", &v)) {
      ok = absl::SimpleAtod(v, &flags->rate) && flags->rate > 0;
    } else if (FlagValue(arg, "chstreamd", &v)) {
      flags->chstreamd = v;
    } else if (FlagValue(arg, "dir", &v)) {
      flags->dir = v;
    } else if (FlagValue(arg, "chstreamd_flag", &v)) {
      flags->chstreamd_flags.push_back(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Subscribers.

// A filtered subscriber that also checks every event against its filter and
// notes which company numbers and resource kinds it saw.
class Subscriber final : public BenchSubscriber,
                         public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  Subscriber(v1::CompanyStream::Stub* stub, const v1::EventFilter& filter)
      : BenchSubscriber(absl::InfinitePast(), absl::InfiniteFuture()),
        filter_(filter) {
    v1::SubscribeRequest request;
    request.mutable_start()->set_now(true);
    *request.mutable_filter() = filter;
    stub->async()->Subscribe(&ctx_, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (response_.has_event()) {
      const v1::Event& e = response_.event();
      if (!Matches(e)) ++mismatched_;
      numbers_.insert(e.company_number());
      kinds_.insert(e.resource_kind());
    }
    RecordResponse(response_);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override { RecordDone(status); }
  void Cancel() override { ctx_.TryCancel(); }

  // Valid after WaitDone() returned true.
  const std::set<std::string>& numbers() const { return numbers_; }
  const std::set<std::string>& kinds() const { return kinds_; }
  uint64_t mismatched() const { return mismatched_; }

 private:
  bool Matches(const v1::Event& e) const {
    auto in = [](const auto& list, const std::string& value) {
      return list.empty() ||
             std::find(list.begin(), list.end(), value) != list.end();
    };
    return in(filter_.company_numbers(), e.company_number()) &&
           in(filter_.resource_kinds(), e.resource_kind());
  }

  const v1::EventFilter filter_;
  grpc::ClientContext ctx_;
  v1::SubscribeResponse response_;
  uint64_t mismatched_ = 0;
  std::set<std::string> numbers_;
  std::set<std::string> kinds_;
};

double Mb(int64_t kb) { return static_cast<double>(kb) / 1024; }

int Run(const Flags& flags, const char* argv0) {
  int exit_code = 0;
  const std::optional<ChstreamdBench> setup = SetUpChstreamdBench(
      flags.chstreamd, argv0, flags.dir, "subscribers-bench", &exit_code);
  if (!setup) return exit_code;
  const std::string& binary = setup->binary;
  const std::string& dir = setup->dir;
  const std::string log_path = dir + "/chstreamd.log";
  std::vector<std::string> args = {
      "--db_path=" + dir + "/subscribers.db",
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--simulate",
      absl::StrCat("--simulator_rate=", flags.rate),
      "--streams=companies,filings,officers,"
      "persons-with-significant-control,charges",
      absl::StrCat("--max_subscribers=", flags.subscribers + 10),
      "--log_level=info"};
  args.insert(args.end(), flags.chstreamd_flags.begin(),
              flags.chstreamd_flags.end());
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start(binary, args, {}, log_path, absl::Minutes(1));
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
    stubs.push_back(
        v1::CompanyStream::NewStub(MakeChannel((*daemon)->grpc_address(), i)));
  }
  auto head = [&stubs]() -> uint64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    v1::GetStatusResponse status;
    if (!stubs[0]->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) {
      return 0;
    }
    return status.store().head_position();
  };

  // 1. Learn which company numbers and resource kinds occur.
  std::vector<std::string> numbers, kinds;
  {
    Subscriber observer(stubs[0].get(), v1::EventFilter());
    absl::SleepFor(absl::Seconds(flags.observe_seconds));
    observer.Cancel();
    if (!observer.WaitDone(absl::Now() + absl::Seconds(10))) {
      std::fprintf(stderr, "observer did not finish\n");
      return 1;
    }
    for (const std::string& n : observer.numbers()) {
      if (!n.empty()) numbers.push_back(n);
    }
    kinds.assign(observer.kinds().begin(), observer.kinds().end());
    std::printf(
        "observed %llu events in %d s: %zu company numbers, %zu "
        "resource kinds\n",
        static_cast<unsigned long long>(observer.events()),
        flags.observe_seconds, numbers.size(), kinds.size());
  }
  if (numbers.empty() || kinds.empty()) {
    std::fprintf(stderr, "no events observed; see %s\n", log_path.c_str());
    return 1;
  }
  const int64_t rss_before_kb = ProcStatusKb(pid, "VmRSS");

  auto is_kind_filter = [&flags](size_t i) {
    return flags.kind_every > 0 &&
           i % flags.kind_every == static_cast<size_t>(flags.kind_every - 1);
  };
  // 2. Connect every subscriber and wait until all are live.
  const absl::Time connect_start = absl::Now();
  std::vector<std::unique_ptr<Subscriber>> subs;
  for (int i = 0; i < flags.subscribers; ++i) {
    v1::EventFilter filter;
    if (is_kind_filter(i)) {
      filter.add_resource_kinds(kinds[(i / flags.kind_every) % kinds.size()]);
    } else {
      filter.add_company_numbers(numbers[i % numbers.size()]);
    }
    subs.push_back(
        std::make_unique<Subscriber>(stubs[i % stubs.size()].get(), filter));
  }
  size_t live = 0;
  const absl::Time live_deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < live_deadline) {
    live = 0;
    for (const auto& s : subs) live += s->caught_up() ? 1 : 0;
    if (live == subs.size()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  const double connect_seconds =
      absl::ToDoubleSeconds(absl::Now() - connect_start);
  const int64_t rss_connected_kb = ProcStatusKb(pid, "VmRSS");
  std::printf("%zu of %d subscribers live after %.2f s\n", live,
              flags.subscribers, connect_seconds);

  // 3. Events flow for --seconds; sample RSS.
  const double cpu0 = ProcCpuSeconds(pid);
  const uint64_t head0 = head();
  const absl::Time end = absl::Now() + absl::Seconds(flags.seconds);
  int64_t max_rss_kb = 0;
  while (absl::Now() < end) {
    max_rss_kb = std::max(max_rss_kb, ProcStatusKb(pid, "VmRSS"));
    absl::SleepFor(absl::Milliseconds(250));
  }
  const double cpu = ProcCpuSeconds(pid) - cpu0;
  const uint64_t head1 = head();
  int64_t still_live = 0;
  {
    grpc::ClientContext ctx;
    v1::GetStatusResponse status;
    if (stubs[0]->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) {
      still_live = status.subscribers_size();
    }
  }
  const int64_t hwm_kb = ProcStatusKb(pid, "VmHWM");

  for (const auto& s : subs) s->Cancel();
  size_t finished = 0;
  const absl::Time done_deadline = absl::Now() + absl::Seconds(20);
  for (const auto& s : subs) finished += s->WaitDone(done_deadline) ? 1 : 0;

  std::vector<float> all;
  uint64_t number_events = 0, kind_events = 0, fell_behind = 0,
           out_of_order = 0, mismatched = 0, errors = 0, with_events = 0,
           subs_fell_behind = 0;
  for (size_t i = 0; i < subs.size(); ++i) {
    const Subscriber& s = *subs[i];
    all.insert(all.end(), s.latencies_ms().begin(), s.latencies_ms().end());
    (is_kind_filter(i) ? kind_events : number_events) += s.events();
    with_events += s.events() > 0 ? 1 : 0;
    fell_behind += s.fell_behind();
    subs_fell_behind += s.fell_behind() > 0 ? 1 : 0;
    out_of_order += s.out_of_order();
    mismatched += s.mismatched();
    if (s.status().error_code() != grpc::StatusCode::CANCELLED) ++errors;
  }
  std::sort(all.begin(), all.end());
  std::printf(
      "subscribers %d on %d channels: live %zu, registered at the end %lld, "
      "finished %zu, ended with an error other than CANCELLED %llu\n",
      flags.subscribers, flags.channels, live,
      static_cast<long long>(still_live), finished,
      static_cast<unsigned long long>(errors));
  std::printf(
      "committed in %d s: %llu events (%.0f events/s); delivered: %llu to "
      "company_number filters, %llu to resource_kind filters; %llu "
      "subscribers got at least one; fell_behind %llu (%llu subscribers), "
      "out of order %llu, not matching the filter %llu\n",
      flags.seconds, static_cast<unsigned long long>(head1 - head0),
      static_cast<double>(head1 - head0) / flags.seconds,
      static_cast<unsigned long long>(number_events),
      static_cast<unsigned long long>(kind_events),
      static_cast<unsigned long long>(with_events),
      static_cast<unsigned long long>(fell_behind),
      static_cast<unsigned long long>(subs_fell_behind),
      static_cast<unsigned long long>(out_of_order),
      static_cast<unsigned long long>(mismatched));
  std::printf(
      "received_at-to-delivery latency over %zu deliveries: p50 %.2f ms, "
      "p99 %.2f ms, max %.2f ms\n",
      all.size(), Percentile(all, 0.5), Percentile(all, 0.99),
      all.empty() ? 0.0 : all.back());
  std::printf(
      "chstreamd memory: VmRSS %.1f MB before subscribers, %.1f MB with all "
      "connected, max sampled %.1f MB; peak RSS (VmHWM) %.1f MB; CPU %.2f s "
      "in %d s\n",
      Mb(rss_before_kb), Mb(rss_connected_kb), Mb(max_rss_kb), Mb(hwm_kb), cpu,
      flags.seconds);
  const bool ok = live == subs.size() && finished == subs.size() &&
                  errors == 0 && out_of_order == 0 && mismatched == 0;
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
    std::fprintf(
        stderr,
        "usage: subscribers_bench [--subscribers=N] [--channels=N] "
        "[--seconds=N] [--observe_seconds=N] [--rate=R] [--kind_every=N] "
        "[--chstreamd=PATH] [--dir=DIR] [--chstreamd_flag=FLAG ...]\n");
    return 2;
  }
  return chstream::bench::Run(flags, argv[0]);
}
