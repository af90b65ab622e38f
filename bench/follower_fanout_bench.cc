// File: bench/follower_fanout_bench.cc
//
// Live fan-out on a follower replica (issue 10): two replicas on one
// PostgreSQL database, in this process, composed as chstreamd composes them
// (see tests/cluster/replicas_on_postgres_test.cc):
//
//   leader:   LeaderElection (fencing epoch) + PostgresStore + EventWriter,
//             fed --rate company-profile events/s one at a time, as the
//             upstream trickles them in (received_at = when pushed);
//   follower: its own PostgresStore, CommitListener (LISTEN
//             chstream_commit) -> FollowerFeed (reads by position) ->
//             SubscriptionHub -> the real CompanyStreamService on a real
//             gRPC port;
//   clients:  --subscribers Subscribe calls (start: now, no filter) on
//             --channels connections, decoding only position and
//             received_at (bench_util's RawSubscriber).
//
// For every delivered event, latency = client receive time - received_at:
// the leader's group commit, PostgreSQL's COMMIT + NOTIFY, the follower's
// read, its hub and gRPC write, and the client's read. Everything shares one
// machine and clock (and its cores: the leader's and the follower's work
// are both in this process). Prints p50/p90/p99/p99.9/max over the measured
// window (after --warmup_seconds), the leader's commit latency, the feed's
// and listener's counts, and the process's CPU. Target: p99 <= 50 ms at
// 200 events/s to 100 subscribers.
//
//   bazel run --config=opt //bench:follower_fanout_bench --
//       [--subscribers=100] [--channels=4] [--seconds=30] [--rate=200]
//       [--warmup_seconds=3] [--postgres_url=URL]
//       [--subscribe_to=follower|leader]
//
// --subscribe_to=leader serves the same clients from the leader's own hub
// (fed by its writer's commit callback, as chstreamd's leader does): the
// baseline under the same machine load, so that the follower's extra cost
// (NOTIFY, listener, read by position) shows as the difference.
//
// Without --postgres_url it starts a throwaway PostgreSQL 15
// (tests/testing's PostgresServer, fsync and synchronous_commit on) and
// stops it at the end. A given database must be empty or chstream's: the
// benchmark adds events to it.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cluster/commit_listener.h"
#include "cluster/leader_election.h"
#include "server/company_stream_service.h"
#include "server/executor.h"
#include "server/follower_feed.h"
#include "server/grpc_server.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/histogram.h"
#include "storage/postgres/postgres_store.h"
#include "tests/testing/postgres_server.h"

