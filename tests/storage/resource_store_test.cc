// The resources table of storage/store.h: the current state of every
// resource keyed by resource_uri (GetResource) and a company's resources by
// kind, paged (ListCompanyResources), written in the same transaction as the
// events, on both backends (a real SQLite file; a real PostgreSQL server,
// tests/storage/backends.h).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sqlite.h"
#include "storage/store.h"
#include "tests/storage/backends.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::Backend;
using ::chstream::storage::testing::BackendKind;
using ::chstream::storage::testing::CompanyEvent;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::SqliteBackend;
using ::chstream::storage::testing::TestTime;
using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kOfficerUri[] =
    "/company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc";

// An event about the resource at `uri` (kind, company and data given).
Event ResourceEvent(const std::string& stream, int64_t timepoint,
                    const std::string& kind, const std::string& uri,
                    const std::string& company_number,
                    EventType type = EventType::kChanged) {
  Event e = MakeEvent(stream, timepoint, company_number);
  e.resource_kind = kind;
  e.resource_uri = uri;
  e.type = type;
  return e;
}

Event WithoutData(Event e) {
  e.data_json.clear();
  e.data_pb.clear();
  return e;
}

std::vector<std::string> Uris(const std::vector<ResourceRecord>& rs) {
  std::vector<std::string> out;
  for (const ResourceRecord& r : rs) out.push_back(r.resource_uri);
  return out;
}

class ResourceStoreTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    backend_ = testing::MakeBackend(GetParam());
    ASSERT_OK(backend_->NewLocation());
    ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  }

  // The file of a SQLite store (for the SQLite-only tests).
  const std::string& path() const {
    return static_cast<const SqliteBackend&>(*backend_).path();
  }

  void Commit(std::vector<Event> events) {
    Batch batch;
    batch.events = std::move(events);
    ASSERT_OK(store_->Commit(std::move(batch), TestTime(999)));
  }

  std::optional<ResourceRecord> Get(const std::string& uri) {
    auto r = store_->GetResource(uri);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : std::nullopt;
  }

  ResourcePage List(const std::string& company,
                    std::vector<std::string> kinds = {},
                    std::optional<ResourceCursor> after = std::nullopt,
                    size_t limit = 100, bool include_deleted = false) {
    auto page = store_->ListCompanyResources(company, kinds, after, limit,
                                             include_deleted);
    EXPECT_THAT(page, IsOk());
    return page.ok() ? *std::move(page) : ResourcePage{};
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<EventStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ResourceStoreTest, testing::AllBackends(),
                         testing::BackendName);

TEST_P(ResourceStoreTest, RecordRoundTripsEveryField) {
  Event e = ResourceEvent("officers", 6521990, "company-officers", kOfficerUri,
                          "07217743");
  e.received_at = TestTime(77);
  Commit({MakeEvent("filings", 1), e});
  std::optional<ResourceRecord> r = Get(kOfficerUri);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->resource_uri, kOfficerUri);
  EXPECT_EQ(r->resource_kind, "company-officers");
  EXPECT_EQ(r->company_number, "07217743");
  EXPECT_FALSE(r->deleted);
  EXPECT_EQ(r->last_timepoint, 6521990);
  EXPECT_EQ(r->last_position, 2u);
  EXPECT_EQ(r->updated_at, TestTime(77));
  EXPECT_EQ(r->data_json, "");  // the data is stored once, as data_pb
  EXPECT_EQ(r->data_pb, e.data_pb);
  EXPECT_FALSE(Get("/company/07217743/appointments/other").has_value());
  EXPECT_FALSE(Get("").has_value());
}

// Verifies the companies rule for every resource: a deleted event marks the
// resource deleted and keeps the last data when it carries none; a later
// changed event revives it; the data is the event's (stored once).
TEST_P(ResourceStoreTest, ChangedDeletedChangedKeepsLastDataAndRevives) {
  Event v1 =
      ResourceEvent("officers", 1, "company-officers", kOfficerUri, "07217743");
  Commit({v1});
  Event gone =
      WithoutData(ResourceEvent("officers", 2, "company-officers", kOfficerUri,
                                "07217743", EventType::kDeleted));
  Commit({gone});
  std::optional<ResourceRecord> r = Get(kOfficerUri);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->deleted);
  EXPECT_EQ(r->last_timepoint, 2);
  EXPECT_EQ(r->last_position, 2u);
  EXPECT_EQ(r->data_pb, v1.data_pb);  // from position 1

  // A deleted event with data replaces the data.
  Event gone_with_data =
      ResourceEvent("officers", 3, "company-officers", kOfficerUri, "07217743",
                    EventType::kDeleted);
  Commit({gone_with_data});
  r = Get(kOfficerUri);
  EXPECT_TRUE(r->deleted);
  EXPECT_EQ(r->data_pb, gone_with_data.data_pb);

  Event back =
      ResourceEvent("officers", 4, "company-officers", kOfficerUri, "07217743");
  Commit({back});
  r = Get(kOfficerUri);
  EXPECT_FALSE(r->deleted);
  EXPECT_EQ(r->last_position, 4u);
  EXPECT_EQ(r->data_pb, back.data_pb);

  // Stored once: the row refers to the event, it holds no copy.
  ASSERT_OK_AND_ASSIGN(
      std::string data_position,
      backend_->QueryValue(
          "SELECT data_position FROM resources WHERE resource_uri = "
          "'/company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc'"));
  EXPECT_EQ(data_position, "4");
}

