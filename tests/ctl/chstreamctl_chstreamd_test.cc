// chstreamctl next to the real chstreamd ingesting from the simulator, both
// run as an operator runs them: a backup taken during ingest is consistent
// and checked; restore refuses while chstreamd has the database open,
// succeeds once it is stopped, and the restored store has a new store_id
// that chstreamd keeps when it starts on it.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "storage/store.h"
#include "tests/ctl/ctl_runner.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using testing::CtlResult;
using ::testing::HasSubstr;
using testing::RunCtl;
using testing::WaitUntil;

constexpr char kKey[] = "ctl-test-stream-key";

std::string Dir() { return std::getenv("TEST_TMPDIR"); }

std::vector<std::string> Env() {
  return {"PATH=/usr/bin:/bin", "TZ=UTC",
          absl::StrCat("CH_STREAMING_API_KEY=", kKey)};
}

uint64_t Number(const std::string& output, const std::string& key) {
  uint64_t n = 0;
  return absl::SimpleAtoi(testing::ReportField(output, key), &n) ? n : 0;
}

std::unique_ptr<ChildProcess> StartChstreamd(const std::string& url,
                                             const std::string& db,
                                             const std::string& log) {
  auto child = std::make_unique<ChildProcess>(
      "server/chstreamd",
      std::vector<std::string>{
          "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
          absl::StrCat("--upstream_url=", url), absl::StrCat("--db_path=", db)},
      Env(), Dir(), log);
  EXPECT_TRUE(child->started());
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(child->Output(), "chstreamd serving"); },
      absl::Seconds(30)))
      << child->Output();
  return child;
}

// The live head as chstreamctl check (--quick) sees it.
uint64_t LiveHead(const std::string& db) {
  return Number(RunCtl({"check", "--quick", "--db_path=" + db}).output,
                "head_position");
}

TEST(ChstreamctlChstreamdTest, BackupDuringIngestAndRestoreWhenStopped) {
  ingest::sim::Options options;
  options.keys = {kKey};
  options.companies_rate = 300;
  options.initial_events_per_stream = 3000;
  options.heartbeat_interval = absl::Milliseconds(200);
  options.faults.malformed_every = 97;
  auto sim = ingest::sim::Simulator::Start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();

  const std::string db = Dir() + "/live.db";
  const std::string copy = Dir() + "/live.backup.db";
  auto chstreamd = StartChstreamd((*sim)->url(), db, Dir() + "/d1.log");
  ASSERT_TRUE(
      WaitUntil([&] { return LiveHead(db) >= 2000; }, absl::Seconds(60)));

  CtlResult backup = RunCtl({"backup", "--db_path=" + db, "--out=" + copy});
  ASSERT_EQ(backup.exit_code, 0) << backup.output;
  const uint64_t copy_head = Number(backup.output, "head_position");
  EXPECT_GE(copy_head, 2000u);
  // chstreamd kept ingesting past the backup point.
  EXPECT_TRUE(WaitUntil([&] { return LiveHead(db) > copy_head + 100; },
                        absl::Seconds(60)));
  CtlResult check = RunCtl({"check", "--db_path=" + copy});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(Number(check.output, "head_position"), copy_head);

  // The simulator's malformed lines are dead letters.
  CtlResult dead = RunCtl({"dead-letters", "--db_path=" + db, "--limit=3"});
  EXPECT_EQ(dead.exit_code, 0) << dead.output;
  EXPECT_THAT(dead.output, HasSubstr("  companies  "));
  EXPECT_THAT(dead.output, HasSubstr(" bytes)"));

  CtlResult refused = RunCtl({"restore", "--from=" + copy, "--db_path=" + db});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("is in use by another process"));

  EXPECT_EQ(chstreamd->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
  chstreamd.reset();
  std::string old_id;
  {
    // Every event up to the copy's head is the live one.
    auto live = storage::Store::Open(db);
    ASSERT_TRUE(live.ok()) << live.status();
    old_id = (*live)->store_id();
    auto copied = storage::Store::Open(copy);
    ASSERT_TRUE(copied.ok()) << copied.status();
    EXPECT_EQ((*copied)->store_id(), old_id);
    ASSERT_EQ((*copied)->HeadPosition(), copy_head);
    uint64_t after = 0;
    while (after < copy_head) {
      auto a = (*live)->ReadPage(after, copy_head, storage::Filter{}, 1000);
      auto b = (*copied)->ReadPage(after, copy_head, storage::Filter{}, 1000);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->scanned_through, b->scanned_through);
      ASSERT_TRUE(a->events == b->events) << "after " << after;
      ASSERT_GT(a->scanned_through, after);
      after = a->scanned_through;
    }
  }

  CtlResult restored = RunCtl({"restore", "--from=" + copy, "--db_path=" + db});
  ASSERT_EQ(restored.exit_code, 0) << restored.output;
  const std::string new_id = testing::ReportField(restored.output, "store_id");
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(Number(restored.output, "head_position"), copy_head);

  // chstreamd starts on the restored file, keeps its store_id and resumes
  // ingest from the backup point.
  chstreamd = StartChstreamd((*sim)->url(), db, Dir() + "/d2.log");
  EXPECT_TRUE(
      WaitUntil([&] { return LiveHead(db) > copy_head; }, absl::Seconds(60)));
  EXPECT_EQ(
      testing::ReportField(
          RunCtl({"check", "--quick", "--db_path=" + db}).output, "store_id"),
      new_id);
  EXPECT_EQ(chstreamd->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