namespace chstream::bench {
namespace {

struct Flags : FanoutFlags {
  std::string postgres_url;
  // "follower" (the subject), or "leader": the same clients on the
  // leader's own hub, fed by its writer's commit callback as in chstreamd,
  // for a baseline under the same machine load.
  std::string subscribe_to = "follower";
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (ParseFanoutFlag(arg, flags, &ok)) {
    } else if (FlagValue(arg, "postgres_url", &v)) {
      flags->postgres_url = v;
    } else if (FlagValue(arg, "subscribe_to", &v)) {
      flags->subscribe_to = v;
      ok = v == "follower" || v == "leader";
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  return flags->warmup_seconds < flags->seconds;
}

// /proc/loadavg, with its newline.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  std::getline(in, line);
  return line + "\n";
}

int Fail(const absl::Status& status, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  return 1;
}

int Run(const Flags& flags) {
  std::unique_ptr<testing::PostgresServer> server;
  std::string url = flags.postgres_url;
  if (url.empty()) {
    testing::PostgresServer::Options options;
    options.settings = {"fsync=on", "synchronous_commit=on"};
    auto started = testing::PostgresServer::Start(options);
    if (!started.ok()) return Fail(started.status(), "starting PostgreSQL");
    server = *std::move(started);
    absl::StatusOr<std::string> db = server->CreateDatabase();
    if (!db.ok()) return Fail(db.status(), "creating a database");
    url = *db;
    std::printf(
        "PostgreSQL 15 started on port %d (fsync=on, synchronous_commit=on)\n",
        server->port());
  }
  Clock* clock = Clock::Real();

  // The leader: elected (so its commits are fenced, as in chstreamd), then
  // a writer that commits what the producer pushes.
  auto leader = storage::PostgresStore::Open(url);
  if (!leader.ok()) return Fail(leader.status(), "leader store");
  cluster::LeaderElection election(
      {.url = url, .replica_id = "bench-leader"},
      {.on_elected = [&](int64_t e) { (*leader)->SetFencingEpoch(e); },
       .on_lost = nullptr});
  if (absl::Status s = election.Poll(); !s.ok()) return Fail(s, "election");
  if (!election.state().leader) {
    std::fprintf(stderr, "another replica leads this database\n");
    return 1;
  }
  const bool on_follower = flags.subscribe_to == "follower";
  server::SubscriptionHub leader_hub;
  storage::EventWriter writer(
      leader->get(), storage::EventWriter::Options(),
      [&](const storage::CommitResult& r) {
        if (!on_follower) leader_hub.Publish(r.events);
      },
      clock);

  // The follower: LISTEN -> feed -> hub -> gRPC.
  auto follower = storage::PostgresStore::Open(url);
  if (!follower.ok()) return Fail(follower.status(), "follower store");
  storage::PostgresStore* f = follower->get();
  server::SubscriptionHub hub;
  server::FollowerFeed feed(
      [f](uint64_t after, uint64_t up_to, size_t n) {
        if (f->HeadPosition() < up_to) {
          absl::StatusOr<uint64_t> head = f->RefreshHeadPosition();
          if (!head.ok()) return absl::StatusOr<storage::Page>(head.status());
        }
        return f->ReadPage(after, up_to, storage::Filter{}, n, n);
      },
      &hub, f->HeadPosition(), {});
  cluster::CommitListener listener(
      {.url = url, .replica_id = "bench-follower"},
      [&feed](uint64_t head) { feed.NotifyHead(head); });
  server::Executor executor(2);
  server::Executor read_executor(2);
  server::ServiceOptions so;
  so.version = "bench";
  so.upstream = "none";
  so.started_at = clock->Now();
  so.max_subscribers = flags.subscribers + 10;
  so.read_executor = &read_executor;
  server::CompanyStreamService service(
      on_follower ? f : static_cast<storage::EventStore*>(leader->get()),
      on_follower ? &hub : &leader_hub, &executor, nullptr, clock, so);
  auto grpc = server::GrpcServer::Start("127.0.0.1:0", &service);
  if (!grpc.ok()) return Fail(grpc.status(), "gRPC server");
  const std::string address = absl::StrCat("127.0.0.1:", (*grpc)->port());
  if (on_follower) {
    feed.Start();
    listener.Start();
  }
  writer.Start();

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < flags.channels; ++i) {
    channels.push_back(MakeChannel(address, i));
    stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
  }
  // The first event is pushed at `start`, once every subscriber is live
  // (caught_up), so that each is to receive every event.
  const absl::Time start = absl::Now() + absl::Seconds(5);
  const absl::Time measure_from = start + absl::Seconds(flags.warmup_seconds);
  const absl::Time end = start + absl::Seconds(flags.seconds);
  std::vector<std::unique_ptr<BenchSubscriber>> subs;
  for (int i = 0; i < flags.subscribers; ++i) {
    subs.push_back(std::make_unique<RawSubscriber>(
        stubs[static_cast<size_t>(i) % stubs.size()].get(), measure_from, end));
  }
  size_t live = 0;
  while (absl::Now() < start) {
    live = 0;
    for (const auto& s : subs) live += s->caught_up() ? 1 : 0;
    if (live == subs.size()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (live < subs.size()) {
    std::fprintf(stderr, "only %zu of %zu subscribers live after 5 s\n", live,
                 subs.size());
  }
  if (start > absl::Now()) absl::SleepFor(start - absl::Now());
  std::printf("load average at start: %s", LoadAverage().c_str());

  // The upstream: --rate events/s, each pushed when due (a benchmark's
  // pacing, not a wait for a condition).
  const double cpu0 = SelfCpuSeconds();
  uint64_t head0 = 0, head1 = 0;
  bool measuring = false;
  for (int64_t i = 0;; ++i) {
    const absl::Time due = start + absl::Seconds(i / flags.rate);
    if (due >= end) break;
    if (!measuring && due >= measure_from) {
      measuring = true;
      head0 = (*leader)->HeadPosition();
    }
    if (due > absl::Now()) absl::SleepFor(due - absl::Now());
    writer.Push(CompanyProfileEvent(i, 50'000, clock->Now()));
  }
  writer.Flush();
  head1 = (*leader)->HeadPosition();
  const double cpu = SelfCpuSeconds() - cpu0;
  // Every subscriber has every event (or 30 s passed), then the calls end.
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(30);
  auto all_delivered = [&] {
    for (const auto& s : subs) {
      if (s->events() < head1) return false;
    }
    return true;
  };
  while (!all_delivered() && absl::Now() < drain_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::printf("load average at end: %s", LoadAverage().c_str());
  for (const auto& s : subs) s->Cancel();
  size_t finished = 0;
  const absl::Time done_deadline = absl::Now() + absl::Seconds(20);
  for (const auto& s : subs) finished += s->WaitDone(done_deadline) ? 1 : 0;

  const FanoutTally tally = TallySubscribers(subs);
  const uint64_t min_events = tally.min_events, max_events = tally.max_events,
                 fell_behind = tally.fell_behind,
                 out_of_order = tally.out_of_order, errors = tally.errors;
  const storage::EventWriter::Stats ws = writer.GetStats();
  const server::FollowerFeed::Stats fs = feed.stats();
  const cluster::CommitListener::Stats ls = listener.stats();
  const double window = flags.seconds - flags.warmup_seconds;
  std::printf(
      "subscribers %d on the %s (live at start %zu, finished %zu, ended with "
      "an error other than CANCELLED %llu) on %d channels\n",
      flags.subscribers, flags.subscribe_to.c_str(), live, finished,
      static_cast<unsigned long long>(errors), flags.channels);
  std::printf(
      "leader committed %llu events in the window (%.0f events/s) in %llu "
      "commits (all run), commit mean %.2f ms, p99 %.2f ms\n",
      static_cast<unsigned long long>(head1 - head0),
      static_cast<double>(head1 - head0) / window,
      static_cast<unsigned long long>(ws.batches),
      ws.latency_count ? 1e3 * ws.latency_sum_seconds / ws.latency_count : 0.0,
      1e3 * storage::Histogram::Quantile(ws.latency_bucket_bounds_seconds,
                                         ws.latency_bucket_counts, 0.99));
  std::printf(
      "follower: %llu notifications, %llu safety polls, %llu pages read, "
      "%llu events published, %llu read errors\n",
      static_cast<unsigned long long>(ls.notifications),
      static_cast<unsigned long long>(ls.polls),
      static_cast<unsigned long long>(fs.pages_read),
      static_cast<unsigned long long>(fs.events_published),
      static_cast<unsigned long long>(fs.read_errors));
  std::printf(
      "delivered per subscriber min %llu max %llu (head %llu); fell_behind "
      "%llu; out of order %llu\n",
      static_cast<unsigned long long>(min_events),
      static_cast<unsigned long long>(max_events),
      static_cast<unsigned long long>(head1),
      static_cast<unsigned long long>(fell_behind),
      static_cast<unsigned long long>(out_of_order));
  PrintLatencies("received_at-to-delivery", tally, window);
  std::printf(
      "this process (leader + follower + clients) CPU %.2f s over %d s "
      "(%.0f%% of one core)\n",
      cpu, flags.seconds, 100 * cpu / flags.seconds);

  subs.clear();
  listener.Stop();
  feed.Stop();
  writer.Stop();
  (*grpc)->Shutdown(absl::Seconds(1));
  const bool ok = finished == static_cast<size_t>(flags.subscribers) &&
                  errors == 0 && out_of_order == 0 && min_events == head1;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) {
  // Line-buffered even into a file: a run cut short keeps what it printed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  chstream::bench::Flags flags;
  if (!chstream::bench::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: follower_fanout_bench [--subscribers=N] "
                 "[--channels=N] [--seconds=N] [--warmup_seconds=N] "
                 "[--rate=R] [--postgres_url=URL] "
                 "[--subscribe_to=follower|leader]\n");
    return 2;
  }
  return chstream::bench::Run(flags);
}
