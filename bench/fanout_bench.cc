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
// commit follows after parsing and group commit (at once when the writer is
// free; --batch_max_delay adds a wait), and the commit time itself is not in
// the Event message. The figure is therefore read-to-delivery, an upper
// bound on commit-to-delivery (by at most the parse + writer-queue + commit
// time). Client and server share this machine's clock.
//
// --client=raw (the default) decodes only position and received_at from the
// wire; --client=parsed parses every SubscribeResponse in full (including
// the google.protobuf.Struct data), which on 2 cores measures this
// process's parsing as much as the server.
//
// Prints p50/p90/p99/p99.9/max over the measured window (after
// --warmup_seconds), delivered events per subscriber, and chstreamd's CPU
// and peak RSS. Stops by itself after --seconds.
//
//   bazel run --config=opt //bench:fanout_bench --
//       [--subscribers=100] [--channels=4] [--seconds=30] [--rate=200]
//       [--warmup_seconds=3] [--client=raw|parsed]
//       [--chstreamd_flag=--synchronous=normal ...]
//       [--chstreamd=path/to/chstreamd]
//
// Thread-safety: each reactor's callbacks are serialised by gRPC; the
// driver reads a reactor's samples only after its OnDone.
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>
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
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "chstream/v1/chstream.grpc.pb.h"

