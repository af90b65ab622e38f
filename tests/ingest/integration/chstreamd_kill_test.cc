// Crash safety of the real chstreamd binary: it follows a simulator running
// in this test process (3000 events at 500/s, with chunking, malformed-line
// and connection-close faults), and is SIGKILLed at random moments (seeded)
// 5-10 times and restarted each time, then left to finish. The SQLite file
// must end with exactly the simulator's log: no gap, no duplicate, positions
// dense.
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <climits>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "ingest/simulator/event_generator.h"
#include "ingest/simulator/simulator.h"
#include "storage/store.h"
#include "tests/ingest/integration/ingest_harness.h"
#include "tests/testing/child_process.h"

namespace chstream::ingest::testing {
namespace {

constexpr char kChstreamd[] = "server/chstreamd";  // in runfiles
constexpr char kStream[] = "companies";

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

// The last `n` lines of `text`.
std::string Tail(const std::string& text, int n) {
  size_t at = text.size();
  while (n-- > 0 && at > 0) {
    at = text.rfind('\n', at - 1);
    if (at == std::string::npos) return text;
  }
  return text.substr(at);
}

using ::chstream::testing::ChildProcess;

std::string LogTail(const ChildProcess& child) {
  return Tail(child.Output(), 30);
}

// The request targets of the connection attempts chstreamd logged, in order.
std::vector<std::string> Targets(const ChildProcess& child) {
  std::vector<std::string> out;
  std::istringstream in(child.Output());
  std::string line;
  while (std::getline(in, line)) {
    if (JsonStringField(line, "msg") == "connecting to upstream") {
      out.push_back(JsonStringField(line, "target"));
    }
  }
  return out;
}

// The stream's committed timepoint, read through a separate read-only
// connection while chstreamd writes (0 before anything is committed).
int64_t CommittedTimepoint(const std::string& db_path) {
  sqlite3* db = nullptr;
  int64_t out = 0;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(
            db, "SELECT last_timepoint FROM stream_state WHERE stream = ?1", -1,
            &stmt, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(stmt, 1, kStream, -1, SQLITE_STATIC);
      if (sqlite3_step(stmt) == SQLITE_ROW) out = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

int64_t EventsSent(const sim::Simulator& sim) {
  const sim::Stats stats = sim.GetStats();
  auto it = stats.events_sent.find(kStream);
  return it == stats.events_sent.end() ? 0 : it->second;
}

TEST(ChstreamdKillTest, RandomSigkillsLoseAndDuplicateNothing) {
  constexpr int64_t kTotal = 3000;
  sim::Options so = SimOptions(kTotal, /*initial=*/0, /*rate=*/500);
  so.faults.split_random = 11;
  so.faults.malformed_every = 97;
  so.faults.close_after_events = 1500;
  so.faults.close_style = sim::CloseStyle::kTruncate;
  so.faults.close_mid_line = true;
  so.heartbeat_interval = absl::Milliseconds(200);
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));

  char resolved[PATH_MAX];
  ASSERT_NE(::realpath(kChstreamd, resolved), nullptr)
      << kChstreamd << " not found in the runfiles";
  const std::string binary = resolved;
  const std::string dir = TmpDir();
  const std::string db = TestDbPath();
  // --start_timepoint: with nothing stored yet (the first run, or a run
  // killed before its first commit) start at the first event instead of the
  // head, so that nothing published before the connection is missed. The
  // child runs in TEST_TMPDIR, where there is no .env file to pick up.
  const std::vector<std::string> args = {
      absl::StrCat("--db_path=", db),
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      absl::StrCat("--upstream_url=", sim->url()),
      "--streams=companies",
      absl::StrCat("--start_timepoint=companies:",
                   sim::DefaultFirstTimepoint(sim::StreamKind::kCompanies)),
      "--idle_timeout=5s",
      "--batch_max_delay=2ms",
  };
  const std::vector<std::string> env = {
      absl::StrCat("CH_STREAMING_API_KEY=", kKey),
      "TZ=UTC",
      "PATH=/usr/bin:/bin",
  };

  std::mt19937_64 rng(20240611);
  const int kills = std::uniform_int_distribution<int>(5, 10)(rng);
  int run = 0;
  auto start = [&] {
    return std::make_unique<ChildProcess>(
        binary, args, env, dir,
        absl::StrCat(dir, "/chstreamd-", run++, ".log"));
  };

  const int64_t first_timepoint =
      sim::DefaultFirstTimepoint(sim::StreamKind::kCompanies);
  // Each run must ask for the timepoint after the last one committed.
  auto expected_target = [&](int64_t committed) {
    return absl::StrCat("/companies?timepoint=",
                        committed == 0 ? first_timepoint : committed + 1);
  };
  int resumes_checked = 0;

  for (int k = 0; k < kills; ++k) {
    const int64_t committed_at_start = CommittedTimepoint(db);
    const int64_t requests = sim->GetStats().Requests("/companies", 200);
    std::unique_ptr<ChildProcess> child = start();
    // True once this child has asked the upstream for the stream.
    auto connected = [&] {
      return sim->WaitFor(
          [&](const sim::Stats& s) {
            return s.Requests("/companies", 200) > requests;
          },
          absl::Seconds(20));
    };
    const int moment = std::uniform_int_distribution<int>(0, 9)(rng);
    std::string when;
    if (moment == 0) {
      when = "at once (during start-up)";
    } else if (moment == 1) {
      // As soon as it has asked the upstream for the stream.
      ASSERT_TRUE(connected()) << LogTail(*child);
      when = "right after connecting";
    } else {
      // After a random number of further events reached it (or all of them).
      // EventsSent counts events sent again after each resume, so once it
      // passes kTotal only the connection is waited for: without that wait
      // every later kill would land during start-up and check no resume.
      ASSERT_TRUE(connected()) << LogTail(*child);
      const int64_t target = std::min(
          kTotal, EventsSent(*sim) +
                      std::uniform_int_distribution<int64_t>(50, 600)(rng));
      ASSERT_TRUE(WaitUntil([&] { return EventsSent(*sim) >= target; },
                            absl::Seconds(30)))
          << "events sent " << EventsSent(*sim) << " of " << target << "\n"
          << LogTail(*child);
      when = absl::StrCat("after ", target, " events were sent");
    }
    ASSERT_TRUE(child->Running()) << "chstreamd exited on its own:\n"
                                  << LogTail(*child);
    const int code = child->SignalAndWait(SIGKILL, absl::Seconds(10));
    ASSERT_EQ(code, 128 + SIGKILL) << "kill " << k << " " << when;
    std::cerr << "kill " << k + 1 << "/" << kills << " " << when
              << "; committed timepoint " << CommittedTimepoint(db) << "\n";
    const std::vector<std::string> targets = Targets(*child);
    if (!targets.empty()) {
      EXPECT_EQ(targets.front(), expected_target(committed_at_start))
          << "run " << k;
      ++resumes_checked;
    }
  }
  EXPECT_GE(resumes_checked, kills / 2);

  // The last run is left alone until it has stored everything.
  const int64_t committed_at_start = CommittedTimepoint(db);
  std::unique_ptr<ChildProcess> child = start();
  ASSERT_TRUE(sim->WaitFor(
      [](const sim::Stats& s) {
        auto it = s.events_generated.find(kStream);
        return it != s.events_generated.end() && it->second >= kTotal;
      },
      absl::Seconds(30)));
  const std::vector<sim::Simulator::LogEntry> log = sim->Log(kStream);
  ASSERT_EQ(log.size(), static_cast<size_t>(kTotal));
  ASSERT_TRUE(
      WaitUntil([&] { return CommittedTimepoint(db) >= log.back().timepoint; },
                absl::Seconds(60)))
      << "committed " << CommittedTimepoint(db) << " of "
      << log.back().timepoint << "\n"
      << LogTail(*child);
  ASSERT_TRUE(child->Running()) << LogTail(*child);
  ASSERT_FALSE(Targets(*child).empty());
  EXPECT_EQ(Targets(*child).front(), expected_target(committed_at_start));
  EXPECT_EQ(child->SignalAndWait(SIGTERM, absl::Seconds(20)), 0)
      << LogTail(*child);
  child.reset();

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::Store> store,
                       storage::Store::Open(db));
  EXPECT_TRUE(StoreMatchesLog(*store, kStream, log));
  ASSERT_OK_AND_ASSIGN(std::vector<storage::StreamState> states,
                       store->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].last_timepoint, log.back().timepoint);
  EXPECT_TRUE(states[0].gaps.empty());
  // Malformed lines were dead-lettered (some twice: re-sent after a kill).
  ASSERT_OK_AND_ASSIGN(storage::StoreStats stats, store->Stats());
  EXPECT_GE(stats.dead_letters, 1u);
}

}  // namespace
}  // namespace chstream::ingest::testing
