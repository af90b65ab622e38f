// storage/commit_plan.h: the duplicate rule both backends use, and the merge
// of a batch's current-state changes into one row per company and resource.
#include "storage/commit_plan.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::CompanyEvent;
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

// Verifies that a company's events merge as if applied one by one: fields
// from the last event with fields, data from the last with data, the rest
// from the last event; companies in key order; positions from the kept
// index; events that are not company profiles ignored.
TEST(MergeCompanyChangesTest, OneChangePerCompanyAsIfAppliedInOrder) {
  Event deleted_bare = MakeEvent("companies", 4, "A0000001");
  deleted_bare.type = EventType::kDeleted;
  deleted_bare.data_json.clear();
  deleted_bare.data_pb.clear();
  Event data_without_fields = MakeEvent("companies", 6, "B0000002");
  std::vector<Event> events = {
      CompanyEvent(1, "B0000002", "B ONE"),  // 0
      CompanyEvent(2, "A0000001", "A ONE"),  // 1: dropped, not in `kept`
      CompanyEvent(3, "A0000001", "A TWO"),  // 2
      MakeEvent("filings", 5, "A0000001"),   // 3: not a company profile
      deleted_bare,                          // 4
      data_without_fields,                   // 5
  };
  const std::vector<size_t> kept = {0, 2, 3, 4, 5};  // positions 10..14
  std::vector<CompanyChange> changes = MergeCompanyChanges(events, kept, 10);
  ASSERT_EQ(changes.size(), 2u);
  const CompanyChange& a = changes[0];
  EXPECT_EQ(a.company_number, "A0000001");
  EXPECT_EQ(a.fields, &events[2]);
  EXPECT_EQ(a.data_position, 11u);
  EXPECT_EQ(a.last, &events[4]);
  EXPECT_EQ(a.last_position, 13u);
  const CompanyChange& b = changes[1];
  EXPECT_EQ(b.company_number, "B0000002");
  EXPECT_EQ(b.fields, &events[0]);
  EXPECT_EQ(b.data_position, 14u);
  EXPECT_EQ(b.last, &events[5]);
  EXPECT_EQ(b.last_position, 14u);

  // A company whose only event carries neither fields nor data.
  changes = MergeCompanyChanges({deleted_bare}, {0}, 1);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].fields, nullptr);
  EXPECT_EQ(changes[0].data_position, 0u);
}

// The same for resources: the last non-empty company number stays.
TEST(MergeResourceChangesTest, OneChangePerResourceAsIfAppliedInOrder) {
  Event first = MakeEvent("charges", 1, "01234567");
  first.resource_uri = "/company/01234567/charges/x";
  Event bare = first;
  bare.timepoint = 2;
  bare.type = EventType::kDeleted;
  bare.company_number.clear();
  bare.data_json.clear();
  bare.data_pb.clear();
  Event other = MakeEvent("charges", 3, "00000001");
  other.resource_uri = "/company/00000001/charges/y";
  Event no_uri = MakeEvent("charges", 4);
  no_uri.resource_uri.clear();
  std::vector<Event> events = {first, other, bare, no_uri};
  std::vector<ResourceChange> changes =
      MergeResourceChanges(events, {0, 1, 2, 3}, 1);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].resource_uri, "/company/00000001/charges/y");
  EXPECT_EQ(changes[0].last_position, 2u);
  const ResourceChange& x = changes[1];
  EXPECT_EQ(x.resource_uri, "/company/01234567/charges/x");
  EXPECT_EQ(x.company_number, "01234567");
  EXPECT_EQ(x.data_position, 1u);
  EXPECT_EQ(x.last, &events[2]);
  EXPECT_EQ(x.last_position, 3u);
}

}  // namespace
}  // namespace chstream::storage
