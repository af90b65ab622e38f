// File: bench/storage_writer_bench.cc
//
// Write throughput of the storage layer: pushes N synthetic company-profile
// events (data_json ~1.2 KB, data_pb ~1.3 KB, typed company fields) through
// EventWriter into a fresh database in a temporary directory, and prints
// events/s, commit latency and the process's peak RSS (measured before the
// replay phase, which then reads everything back through Store::ReadPage).
//
//   bazel run --config=opt //bench:storage_writer_bench --
//       --events=200000 --companies=200000 [--sync_full] [--dir=/tmp]
//       [--max_delay_ms=0] [--rate=0 (events/s; 0: full speed)]
//       [--postgres_url=postgresql://...]
//
// With --postgres_url the events go into that PostgreSQL database
// (PostgresStore; it must be empty or chstream's, and is not cleaned up).
// --backends=sqlite,postgres runs both stores one after the other with the
// same events and prints their figures side by side; postgres without
// --postgres_url starts a throwaway PostgreSQL 15 (tests/testing's
// PostgresServer, with fsync and synchronous_commit on) and stops it at the
// end.
//
// --companies is the number of distinct company numbers (events cycle over
// them in a scrambled order): equal to --events means every event inserts a
// new company; smaller means most events update an existing one.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "storage/event.h"
#include "storage/event_writer.h"
#include "storage/histogram.h"
#include "storage/postgres/postgres_store.h"
#include "storage/store.h"
#include "tests/testing/postgres_server.h"