// Verifies that within one batch the last event of a resource wins, whatever
// order the upserts run in.
TEST_P(ResourceStoreTest, LatestEventInABatchWins) {
  std::vector<Event> batch;
  for (int i = 1; i <= 5; ++i) {
    batch.push_back(
        ResourceEvent("charges", i, "company-charges",
                      absl::StrCat("/company/0000000", i % 2, "/charges/c"),
                      absl::StrCat("0000000", i % 2)));
  }
  Commit(batch);
  EXPECT_EQ(Get("/company/00000001/charges/c")->last_timepoint, 5);
  EXPECT_EQ(Get("/company/00000000/charges/c")->last_timepoint, 4);
  EXPECT_EQ(Get("/company/00000001/charges/c")->data_pb, batch[4].data_pb);
}

// Verifies that a deleted event without data (and so, for a corporate
// disqualified officer, without data.company_number) keeps the company
// number the resource had.
TEST_P(ResourceStoreTest, EmptyCompanyNumberKeepsThePreviousOne) {
  const std::string uri = "/disqualified-officers/corporate/abc";
  Commit({ResourceEvent("disqualified-officers", 1,
                        "disqualified-officer-corporate", uri, "01234567")});
  Commit({WithoutData(ResourceEvent("disqualified-officers", 2,
                                    "disqualified-officer-corporate", uri, "",
                                    EventType::kDeleted))});
  std::optional<ResourceRecord> r = Get(uri);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->deleted);
  EXPECT_EQ(r->company_number, "01234567");

  // The same within one batch (merged into one row: commit_plan.h).
  const std::string uri2 = "/disqualified-officers/corporate/def";
  const Event with_data =
      ResourceEvent("disqualified-officers", 3,
                    "disqualified-officer-corporate", uri2, "07654321");
  Commit(
      {with_data, WithoutData(ResourceEvent("disqualified-officers", 4,
                                            "disqualified-officer-corporate",
                                            uri2, "", EventType::kDeleted))});
  r = Get(uri2);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->deleted);
  EXPECT_EQ(r->company_number, "07654321");
  EXPECT_EQ(r->last_timepoint, 4);
  EXPECT_EQ(r->data_pb, with_data.data_pb);
}

// Verifies that a later event with another kind or company number for the
// same URI moves the resource in the company listing, and that one keeping
// them (the usual case) updates the row in place.
TEST_P(ResourceStoreTest, KindOrCompanyNumberChangeMovesTheResource) {
  const std::string uri = "/company/01234567/charges/x";
  Commit({ResourceEvent("charges", 1, "company-charges", uri, "01234567")});
  Commit({ResourceEvent("charges", 2, "company-charges", uri, "01234567")});
  EXPECT_EQ(Uris(List("01234567", {"company-charges"}).resources),
            std::vector<std::string>{uri});
  EXPECT_EQ(Get(uri)->last_timepoint, 2);

  Commit({ResourceEvent("charges", 3, "company-charges", uri, "07654321")});
  EXPECT_THAT(List("01234567").resources, IsEmpty());
  EXPECT_EQ(Uris(List("07654321", {"company-charges"}).resources),
            std::vector<std::string>{uri});

  Commit({ResourceEvent("charges", 4, "company-officers", uri, "07654321")});
  EXPECT_THAT(List("07654321", {"company-charges"}).resources, IsEmpty());
  EXPECT_EQ(Uris(List("07654321", {"company-officers"}).resources),
            std::vector<std::string>{uri});
  std::optional<ResourceRecord> r = Get(uri);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->resource_kind, "company-officers");
  EXPECT_EQ(r->company_number, "07654321");
  EXPECT_EQ(r->last_timepoint, 4);
  EXPECT_EQ(r->last_position, 4u);
}

