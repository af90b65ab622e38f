// Failover time of chstreamd replicas on PostgreSQL (issue 10; target:
// <= 15 s from kill -9 of the leader to the first event committed by the
// new leader).
//
// Starts a throwaway PostgreSQL 15 (tests/testing/postgres_server.h: run
// as root, it uses a user namespace), one simulator publishing --rate
// companies events/s, and --replicas real chstreamd replicas following it.
// Each round waits for one leader and for ingest to run, then kills it
// (kill -9) or, with --pause_rounds, pauses it (SIGSTOP: only its idle
// election session times out, after the 10 s lease), and measures until
// cluster.head moves again, i.e. the new leader has committed; the victim
// is then replaced by a fresh replica. At the end the stored event set must
// be exact (positions dense, each upstream timepoint once, none missing).
//
//   bazel run --config=opt //bench:failover_bench -- --rounds=10
//       --pause_rounds=3 --replicas=3 --rate=200   (one command line)
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "ingest/simulator/simulator.h"
#include "tests/cluster/replica_set.h"
#include "tests/testing/postgres_server.h"

namespace chstream::bench {
namespace {

constexpr char kKey[] = "failover-bench-key";

void Summary(const char* what, std::vector<double> seconds) {
  if (seconds.empty()) return;
  std::sort(seconds.begin(), seconds.end());
  std::printf("%s: n=%zu min %.2f s, median %.2f s, max %.2f s\n", what,
              seconds.size(), seconds.front(), seconds[seconds.size() / 2],
              seconds.back());
}

int Run(int argc, char** argv) {
  int rounds = 5, pause_rounds = 0, replicas = 3;
  double rate = 200;
  std::string chstreamd_flag;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    if (FlagValue(arg, "rounds", &v)) {
      (void)absl::SimpleAtoi(v, &rounds);
    } else if (FlagValue(arg, "pause_rounds", &v)) {
      (void)absl::SimpleAtoi(v, &pause_rounds);
    } else if (FlagValue(arg, "replicas", &v)) {
      (void)absl::SimpleAtoi(v, &replicas);
    } else if (FlagValue(arg, "rate", &v)) {
      (void)absl::SimpleAtod(v, &rate);
    } else if (FlagValue(arg, "chstreamd", &v)) {
      chstreamd_flag = v;
    } else {
      std::fprintf(stderr,
                   "usage: failover_bench [--rounds=5] [--pause_rounds=0] "
                   "[--replicas=3] [--rate=200] [--chstreamd=PATH]\n");
      return 2;
    }
  }
  if (replicas < 2) {
    std::fprintf(stderr, "--replicas must be at least 2\n");
    return 2;
  }
  int exit_code = 0;
  std::optional<ChstreamdBench> setup = SetUpChstreamdBench(
      chstreamd_flag, argv[0], "/tmp", "failover", &exit_code);
  if (!setup) return exit_code;

  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  if (!pg.ok()) {
    std::fprintf(stderr, "PostgreSQL: %s\n", pg.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> uri = (*pg)->CreateDatabase();
  if (!uri.ok()) return 1;
  ingest::sim::Options so;
  so.keys = {kKey};
  so.streams = {"companies"};
  so.companies_rate = rate;
  so.heartbeat_interval = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> sim =
      ingest::sim::Simulator::Start(so);
  if (!sim.ok()) return 1;
  testing::ReplicaSet set({.binary = setup->binary,
                           .postgres_url = *uri,
                           .upstream_url = (*sim)->url(),
                           .key = kKey,
                           .dir = setup->dir,
                           .log_dir = setup->dir},
                          pg->get());
  std::printf(
      "PostgreSQL 15 on port %d, %d replicas, %.0f events/s, logs in "
      "%s\n",
      (*pg)->port(), replicas, rate, setup->dir.c_str());

  std::vector<testing::Replica*> live;
  int next_id = 0;
  auto start_one = [&]() -> bool {
    absl::StatusOr<testing::Replica*> r =
        set.Start(absl::StrCat("r", next_id++));
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return false;
    }
    live.push_back(*r);
    return true;
  };
  for (int i = 0; i < replicas; ++i) {
    if (!start_one()) return 1;
  }

  std::vector<double> kill_times, pause_times;
  for (int round = 0; round < rounds + pause_rounds; ++round) {
    const bool pause = round >= rounds;
    testing::Replica* leader = set.WaitForOneLeader(live, absl::Seconds(60));
    if (leader == nullptr) {
      std::fprintf(stderr, "round %d: no single leader\n", round);
      return 1;
    }
    // Ingest runs: two seconds' worth of events committed by this leader.
    if (!set.WaitForHead(set.SqlHead() + static_cast<uint64_t>(2 * rate),
                         absl::Seconds(60))) {
      std::fprintf(stderr, "round %d: the leader does not ingest\n", round);
      return 1;
    }
    const pid_t pid = leader->process->pid();
    ::kill(pid, pause ? SIGSTOP : SIGKILL);
    const absl::Time t0 = absl::Now();
    if (!pause) leader->process->Wait(absl::Seconds(10));
    const uint64_t head = set.SqlHead();
    if (!set.WaitForHead(head + 1, absl::Seconds(60))) {
      // Who holds what on the cluster row, for the diagnosis.
      absl::StatusOr<std::string> sessions = (*pg)->QueryValue(
          *uri,
          "SELECT string_agg(a.pid || ' ' || a.application_name || ' ' || "
          "coalesce(a.state, '') || ' xact ' || coalesce((now() - "
          "a.xact_start)::text, '-') || ' wait ' || coalesce(a.wait_event, "
          "'-') || ': ' || left(a.query, 80), E'\\n') FROM "
          "pg_stat_activity a WHERE a.datname = current_database()");
      std::fprintf(stderr, "round %d: no new leader commits; sessions:\n%s\n",
                   round, sessions.value_or("?").c_str());
      return 1;
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    (pause ? pause_times : kill_times).push_back(seconds);
    std::printf(
        "round %d: %s of %s: first commit by the new leader after "
        "%.2f s\n",
        round, pause ? "SIGSTOP" : "kill -9", leader->id.c_str(), seconds);
    std::fflush(stdout);
    if (pause) {
      ::kill(pid, SIGKILL);
      leader->process->Wait(absl::Seconds(10));
    }
    live.erase(std::find(live.begin(), live.end(), leader));
    if (!start_one()) return 1;
  }
  Summary("kill -9 to the first commit by the new leader", kill_times);
  Summary("SIGSTOP to the first commit by the new leader", pause_times);

  if (absl::Status s = set.StopAll(absl::Seconds(15)); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  absl::Status exact = set.CheckExactEventSet(**sim);
  std::printf("event set after %d failovers (%llu events): %s\n",
              rounds + pause_rounds,
              static_cast<unsigned long long>(set.SqlHead()),
              exact.ok() ? "exact" : exact.ToString().c_str());
  (*sim)->Stop();
  return exact.ok() ? 0 : 1;
}

}  // namespace
}  // namespace chstream::bench

int main(int argc, char** argv) { return chstream::bench::Run(argc, argv); }