namespace chstream::storage {
namespace {

struct Flags {
  int64_t events = 200'000;
  int64_t companies = -1;  // default: = events
  bool sync_full = false;
  std::string dir = "/tmp";
  std::string postgres_url;  // PostgreSQL instead of an SQLite file
  // Which stores, one after the other in this run: "sqlite", "postgres" or
  // both ("sqlite,postgres"). Default: postgres with --postgres_url, else
  // sqlite. postgres without --postgres_url starts a throwaway server.
  std::vector<std::string> backends;
  bool keep = false;
  bool replay = true;
  int64_t queue_capacity = 16384;
  int64_t max_batch = 4096;
  double max_delay_ms = 0;  // chstreamd's --batch_max_delay default
  // Events pushed per second, one at a time (as the real upstream trickles
  // them in); 0: as fast as possible.
  double rate = 0;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  using bench::FlagValue;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (FlagValue(arg, "events", &v)) {
      ok = absl::SimpleAtoi(v, &flags->events);
    } else if (FlagValue(arg, "companies", &v)) {
      ok = absl::SimpleAtoi(v, &flags->companies);
    } else if (FlagValue(arg, "dir", &v)) {
      flags->dir = v;
    } else if (FlagValue(arg, "postgres_url", &v)) {
      flags->postgres_url = v;
    } else if (FlagValue(arg, "backends", &v)) {
      flags->backends = absl::StrSplit(v, ',', absl::SkipEmpty());
      for (const std::string& b : flags->backends) {
        ok = ok && (b == "sqlite" || b == "postgres");
      }
    } else if (FlagValue(arg, "queue_capacity", &v)) {
      ok = absl::SimpleAtoi(v, &flags->queue_capacity);
    } else if (FlagValue(arg, "max_batch", &v)) {
      ok = absl::SimpleAtoi(v, &flags->max_batch);
    } else if (FlagValue(arg, "max_delay_ms", &v)) {
      ok = absl::SimpleAtod(v, &flags->max_delay_ms);
    } else if (FlagValue(arg, "rate", &v)) {
      ok = absl::SimpleAtod(v, &flags->rate) && flags->rate >= 0;
    } else if (arg == "--sync_full") {
      flags->sync_full = true;
    } else if (arg == "--noreplay") {
      flags->replay = false;
    } else if (arg == "--keep") {
      flags->keep = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      ok = false;
    }
    if (!ok) return false;
  }
  if (flags->companies <= 0) flags->companies = flags->events;
  if (flags->backends.empty()) {
    flags->backends = {flags->postgres_url.empty() ? "sqlite" : "postgres"};
  }
  return flags->events > 0;
}

int64_t ProcStatusKb(const std::string& key) {
  return bench::ProcStatusKb(getpid(), key);
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double Percentile(std::vector<double>* v, double q) {
  if (v->empty()) return 0;
  size_t k = static_cast<size_t>(q * static_cast<double>(v->size() - 1));
  std::nth_element(v->begin(), v->begin() + k, v->end());
  return (*v)[k];
}

// Replays everything stored through ReadPage as a ReplayEvents call would
// (pages of 1000 events), then the same range with filters.
void Replay(EventStore* store, int64_t events) {
  Clock* clock = Clock::Real();
  const uint64_t head = store->HeadPosition();
  struct Case {
    const char* name;
    Filter filter;
  };
  Filter none_match;
  none_match.streams = {"filings"};  // every stored event is "companies"
  Filter one_company;
  one_company.company_numbers = {bench::CompanyNumber(events / 2, events)};
  Filter kind;
  kind.resource_kinds = {"company-profile"};
  const Case cases[] = {
      {"all events, no filter", Filter{}},
      {"resource_kind filter (all match)", kind},
      {"stream filter (none match)", none_match},
      {"one company_number", one_company},
  };
  for (const Case& c : cases) {
    const absl::Time start = clock->Now();
    uint64_t after = 0;
    uint64_t delivered = 0;
    uint64_t bytes = 0;
    uint64_t calls = 0;
    while (after < head) {
      auto page = store->ReadPage(after, head, c.filter, 1000, 10000);
      if (!page.ok()) {
        std::fprintf(stderr, "replay: %s\n", page.status().ToString().c_str());
        return;
      }
      ++calls;
      delivered += page->events.size();
      for (const Event& e : page->events) {
        bytes += e.data_json.size() + e.data_pb.size();
      }
      after = page->scanned_through;
    }
    const double seconds = absl::ToDoubleSeconds(clock->Now() - start);
    std::printf(
        "  replay %-33s %llu events in %.3f s (%llu calls): "
        "%.0f positions/s, %.0f events/s, %.0f MB/s\n",
        c.name, static_cast<unsigned long long>(delivered), seconds,
        static_cast<unsigned long long>(calls),
        static_cast<double>(head) / seconds,
        static_cast<double>(delivered) / seconds,
        static_cast<double>(bytes) / 1e6 / seconds);
  }
}

// What one store's run measured, for the side-by-side table.
struct Summary {
  std::string store;
  double events_per_second = 0;
  double commit_mean_ms = 0;
  double commit_p99_ms = 0;
  double push_to_commit_p99_ms = 0;
  double writer_us_per_event = 0;
  bool ok = false;
};

Summary Run(const Flags& flags, const std::string& postgres_url) {
  Summary summary;
  summary.store = postgres_url.empty()
                      ? absl::StrCat("SQLite synchronous=",
                                     flags.sync_full ? "FULL" : "NORMAL")
                      : "PostgreSQL";
  std::string dir_template = flags.dir + "/chstream-bench-XXXXXX";
  if (mkdtemp(dir_template.data()) == nullptr) {
    std::perror("mkdtemp");
    return summary;
  }
  const std::string path = dir_template + "/bench.db";
  Store::Options store_options;
  store_options.synchronous_full = flags.sync_full;
  absl::StatusOr<std::unique_ptr<EventStore>> store;
  if (!postgres_url.empty()) {
    store = PostgresStore::Open(postgres_url);
  } else {
    store = Store::Open(path, store_options);
  }
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return summary;
  }
  Clock* clock = Clock::Real();

  // End-to-end latency (push -> on_commit) per event, in seconds.
  absl::Mutex mu;
  std::vector<double> e2e;
  double writer_cpu = 0;  // the writer thread's CPU time at its last commit
  e2e.reserve(static_cast<size_t>(flags.events));
  EventWriter::Options options;
  options.queue_capacity = static_cast<size_t>(flags.queue_capacity);
  options.max_batch = static_cast<size_t>(flags.max_batch);
  options.max_delay = absl::Milliseconds(flags.max_delay_ms);
  EventWriter writer(
      store->get(), options,
      [&](const CommitResult& r) {
        const absl::Time now = clock->Now();
        const double cpu = ThreadCpuSeconds();
        absl::MutexLock lock(&mu);
        writer_cpu = cpu;
        for (const Event& e : *r.events) {
          e2e.push_back(absl::ToDoubleSeconds(now - e.received_at));
        }
      },
      clock);
  writer.Start();

  const absl::Time start = clock->Now();
  const double producer_cpu_start = ThreadCpuSeconds();
  absl::Duration push_wait;
  for (int64_t i = 0; i < flags.events; ++i) {
    if (flags.rate > 0) {
      // A benchmark's pacing, not a wait for a condition.
      const absl::Time due = start + absl::Seconds(i / flags.rate);
      if (due > clock->Now()) absl::SleepFor(due - clock->Now());
    }
    absl::Duration waited;
    writer.Push(bench::CompanyProfileEvent(i, flags.companies, clock->Now()),
                &waited);
    push_wait += waited;
  }
  const double producer_cpu = ThreadCpuSeconds() - producer_cpu_start;
  writer.Flush();
  const absl::Duration elapsed = clock->Now() - start;
  writer.Stop();

  EventWriter::Stats ws = writer.GetStats();
  auto stats = (*store)->Stats();
  const int64_t hwm_kb = ProcStatusKb("VmHWM");
  const double seconds = absl::ToDoubleSeconds(elapsed);

  std::vector<double> lat;
  {
    absl::MutexLock lock(&mu);
    lat = e2e;
  }

  std::printf("storage_writer_bench\n");
  std::printf("  events             %lld (distinct companies %lld)\n",
              static_cast<long long>(flags.events),
              static_cast<long long>(flags.companies));
  std::printf("  store              %s\n", summary.store.c_str());
  std::printf("  event payload      data_json %zu B + data_pb %zu B\n",
              bench::CompanyDataJson(bench::CompanyNumber(0, 1), 0).size(),
              bench::CompanyProfileEvent(0, 1, start).data_pb.size());
  std::printf("  elapsed            %.3f s\n", seconds);
  std::printf("  throughput         %.0f events/s committed\n",
              static_cast<double>(ws.events) / seconds);
  std::printf(
      "  batches            %llu (mean %.0f items)\n",
      static_cast<unsigned long long>(ws.batches),
      ws.batch_size_count ? ws.batch_size_sum / ws.batch_size_count : 0.0);
  std::printf(
      "  commit duration    mean %.2f ms, p50 %.2f ms, "
      "p99 %.2f ms (interpolated in histogram buckets)\n",
      ws.latency_count ? 1e3 * ws.latency_sum_seconds / ws.latency_count : 0.0,
      1e3 * Histogram::Quantile(ws.latency_bucket_bounds_seconds,
                                ws.latency_bucket_counts, 0.5),
      1e3 * Histogram::Quantile(ws.latency_bucket_bounds_seconds,
                                ws.latency_bucket_counts, 0.99));
  std::printf("  push->commit       p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              1e3 * Percentile(&lat, 0.5), 1e3 * Percentile(&lat, 0.99),
              1e3 * Percentile(&lat, 1.0));
  std::printf("  producer waited    %.3f s in total (queue full)\n",
              absl::ToDoubleSeconds(push_wait));
  std::printf("  commit errors      %llu\n",
              static_cast<unsigned long long>(ws.commit_errors));
  if (stats.ok()) {
    std::printf("  db size            %.1f MB, %llu events, %llu companies\n",
                static_cast<double>(stats->db_size_bytes) / 1e6,
                static_cast<unsigned long long>(stats->events_stored),
                static_cast<unsigned long long>(stats->companies_stored));
  }
  std::printf("  SQLite heap peak   %.1f MB\n",
              static_cast<double>(sqlite3_memory_highwater(0)) / 1e6);
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto tv = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  std::printf(
      "  process CPU        user %.2f s + sys %.2f s (all threads, "
      "incl. event generation)\n",
      tv(usage.ru_utime), tv(usage.ru_stime));
  double writer_cpu_total;
  {
    absl::MutexLock lock(&mu);
    writer_cpu_total = writer_cpu;
  }
  const double n = static_cast<double>(flags.events);
  std::printf(
      "  thread CPU         writer %.2f s (%.1f us/event), producer "
      "%.2f s (%.1f us/event, event generation)\n",
      writer_cpu_total, 1e6 * writer_cpu_total / n, producer_cpu,
      1e6 * producer_cpu / n);
  std::printf(
      "  RSS at end         anon %.1f MB, file %.1f MB, shmem %.1f MB\n",
      static_cast<double>(ProcStatusKb("RssAnon")) / 1024.0,
      static_cast<double>(ProcStatusKb("RssFile")) / 1024.0,
      static_cast<double>(ProcStatusKb("RssShmem")) / 1024.0);
  std::printf("  peak RSS (VmHWM)   %.1f MB\n",
              static_cast<double>(hwm_kb) / 1024.0);

  if (flags.replay) {
    Replay(store->get(), flags.events);
    std::printf("  peak RSS incl. replay %.1f MB\n",
                static_cast<double>(ProcStatusKb("VmHWM")) / 1024.0);
  }

  store->reset();
  if (!flags.keep) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      unlink((path + suffix).c_str());
    }
    rmdir(dir_template.c_str());
  } else {
    std::printf("  kept               %s\n", path.c_str());
  }
  summary.events_per_second = static_cast<double>(ws.events) / seconds;
  summary.commit_mean_ms =
      ws.latency_count ? 1e3 * ws.latency_sum_seconds / ws.latency_count : 0.0;
  summary.commit_p99_ms =
      1e3 * Histogram::Quantile(ws.latency_bucket_bounds_seconds,
                                ws.latency_bucket_counts, 0.99);
  summary.push_to_commit_p99_ms = 1e3 * Percentile(&lat, 0.99);
  summary.writer_us_per_event = 1e6 * writer_cpu_total / n;
  summary.ok = ws.events == static_cast<uint64_t>(flags.events);
  return summary;
}

