// PlanCommit (storage/commit_plan.h): the duplicate rule both backends use.
#include "storage/commit_plan.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::MakeEvent;
using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Verifies the three kinds of duplicate (the committed timepoint again, a
// lower one, a repeat inside the batch) and what each stream's progress
// says, with one lookup per stream.
TEST(PlanCommitTest, DropsDuplicatesAgainstCommittedAndEarlierInBatch) {
  std::vector<Event> events = {
      MakeEvent("companies", 11),  // 0: same as committed
      MakeEvent("companies", 12),  // 1: kept
      MakeEvent("filings", 1),     // 2: kept (new stream)
      MakeEvent("companies", 12),  // 3: repeat in the batch
      MakeEvent("companies", 9),   // 4: lower than the batch's 12
      MakeEvent("companies", 13),  // 5: kept
      MakeEvent("officers", 4),    // 6: lower than committed
  };
  std::vector<std::string> looked_up;
  CommitPlan plan =
      PlanCommit(events, [&](std::string_view s) -> std::optional<int64_t> {
        looked_up.emplace_back(s);
        if (s == "companies") return 11;
        if (s == "officers") return 5;
        return std::nullopt;
      });
  EXPECT_THAT(plan.kept, ElementsAre(1, 2, 5));
  EXPECT_THAT(plan.duplicates, UnorderedElementsAre(Pair("companies", 3u),
                                                    Pair("officers", 1u)));
  EXPECT_THAT(looked_up, ElementsAre("companies", "filings", "officers"));
  ASSERT_EQ(plan.progress.size(), 3u);
  EXPECT_TRUE(plan.progress.at("companies").advanced);
  EXPECT_EQ(plan.progress.at("companies").last_kept, 5u);
  EXPECT_EQ(plan.progress.at("companies").floor, 13);
  EXPECT_EQ(plan.progress.at("filings").last_kept, 2u);
  EXPECT_FALSE(plan.progress.at("officers").advanced);
}

TEST(PlanCommitTest, EmptyBatchKeepsNothing) {
  CommitPlan plan = PlanCommit(
      {}, [](std::string_view) -> std::optional<int64_t> { return 1; });
  EXPECT_TRUE(plan.kept.empty());
  EXPECT_TRUE(plan.progress.empty());
  EXPECT_TRUE(plan.duplicates.empty());
}

}  // namespace
}  // namespace chstream::storage
