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
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/event.h"
#include "storage/event_writer.h"
#include "storage/histogram.h"
#include "storage/postgres/postgres_store.h"
#include "storage/store.h"

namespace chstream::storage {
namespace {

struct Flags {
  int64_t events = 200'000;
  int64_t companies = -1;  // default: = events
  bool sync_full = false;
  std::string dir = "/tmp";
  std::string postgres_url;  // PostgreSQL instead of an SQLite file
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
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name, std::string* out) {
      std::string prefix = absl::StrCat("--", name, "=");
      if (arg.rfind(prefix, 0) != 0) return false;
      *out = arg.substr(prefix.size());
      return true;
    };
    std::string v;
    if (value("events", &v)) {
      if (!absl::SimpleAtoi(v, &flags->events)) return false;
    } else if (value("companies", &v)) {
      if (!absl::SimpleAtoi(v, &flags->companies)) return false;
    } else if (value("dir", &v)) {
      flags->dir = v;
    } else if (value("postgres_url", &v)) {
      flags->postgres_url = v;
    } else if (value("queue_capacity", &v)) {
      if (!absl::SimpleAtoi(v, &flags->queue_capacity)) return false;
    } else if (value("max_batch", &v)) {
      if (!absl::SimpleAtoi(v, &flags->max_batch)) return false;
    } else if (value("max_delay_ms", &v)) {
      if (!absl::SimpleAtod(v, &flags->max_delay_ms)) return false;
    } else if (value("rate", &v)) {
      if (!absl::SimpleAtod(v, &flags->rate) || flags->rate < 0) return false;
    } else if (arg == "--sync_full") {
      flags->sync_full = true;
    } else if (arg == "--noreplay") {
      flags->replay = false;
    } else if (arg == "--keep") {
      flags->keep = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return false;
    }
  }
  if (flags->companies <= 0) flags->companies = flags->events;
  return flags->events > 0;
}

// kB from a "Vm...:   1234 kB" line of /proc/self/status.
int64_t ProcStatusKb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      int64_t kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits.push_back(c);
      }
      if (absl::SimpleAtoi(digits, &kb)) return kb;
    }
  }
  return -1;
}

// A company number for event i: a scrambled walk over `companies` numbers.
std::string CompanyNumber(int64_t i, int64_t companies) {
  const uint64_t k =
      (static_cast<uint64_t>(i % companies) * 2654435761u) % 100'000'000u;
  return absl::StrFormat("%08d", k);
}

// A realistic ~1.2 KB company-profile data object.
std::string DataJson(const std::string& number, int64_t i) {
  std::string json = absl::StrCat(
      R"({"accounts":{"accounting_reference_date":{"day":"31","month":"07"},)",
      R"("last_accounts":{"made_up_to":"2021-07-31","period_end_on":)",
      R"("2021-07-31","period_start_on":"2020-08-01","type":)",
      R"("total-exemption-full"},"next_accounts":{"due_on":"2023-04-30",)",
      R"("period_end_on":"2022-07-31","period_start_on":"2021-08-01"},)",
      R"("next_due":"2023-04-30","next_made_up_to":"2022-07-31"},)",
      R"("can_file":true,"company_name":"BENCH COMPANY )", i,
      R"( LIMITED","company_number":")", number,
      R"(","company_status":"active","confirmation_statement":)",
      R"({"last_made_up_to":"2022-07-19","next_due":"2023-08-02",)",
      R"("next_made_up_to":"2023-07-19"},"date_of_creation":"2017-07-20",)",
      R"("etag":"e861f92b4d7814ad3bbae90536c5ff4c1ac238bb",)",
      R"("jurisdiction":"england-wales","links":{"filing_history":)",
      R"("/company/)", number, R"(/filing-history","officers":"/company/)",
      number, R"(/officers","persons_with_significant_control":)",
      R"("/company/)", number,
      R"(/persons-with-significant-control","self":"/company/)", number,
      R"("},"registered_office_address":{"address_line_1":)",
      R"("Suite 4f, Ingram House","address_line_2":"227 Ingram Street",)",
      R"("country":"England","locality":"London","postal_code":"EC1A 1BB"},)",
      R"("sic_codes":["56290","47110"],"type":"ltd",)",
      R"("has_charges":false,"has_insolvency_history":false})");
  return json;
}

Event MakeEvent(int64_t i, int64_t companies, absl::Time now) {
  const std::string number = CompanyNumber(i, companies);
  Event e;
  e.stream = "companies";
  e.timepoint = 47'000'000 + i;
  e.type = EventType::kChanged;
  e.resource_kind = "company-profile";
  e.resource_id = number;
  e.resource_uri = "/company/" + number;
  e.company_number = number;
  e.published_at = now;
  e.received_at = now;
  e.data_json = DataJson(number, i);
  // Stand-in for the Struct encoding: opaque bytes ~1.3 KB, derived from the
  // JSON (the Struct wire form is a little larger than the JSON text).
  e.data_pb = absl::StrCat(std::string("\x0a\x8f\x0a", 3), e.data_json,
                           std::string(100, '\x12'));
  CompanyFields f;
  f.company_name = absl::StrCat("BENCH COMPANY ", i, " LIMITED");
  f.company_status = "active";
  f.company_type = "ltd";
  f.jurisdiction = "england-wales";
  f.date_of_creation = "2017-07-20";
  f.registered_office_address.address_line_1 = "Suite 4f, Ingram House";
  f.registered_office_address.address_line_2 = "227 Ingram Street";
  f.registered_office_address.locality = "London";
  f.registered_office_address.postal_code = "EC1A 1BB";
  f.registered_office_address.country = "England";
  f.sic_codes = {"56290", "47110"};
  e.company = std::move(f);
  return e;
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
  one_company.company_numbers = {CompanyNumber(events / 2, events)};
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

int Run(const Flags& flags) {
  std::string dir_template = flags.dir + "/chstream-bench-XXXXXX";
  if (mkdtemp(dir_template.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string path = dir_template + "/bench.db";
  Store::Options store_options;
  store_options.synchronous_full = flags.sync_full;
  absl::StatusOr<std::unique_ptr<EventStore>> store;
  if (!flags.postgres_url.empty()) {
    store = PostgresStore::Open(flags.postgres_url);
  } else {
    store = Store::Open(path, store_options);
  }
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
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
    writer.Push(MakeEvent(i, flags.companies, clock->Now()), &waited);
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
  std::printf("  store              %s\n",
              flags.postgres_url.empty() ? "SQLite" : "PostgreSQL");
  std::printf("  synchronous        %s\n", flags.sync_full ? "FULL" : "NORMAL");
  std::printf("  event payload      data_json %zu B + data_pb %zu B\n",
              DataJson(CompanyNumber(0, 1), 0).size(),
              MakeEvent(0, 1, start).data_pb.size());
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
  return ws.events == static_cast<uint64_t>(flags.events) ? 0 : 2;
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
        "[--max_batch=N] [--max_delay_ms=X] [--rate=R] [--postgres_url=URL]\n");
    return 1;
  }
  return chstream::storage::Run(flags);
}