TEST_P(ResourceStoreTest, EventsWithoutResourceUriHaveNoState) {
  Event e = MakeEvent("filings", 1, "02154654");
  e.resource_uri.clear();
  Commit({e});
  ASSERT_OK_AND_ASSIGN(std::string count,
                       backend_->QueryValue("SELECT count(*) FROM resources"));
  EXPECT_EQ(count, "0");
  EXPECT_EQ(store_->HeadPosition(), 1u);
}

// Verifies that the resource upserts are part of the commit: when a later
// statement of the same transaction fails (a dead letter too large for
// SQLite, inserted after the upserts), no resource is left behind.
// SQLite only: the size limit is its own.
TEST_P(ResourceStoreTest, FailedCommitWritesNoResource) {
  if (GetParam() != BackendKind::kSqlite) GTEST_SKIP() << "SQLite's limit";
  store_.reset();
  Store::Options options;
  options.max_value_bytes = 100'000;
  ASSERT_OK_AND_ASSIGN(store_, Store::Open(path(), options));
  Batch batch;
  batch.events.push_back(ResourceEvent("officers", 1, "company-officers",
                                       kOfficerUri, "07217743"));
  DeadLetter big;
  big.stream = "officers";
  big.reason = "too big";
  big.raw = std::string(200'000, 'x');
  batch.dead_letters.push_back(big);
  EXPECT_THAT(store_->Commit(&batch, TestTime()), ::testing::Not(IsOk()));
  EXPECT_FALSE(Get(kOfficerUri).has_value());
  EXPECT_EQ(store_->HeadPosition(), 0u);
  batch.dead_letters.clear();
  ASSERT_OK(store_->Commit(&batch, TestTime()));
  EXPECT_TRUE(Get(kOfficerUri).has_value());
}

TEST_P(ResourceStoreTest, ResourcesSurviveReopen) {
  Commit({ResourceEvent("officers", 1, "company-officers", kOfficerUri,
                        "07217743")});
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_EQ(Get(kOfficerUri)->last_position, 1u);
}

class ListResourcesTest : public ResourceStoreTest {
 protected:
  void SetUp() override {
    ResourceStoreTest::SetUp();
    if (HasFatalFailure()) return;
    std::vector<Event> events;
    int64_t tp = 0;
    const auto add = [&](const std::string& stream, const std::string& kind,
                         const std::string& uri, const std::string& number,
                         EventType type = EventType::kChanged) {
      events.push_back(ResourceEvent(stream, ++tp, kind, uri, number, type));
    };
    const std::string c = "/company/07217743";
    add("officers", "company-officers", c + "/appointments/b", "07217743");
    add("officers", "company-officers", c + "/appointments/a", "07217743");
    add("officers", "company-officers", c + "/appointments/c", "07217743");
    add("persons-with-significant-control", "company-psc-individual",
        c + "/persons-with-significant-control/individual/p1", "07217743");
    add("persons-with-significant-control", "company-psc-corporate",
        c + "/persons-with-significant-control/corporate-entity/p2",
        "07217743");
    add("filings", "filing-history", c + "/filing-history/f1", "07217743");
    add("officers", "company-officers", c + "/appointments/c", "07217743",
        EventType::kDeleted);
    add("officers", "company-officers", "/company/00000001/appointments/x",
        "00000001");
    Commit(events);
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, ListResourcesTest, testing::AllBackends(),
                         testing::BackendName);

TEST_P(ListResourcesTest, EveryKindOrderedByKindThenUri) {
  ResourcePage page = List("07217743");
  EXPECT_THAT(Uris(page.resources),
              ElementsAre("/company/07217743/appointments/a",
                          "/company/07217743/appointments/b",
                          "/company/07217743/persons-with-significant-control/"
                          "corporate-entity/p2",
                          "/company/07217743/persons-with-significant-control/"
                          "individual/p1",
                          "/company/07217743/filing-history/f1"));
  EXPECT_FALSE(page.next.has_value());
  EXPECT_EQ(page.resources[0].resource_kind, "company-officers");
  EXPECT_FALSE(page.resources[0].data_pb.empty());
}

TEST_P(ListResourcesTest, OnlyTheGivenKindsAndDeletedOnRequest) {
  EXPECT_THAT(Uris(List("07217743", {"company-officers"}).resources),
              ElementsAre("/company/07217743/appointments/a",
                          "/company/07217743/appointments/b"));
  ResourcePage with_deleted =
      List("07217743", {"company-officers"}, std::nullopt, 100, true);
  EXPECT_THAT(Uris(with_deleted.resources),
              ElementsAre("/company/07217743/appointments/a",
                          "/company/07217743/appointments/b",
                          "/company/07217743/appointments/c"));
  EXPECT_TRUE(with_deleted.resources[2].deleted);
  // Kinds in any order, repeated: the result is ordered and has no repeat.
  EXPECT_THAT(
      Uris(List("07217743", {"company-psc-individual", "company-officers",
                             "company-psc-corporate", "company-officers"})
               .resources),
      ElementsAre("/company/07217743/appointments/a",
                  "/company/07217743/appointments/b",
                  "/company/07217743/persons-with-significant-control/"
                  "corporate-entity/p2",
                  "/company/07217743/persons-with-significant-control/"
                  "individual/p1"));
  EXPECT_THAT(List("07217743", {"company-charges"}).resources, IsEmpty());
  EXPECT_THAT(List("99999999").resources, IsEmpty());
}

// Verifies that paging with every page size returns each resource exactly
// once, in order, with and without a kinds list.
TEST_P(ListResourcesTest, PagesCoverEverythingOnceInOrder) {
  for (const std::vector<std::string>& kinds :
       std::vector<std::vector<std::string>>{
           {},
           {"filing-history", "company-officers", "company-psc-individual",
            "company-psc-corporate"}}) {
    const std::vector<std::string> all =
        Uris(List("07217743", kinds, std::nullopt, 100, true).resources);
    ASSERT_EQ(all.size(), 6u);
    for (size_t limit = 1; limit <= 7; ++limit) {
      SCOPED_TRACE(absl::StrCat("limit ", limit, " kinds ", kinds.size()));
      std::vector<std::string> seen;
      std::optional<ResourceCursor> after;
      int pages = 0;
      do {
        ResourcePage page = List("07217743", kinds, after, limit, true);
        EXPECT_LE(page.resources.size(), limit);
        for (const std::string& uri : Uris(page.resources)) {
          seen.push_back(uri);
        }
        after = page.next;
        ASSERT_LT(++pages, 10);
      } while (after.has_value());
      EXPECT_EQ(seen, all);
    }
  }
}

TEST_P(ListResourcesTest, ZeroLimitIsInvalid) {
  EXPECT_THAT(
      store_->ListCompanyResources("07217743", {}, std::nullopt, 0, false),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

// Verifies that the index serves both list queries (no scan of the table or
// of a company's other kinds). SQLite's plans.
TEST_P(ListResourcesTest, ListQueriesUseTheCompanyIndex) {
  if (GetParam() != BackendKind::kSqlite) GTEST_SKIP() << "SQLite's plans";
  ASSERT_OK_AND_ASSIGN(Database db,
                       Database::Open(path(), SQLITE_OPEN_READONLY));
  for (const char* where :
       {"r.company_number = '1' AND (r.resource_kind, r.resource_uri) > "
        "('a', 'b') ORDER BY r.resource_kind, r.resource_uri",
        "r.company_number = '1' AND r.resource_kind = 'a' AND "
        "r.resource_uri > 'b' ORDER BY r.resource_uri"}) {
    ASSERT_OK_AND_ASSIGN(
        Statement st,
        db.Prepare(absl::StrCat("EXPLAIN QUERY PLAN SELECT r.resource_uri, "
                                "r.deleted, e.data_pb FROM resources r LEFT "
                                "JOIN events e ON e.position = "
                                "r.data_position WHERE r.deleted = 0 AND ",
                                where),
                   false));
    std::string plan;
    while (true) {
      ASSERT_OK_AND_ASSIGN(bool row, st.Step());
      if (!row) break;
      plan.append(st.ColumnText(3)).append("\n");
    }
    EXPECT_THAT(plan, HasSubstr("USING INDEX resources_company")) << plan;
    EXPECT_THAT(plan, ::testing::Not(HasSubstr("TEMP B-TREE"))) << plan;
  }
}

// Verifies that company-profile events are resources too.
TEST_P(ResourceStoreTest, CompanyProfilesAreResources) {
  Commit({CompanyEvent(1, "SC571653", "FC KIOSKS LTD")});
  std::optional<ResourceRecord> r = Get("/company/SC571653");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->resource_kind, "company-profile");
  EXPECT_EQ(r->company_number, "SC571653");
  EXPECT_THAT(Uris(List("SC571653", {"company-profile"}).resources),
              ElementsAre("/company/SC571653"));
}

}  // namespace
}  // namespace chstream::storage