// Each store in turn, then the figures side by side.
int RunAll(const Flags& flags) {
  std::unique_ptr<testing::PostgresServer> server;
  std::vector<Summary> summaries;
  for (const std::string& backend : flags.backends) {
    std::string url;
    if (backend == "postgres") {
      url = flags.postgres_url;
      if (url.empty()) {
        // A throwaway server with durable commits (the test fixture's
        // fsync=off would flatter PostgreSQL against SQLite's fsync).
        testing::PostgresServer::Options options;
        options.settings = {"fsync=on", "synchronous_commit=on"};
        auto started = testing::PostgresServer::Start(options);
        if (!started.ok()) {
          std::fprintf(stderr, "starting PostgreSQL: %s\n",
                       started.status().ToString().c_str());
          return 1;
        }
        server = *std::move(started);
        absl::StatusOr<std::string> db = server->CreateDatabase();
        if (!db.ok()) {
          std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
          return 1;
        }
        url = *db;
        std::printf(
            "PostgreSQL started in %s, port %d (fsync=on, "
            "synchronous_commit=on)\n",
            server->dir().c_str(), server->port());
      }
    }
    summaries.push_back(Run(flags, url));
  }
  std::printf(
      "\n| store | events/s | commit mean | commit p99 | "
      "push->commit p99 | writer CPU |\n|---|---|---|---|---|---|\n");
  bool ok = true;
  for (const Summary& s : summaries) {
    std::printf("| %s | %.0f | %.1f ms | %.1f ms | %.1f ms | %.1f us/event |\n",
                s.store.c_str(), s.events_per_second, s.commit_mean_ms,
                s.commit_p99_ms, s.push_to_commit_p99_ms,
                s.writer_us_per_event);
    ok = ok && s.ok;
  }
  return ok ? 0 : 2;
}

}  // namespace
}  // namespace chstream::storage

int main(int argc, char** argv) {
  chstream::storage::Flags flags;
  if (!chstream::storage::ParseFlags(argc, argv, &flags)) {
    std::fprintf(
        stderr,
        "usage: storage_writer_bench [--events=N] [--companies=N] "
        "[--sync_full] [--dir=DIR] [--keep] [--noreplay] [--queue_capacity=N] "
        "[--max_batch=N] [--max_delay_ms=X] [--rate=R] [--postgres_url=URL] "
        "[--backends=sqlite,postgres]\n");
    return 1;
  }
  return chstream::storage::RunAll(flags);
}