namespace chstream::bench {
namespace {

struct Flags : FanoutFlags {
  std::string chstreamd;
  std::string dir = "/tmp";
  // --chstreamd_flag=--synchronous=normal (repeatable): passed on to
  // chstreamd after the benchmark's own flags.
  std::vector<std::string> chstreamd_flags;
  std::string client = "raw";  // or "parsed"
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (ParseFanoutFlag(arg, flags, &ok)) {
    } else if (FlagValue(arg, "chstreamd", &v)) {
      flags->chstreamd = v;
    } else if (FlagValue(arg, "dir", &v)) {
      flags->dir = v;
    } else if (FlagValue(arg, "chstreamd_flag", &v)) {
      flags->chstreamd_flags.push_back(v);
    } else if (FlagValue(arg, "client", &v)) {
      flags->client = v;
      ok = v == "raw" || v == "parsed";
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return flags->warmup_seconds < flags->seconds;
}

// ---------------------------------------------------------------------------
// Subscribers.

// --client=parsed: what a typical C++ client does, the full
// SubscribeResponse (Event.data as a google.protobuf.Struct) parsed.
class ParsedSubscriber final
    : public BenchSubscriber,
      public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  ParsedSubscriber(grpc::Channel* channel, absl::Time measure_from,
                   absl::Time measure_until)
      : BenchSubscriber(measure_from, measure_until),
        stub_(v1::CompanyStream::NewStub(
            std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}))) {
    v1::SubscribeRequest request;
    request.mutable_start()->set_now(true);
    stub_->async()->Subscribe(&ctx_, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    RecordResponse(response_);
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override { RecordDone(status); }
  void Cancel() override { ctx_.TryCancel(); }

 private:
  std::unique_ptr<v1::CompanyStream::Stub> stub_;
  grpc::ClientContext ctx_;
  v1::SubscribeResponse response_;
};

int Run(const Flags& flags, const char* argv0) {
  int exit_code = 0;
  const std::optional<ChstreamdBench> setup = SetUpChstreamdBench(
      flags.chstreamd, argv0, flags.dir, "fanout-bench", &exit_code);
  if (!setup) return exit_code;
  const std::string& binary = setup->binary;
  const std::string& dir = setup->dir;
  const std::string log_path = dir + "/chstreamd.log";
  std::vector<std::string> args = {
      "--db_path=" + dir + "/fanout.db",
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--simulate",
      absl::StrCat("--simulator_rate=", flags.rate),
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

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> generic_stubs;
  for (int i = 0; i < flags.channels; ++i) {
    channels.push_back(MakeChannel((*daemon)->grpc_address(), i));
    generic_stubs.push_back(std::make_unique<grpc::GenericStub>(channels[i]));
  }
  auto status_stub = v1::CompanyStream::NewStub(channels[0]);
  // The store's head, or nullopt when GetStatus failed (on a loaded machine
  // its 5 s deadline can pass).
  auto head = [&status_stub]() -> std::optional<uint64_t> {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    v1::GetStatusResponse status;
    if (!status_stub->GetStatus(&ctx, v1::GetStatusRequest(), &status).ok()) {
      return std::nullopt;
    }
    return status.store().head_position();
  };

  const absl::Time start = absl::Now();
  const absl::Time measure_from = start + absl::Seconds(flags.warmup_seconds);
  const absl::Time end = start + absl::Seconds(flags.seconds);
  std::vector<std::unique_ptr<BenchSubscriber>> subs;
  for (int i = 0; i < flags.subscribers; ++i) {
    const size_t c = static_cast<size_t>(i) % channels.size();
    if (flags.client == "raw") {
      subs.push_back(std::make_unique<RawSubscriber>(generic_stubs[c].get(),
                                                     measure_from, end));
    } else {
      subs.push_back(std::make_unique<ParsedSubscriber>(channels[c].get(),
                                                        measure_from, end));
    }
  }
  // All live (caught_up received) before the measured window opens.
  while (absl::Now() < measure_from) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  size_t live = 0;
  for (const auto& s : subs) live += s->caught_up() ? 1 : 0;
  const double cpu0 = ProcCpuSeconds(pid);
  const std::optional<uint64_t> head0 = head();
  while (absl::Now() < end) absl::SleepFor(absl::Milliseconds(100));
  const double cpu = ProcCpuSeconds(pid) - cpu0;
  const std::optional<uint64_t> head1 = head();
  for (const auto& s : subs) s->Cancel();
  size_t finished = 0;
  const absl::Time done_deadline = absl::Now() + absl::Seconds(20);
  for (const auto& s : subs) finished += s->WaitDone(done_deadline) ? 1 : 0;
  const int64_t hwm_kb = ProcStatusKb(pid, "VmHWM");

  const FanoutTally tally = TallySubscribers(subs);
  const uint64_t min_events = tally.min_events, max_events = tally.max_events,
                 fell_behind = tally.fell_behind,
                 out_of_order = tally.out_of_order, errors = tally.errors;
  const double window = flags.seconds - flags.warmup_seconds;
  std::printf(
      "subscribers %d (%s client; live at window start %zu, finished %zu, "
      "ended with an error other than CANCELLED %llu) on %d channels\n",
      flags.subscribers, flags.client.c_str(), live, finished,
      static_cast<unsigned long long>(errors), flags.channels);
  // Unknown when either GetStatus failed (head1 - head0 of a failed read
  // once printed 18446744073709551006).
  const std::string committed =
      head0 && head1 && *head1 >= *head0
          ? absl::StrFormat("%llu events (%.0f events/s)",
                            static_cast<unsigned long long>(*head1 - *head0),
                            static_cast<double>(*head1 - *head0) / window)
          : std::string("unknown (GetStatus failed)");
  std::printf(
      "committed in window: %s; delivered per "
      "subscriber min %llu max %llu; fell_behind %llu; out of order %llu\n",
      committed.c_str(), static_cast<unsigned long long>(min_events),
      static_cast<unsigned long long>(max_events),
      static_cast<unsigned long long>(fell_behind),
      static_cast<unsigned long long>(out_of_order));
  PrintLatencies("received_at-to-delivery", tally, window);
  std::printf(
      "chstreamd CPU %.2f s in the window (%.0f%% of one core), peak "
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
                 "[--client=raw|parsed] [--chstreamd=PATH] [--dir=DIR] "
                 "[--chstreamd_flag=FLAG ...]\n");
    return 2;
  }
  return chstream::bench::Run(flags, argv[0]);
}
