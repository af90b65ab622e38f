// The EventStore conformance suite: one set of behaviour tests run against
// every backend (SQLite in TEST_TMPDIR; PostgreSQL on a throwaway server
// started by the test, a fresh database per test), followed by the tests of
// what only PostgreSQL has (fencing, NOTIFY, several processes on one
// database, password redaction).
#include <postgresql/libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres/pg_connection.h"
#include "storage/postgres/pg_schema.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite.h"
#include "storage/store.h"
#include "tests/storage/backends.h"
#include "tests/storage/test_util.h"
#include "tests/testing/postgres_server.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::CompanyEvent;
using ::chstream::storage::testing::MakeDeadLetter;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::MakeFilter;
using ::chstream::storage::testing::Positions;
using ::chstream::storage::testing::TestTime;
using ::chstream::storage::testing::Timepoints;
using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using ::chstream::storage::testing::Backend;
using ::chstream::storage::testing::BackendKind;
using ::chstream::storage::testing::PostgresBackend;
using Kind = BackendKind;

class EventStoreTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    backend_ = testing::MakeBackend(GetParam());
    ASSERT_OK(backend_->NewLocation());
    auto store = backend_->Open();
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  void Reopen() {
    store_.reset();
    auto store = backend_->Open();
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  CommitResult CommitEvents(std::vector<Event> events,
                            absl::Time now = TestTime(999)) {
    return testing::CommitEvents(*store_, std::move(events), now);
  }
  std::vector<Event> ReadAll(const Filter& filter = {}) {
    return testing::ReadAll(*store_, filter);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<EventStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, EventStoreTest, testing::AllBackends(),
                         testing::BackendName);

class EventStoreReadTest : public EventStoreTest {
 protected:
  void SetUp() override {
    EventStoreTest::SetUp();
    if (HasFatalFailure()) return;
    const char* streams[] = {"companies", "filings", "officers"};
    const char* numbers[] = {"A0000001", "B0000002", "C0000003", ""};
    std::vector<Event> events;
    for (int i = 0; i < 60; ++i) {
      Event e = MakeEvent(streams[i % 3], 100 + i, numbers[(i / 2) % 4]);
      if (i % 5 == 0) e.type = EventType::kDeleted;
      events.push_back(std::move(e));
    }
    CommitEvents(events);
    all_ = ReadAll();
    ASSERT_EQ(all_.size(), 60u);
  }

  std::vector<Event> Expected(const Filter& f, uint64_t after, uint64_t up_to) {
    std::vector<Event> out;
    for (const Event& e : all_) {
      if (e.position > after && e.position <= up_to && f.Matches(e)) {
        out.push_back(e);
      }
    }
    return out;
  }

  // Pages through (after, up_to] and checks every page's invariants.
  std::vector<Event> PageThrough(const Filter& f, uint64_t after,
                                 uint64_t up_to, size_t max_events,
                                 size_t max_scan) {
    std::vector<Event> out;
    uint64_t cursor = after;
    for (int calls = 0; cursor < up_to; ++calls) {
      EXPECT_LT(calls, 1000) << "no progress";
      if (calls >= 1000) break;
      auto page = store_->ReadPage(cursor, up_to, f, max_events, max_scan);
      EXPECT_THAT(page, IsOk());
      if (!page.ok()) break;
      EXPECT_LE(page->events.size(), max_events);
      EXPECT_GT(page->scanned_through, cursor);
      EXPECT_LE(page->scanned_through, up_to);
      for (const Event& e : page->events) {
        EXPECT_GT(e.position, cursor);
        EXPECT_LE(e.position, page->scanned_through);
        out.push_back(e);
      }
      cursor = page->scanned_through;
    }
    return out;
  }

  std::vector<Event> all_;
};

INSTANTIATE_TEST_SUITE_P(Backends, EventStoreReadTest, testing::AllBackends(),
                         testing::BackendName);

TEST_P(EventStoreTest, EventRoundTripsEveryField) {
  Event e;
  e.stream = "persons-with-significant-control";
  e.timepoint = 9'007'199'254'740'993;  // beyond double precision
  e.type = EventType::kDeleted;
  e.resource_kind = "individual-beneficial-owner";
  e.resource_id = "abc\"def";
  e.resource_uri = "/company/OE000123/persons-with-significant-control/x";
  e.company_number = "OE000123";
  e.published_at = TestTime(123'456);
  e.received_at = absl::FromUnixMicros(-1'234'567);  // before the epoch
  e.fields_changed = {
      "quote\"d",    "back\\slash",      "new\nline", "ctl\x01\x1f",
      "caf\xc3\xa9", "\xf0\x9f\x8f\xa2", "",          "<&>"};
  e.data_json = R"({"name":"Ünïcode ✓","n":[1,2]})";
  e.data_pb = std::string("\x00\xff\x01\x80 bytes\x00", 11);
  e.company = std::nullopt;

  CommitResult result = CommitEvents({e});
  ASSERT_EQ(result.events->size(), 1u);
  EXPECT_EQ((*result.events)[0].position, 1u);

  std::vector<Event> read = ReadAll();
  ASSERT_EQ(read.size(), 1u);
  Event expected = e;
  expected.position = 1;
  expected.data_json = std::string(StoredDataJson(e));
  EXPECT_EQ(read[0], expected);
}

TEST_P(EventStoreTest, EventCompanyFieldIsNotStoredWithTheEvent) {
  Event e = CompanyEvent(5, "SC571653", "FC KIOSKS LTD");
  CommitResult result = CommitEvents({e});
  // The committed (live) copy keeps it; the stored copy does not.
  ASSERT_TRUE((*result.events)[0].company.has_value());
  std::vector<Event> read = ReadAll();
  ASSERT_EQ(read.size(), 1u);
  EXPECT_FALSE(read[0].company.has_value());
  Event expected = e;
  expected.position = 1;
  expected.company.reset();
  expected.data_json = std::string(StoredDataJson(e));
  EXPECT_EQ(read[0], expected);
}

TEST_P(EventStoreTest, CompanyRecordRoundTripsEveryField) {
  Event e = CompanyEvent(42, "SC571653", "FC KIOSKS LTD");
  CompanyFields f;
  f.company_name = "FC \"KIOSKS\" LTD";
  f.company_status = "active";
  f.company_type = "ltd";
  f.jurisdiction = "scotland";
  f.date_of_creation = "2017-07-20";
  f.date_of_cessation = "2024-01-02";
  f.registered_office_address = Address{
      .premises = "Suite 4f",
      .address_line_1 = "Ingram House",
      .address_line_2 = "227 Ingram Street",
      .locality = "Glasgow",
      .region = "Lanarkshire",
      .postal_code = "G1 1DA",
      .country = "Scotland",
      .care_of = "A. Person",
      .po_box = "PO 12",
  };
  f.sic_codes = {"56290", "47110", "with \"quote\""};
  e.company = f;
  e.received_at = TestTime(77);
  CommitEvents({e});

  ASSERT_OK_AND_ASSIGN(std::optional<CompanyRecord> record,
                       store_->GetCompany("SC571653"));
  ASSERT_TRUE(record.has_value());
  CompanyRecord expected;
  expected.company_number = "SC571653";
  expected.fields = f;
  expected.deleted = false;
  expected.last_timepoint = 42;
  expected.last_position = 1;
  expected.updated_at = TestTime(77);
  expected.data_json = std::string(StoredDataJson(e));
  expected.data_pb = e.data_pb;
  EXPECT_EQ(*record, expected);

  ASSERT_OK_AND_ASSIGN(auto missing, store_->GetCompany("00000000"));
  EXPECT_FALSE(missing.has_value());
}

TEST_P(EventStoreTest, DeadLettersRoundTripNewestFirst) {
  DeadLetter a{.stream = "filings",
               .received_at = TestTime(1),
               .reason = "invalid JSON: unexpected '}'",
               .raw = std::string("{\"a\":\x00\xff}", 8),
               .timepoint = std::nullopt};
  DeadLetter b{.stream = "companies",
               .received_at = TestTime(2),
               .reason = "missing resource_kind",
               .raw = R"({"event":{"timepoint":5}})",
               .timepoint = 5};
  Batch batch;
  batch.dead_letters = {a, b};
  ASSERT_OK_AND_ASSIGN(CommitResult result,
                       store_->Commit(std::move(batch), TestTime()));
  EXPECT_EQ(result.dead_letters, 2u);
  EXPECT_TRUE(result.events->empty());
  EXPECT_EQ(store_->HeadPosition(), 0u);

  ASSERT_OK_AND_ASSIGN(auto dead, store_->ReadDeadLetters(10));
  EXPECT_THAT(dead, ElementsAre(b, a));
  ASSERT_OK_AND_ASSIGN(auto one, store_->ReadDeadLetters(1));
  EXPECT_THAT(one, ElementsAre(b));
  ASSERT_OK_AND_ASSIGN(auto none, store_->ReadDeadLetters(0));
  EXPECT_THAT(none, IsEmpty());
}

TEST_P(EventStoreTest, StreamStatesAndGapsRoundTrip) {
  Event c1 = MakeEvent("companies", 10);
  Event c2 = MakeEvent("companies", 12);
  c2.published_at = TestTime(5'000);
  Event f1 = MakeEvent("filings", 3);
  CommitEvents({c1, f1, c2}, TestTime(100));

  Batch batch;
  batch.gaps = {Gap{"companies", 12, TestTime(200)},
                Gap{"charges", 77, TestTime(201)},
                Gap{"companies", 40, TestTime(202)}};
  ASSERT_OK_AND_ASSIGN(CommitResult r,
                       store_->Commit(std::move(batch), TestTime(300)));
  EXPECT_EQ(r.gaps, 3u);

  ASSERT_OK_AND_ASSIGN(std::vector<StreamState> states,
                       store_->LoadStreamStates());
  StreamState charges{.stream = "charges",
                      .last_timepoint = std::nullopt,
                      .last_published_at = absl::Time(),
                      .updated_at = absl::Time(),
                      .gaps = {Gap{"charges", 77, TestTime(201)}}};
  StreamState companies{.stream = "companies",
                        .last_timepoint = 12,
                        .last_published_at = TestTime(5'000),
                        .updated_at = TestTime(100),
                        .gaps = {Gap{"companies", 12, TestTime(200)},
                                 Gap{"companies", 40, TestTime(202)}}};
  StreamState filings{.stream = "filings",
                      .last_timepoint = 3,
                      .last_published_at = f1.published_at,
                      .updated_at = TestTime(100),
                      .gaps = {}};
  EXPECT_THAT(states, ElementsAre(charges, companies, filings));
}

// Verifies the three kinds of duplicate (same timepoint again, a lower
// timepoint, a repeat inside the batch) are dropped and counted, and that
// positions stay dense.
TEST_P(EventStoreTest, CommitDropsDuplicatesAndKeepsPositionsDense) {
  CommitEvents({MakeEvent("companies", 10), MakeEvent("companies", 11),
                MakeEvent("filings", 11)});
  EXPECT_EQ(store_->HeadPosition(), 3u);

  CommitResult r =
      CommitEvents({MakeEvent("companies", 11),  // same as committed
                    MakeEvent("companies", 5),   // lower than committed
                    MakeEvent("companies", 12),  // new
                    MakeEvent("filings", 12),    // new (other stream)
                    MakeEvent("companies", 12),  // repeated in the batch
                    MakeEvent("companies", 9),   // lower than the batch's 12
                    MakeEvent("companies", 13),  // new
                    MakeEvent("filings", 11)});  // same as committed
  EXPECT_THAT(Positions(*r.events), ElementsAre(4, 5, 6));
  EXPECT_THAT(Timepoints(*r.events), ElementsAre(12, 12, 13));
  EXPECT_THAT(r.duplicates,
              UnorderedElementsAre(Pair("companies", 4u), Pair("filings", 1u)));
  EXPECT_EQ(store_->HeadPosition(), 6u);

  std::vector<Event> all = ReadAll();
  EXPECT_THAT(Positions(all), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(Timepoints(all), ElementsAre(10, 11, 11, 12, 12, 13));
}

TEST_P(EventStoreTest, BatchOfOnlyDuplicatesChangesNothing) {
  CommitEvents({MakeEvent("companies", 10)}, TestTime(1));
  CommitResult r = CommitEvents(
      {MakeEvent("companies", 10), MakeEvent("companies", 3)}, TestTime(2));
  EXPECT_THAT(*r.events, IsEmpty());
  EXPECT_THAT(r.duplicates, UnorderedElementsAre(Pair("companies", 2u)));
  EXPECT_EQ(store_->HeadPosition(), 1u);
  ASSERT_OK_AND_ASSIGN(auto states, store_->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].last_timepoint, 10);
  EXPECT_EQ(states[0].updated_at, TestTime(1));
}

TEST_P(EventStoreTest, EmptyBatchIsANoOp) {
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Batch{}, TestTime()));
  ASSERT_NE(r.events, nullptr);
  EXPECT_THAT(*r.events, IsEmpty());
  EXPECT_EQ(store_->HeadPosition(), 0u);
}

TEST_P(EventStoreTest, CompanyChangedThenDeletedKeepsLastData) {
  Event v1 = CompanyEvent(1, "SC571653", "FIRST NAME LTD");
  v1.received_at = TestTime(10);
  CommitEvents({v1});
  ASSERT_OK_AND_ASSIGN(auto c, store_->GetCompany("SC571653"));
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->deleted);
  EXPECT_EQ(c->fields.company_name, "FIRST NAME LTD");
  EXPECT_EQ(c->data_json, std::string(StoredDataJson(v1)));
  EXPECT_EQ(c->data_pb, v1.data_pb);

  // Deleted without data: flagged, previous data and fields kept,
  // bookkeeping updated.
  Event del = MakeEvent("companies", 2, "SC571653");
  del.type = EventType::kDeleted;
  del.data_json.clear();
  del.data_pb.clear();
  del.received_at = TestTime(20);
  CommitEvents({del});
  ASSERT_OK_AND_ASSIGN(c, store_->GetCompany("SC571653"));
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->deleted);
  EXPECT_EQ(c->fields, *v1.company);
  EXPECT_EQ(c->data_json, std::string(StoredDataJson(v1)));
  EXPECT_EQ(c->data_pb, v1.data_pb);
  EXPECT_EQ(c->last_timepoint, 2);
  EXPECT_EQ(c->last_position, 2u);
  EXPECT_EQ(c->updated_at, TestTime(20));

  // Changed again: undeleted with the new data.
  Event v2 = CompanyEvent(3, "SC571653", "SECOND NAME LTD");
  CommitEvents({v2});
  ASSERT_OK_AND_ASSIGN(c, store_->GetCompany("SC571653"));
  EXPECT_FALSE(c->deleted);
  EXPECT_EQ(c->fields.company_name, "SECOND NAME LTD");
  EXPECT_EQ(c->data_pb, v2.data_pb);

  // Deleted with data: the data it carries is stored.
  Event del2 =
      CompanyEvent(4, "SC571653", "FINAL NAME LTD", EventType::kDeleted);
  CommitEvents({del2});
  ASSERT_OK_AND_ASSIGN(c, store_->GetCompany("SC571653"));
  EXPECT_TRUE(c->deleted);
  EXPECT_EQ(c->fields.company_name, "FINAL NAME LTD");
  EXPECT_EQ(c->data_json, std::string(StoredDataJson(del2)));
  EXPECT_EQ(c->data_pb, del2.data_pb);
  EXPECT_EQ(c->last_position, 4u);

  ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  EXPECT_EQ(stats.companies_stored, 1u);
}

TEST_P(EventStoreTest, LatestEventInABatchWins) {
  Event a1 = CompanyEvent(1, "A0000001", "A ONE");
  Event b1 = CompanyEvent(2, "B0000002", "B ONE");
  Event a2 = CompanyEvent(3, "A0000001", "A TWO");
  Event a3 = MakeEvent("companies", 4, "A0000001");
  a3.type = EventType::kDeleted;
  a3.data_json.clear();
  a3.data_pb.clear();
  CommitEvents({a1, b1, a2, a3});

  ASSERT_OK_AND_ASSIGN(auto a, store_->GetCompany("A0000001"));
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->deleted);
  EXPECT_EQ(a->fields.company_name, "A TWO");
  EXPECT_EQ(a->data_json, std::string(StoredDataJson(a2)));
  EXPECT_EQ(a->data_pb, a2.data_pb);
  EXPECT_EQ(a->last_timepoint, 4);
  EXPECT_EQ(a->last_position, 4u);
  ASSERT_OK_AND_ASSIGN(auto b, store_->GetCompany("B0000002"));
  EXPECT_EQ(b->fields.company_name, "B ONE");
  EXPECT_EQ(b->last_position, 2u);
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  EXPECT_EQ(stats.companies_stored, 2u);
}

TEST_P(EventStoreTest, OnlyCompanyProfileEventsTouchCompanies) {
  Event filing = MakeEvent("filings", 1, "C0000001");
  Event other_kind = MakeEvent("companies", 2, "C0000002");
  other_kind.resource_kind = "something-else";
  Event no_number = CompanyEvent(3, "", "NO NUMBER");
  CommitEvents({filing, other_kind, no_number});
  EXPECT_FALSE(store_->GetCompany("C0000001")->has_value());
  EXPECT_FALSE(store_->GetCompany("C0000002")->has_value());
  EXPECT_FALSE(store_->GetCompany("")->has_value());
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  EXPECT_EQ(stats.companies_stored, 0u);
}

TEST_P(EventStoreTest, ChangedWithoutDataForUnknownCompanyCreatesBareRecord) {
  Event e = MakeEvent("companies", 7, "N0000007");
  e.data_json.clear();
  e.data_pb.clear();
  CommitEvents({e});
  ASSERT_OK_AND_ASSIGN(auto c, store_->GetCompany("N0000007"));
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->deleted);
  EXPECT_EQ(c->fields, CompanyFields{});
  EXPECT_EQ(c->data_json, "");
  EXPECT_EQ(c->last_timepoint, 7);
}

TEST_P(EventStoreReadTest, FiltersMatchBruteForce) {
  std::vector<Filter> filters = {
      Filter{},
      MakeFilter({"filings"}),
      MakeFilter({"filings", "officers"}),
      MakeFilter({}, {"company-profile"}),
      MakeFilter({}, {}, {"B0000002"}),
      MakeFilter({}, {}, {"A0000001", "C0000003"}),
      MakeFilter({}, {}, {""}),
      MakeFilter({}, {}, {}, {EventType::kDeleted}),
      MakeFilter({"companies"}, {}, {"A0000001", "B0000002"},
                 {EventType::kChanged}),
      MakeFilter({"nope"}),
  };
  for (size_t i = 0; i < filters.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("filter #", i));
    const Filter& f = filters[i];
    std::vector<Event> expected = Expected(f, 0, 60);
    if (i != filters.size() - 1) {
      EXPECT_FALSE(expected.empty());
    }
    EXPECT_EQ(ReadAll(f), expected);
    EXPECT_EQ(PageThrough(f, 0, 60, 3, 7), expected);
    EXPECT_EQ(PageThrough(f, 0, 60, 1, 1), expected);
    EXPECT_EQ(PageThrough(f, 17, 43, 4, 5), Expected(f, 17, 43));
  }
}

TEST_P(EventStoreReadTest, BoundsAreExclusiveInclusive) {
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(10, 20, Filter{}, 100));
  EXPECT_THAT(Positions(page.events),
              ElementsAre(11, 12, 13, 14, 15, 16, 17, 18, 19, 20));
  EXPECT_EQ(page.scanned_through, 20u);
}

TEST_P(EventStoreReadTest, UpToIsClampedToHead) {
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(55, 1'000, Filter{}, 100));
  EXPECT_THAT(Positions(page.events), ElementsAre(56, 57, 58, 59, 60));
  EXPECT_EQ(page.scanned_through, 60u);
}

TEST_P(EventStoreReadTest, EmptyRangeReturnsNothing) {
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(30, 30, Filter{}, 100));
  EXPECT_THAT(page.events, IsEmpty());
  EXPECT_EQ(page.scanned_through, 30u);
  ASSERT_OK_AND_ASSIGN(page, store_->ReadPage(60, 100, Filter{}, 100));
  EXPECT_THAT(page.events, IsEmpty());
  EXPECT_EQ(page.scanned_through, 60u);
}

TEST_P(EventStoreReadTest, MaxEventsStopsAtTheLastReturnedEvent) {
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(0, 60, Filter{}, 4));
  EXPECT_THAT(Positions(page.events), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(page.scanned_through, 4u);
}

// Verifies a filter that matches nothing examines at most max_scan rows.
TEST_P(EventStoreReadTest, MaxScanBoundsANarrowFilter) {
  Filter nothing = MakeFilter({"charges"});
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(0, 60, nothing, 100, 25));
  EXPECT_THAT(page.events, IsEmpty());
  EXPECT_EQ(page.scanned_through, 25u);

  Filter filings = MakeFilter({"filings"});
  ASSERT_OK_AND_ASSIGN(page, store_->ReadPage(0, 60, filings, 100, 10));
  EXPECT_THAT(Positions(page.events), ElementsAre(2, 5, 8));
  EXPECT_EQ(page.scanned_through, 10u);
}

// Verifies a company filter is bounded by max_scan like any other.
TEST_P(EventStoreReadTest, CompanyFilterIsBoundedByMaxScan) {
  Filter f = MakeFilter({}, {}, {"C0000003"});
  std::vector<Event> expected = Expected(f, 0, 60);
  ASSERT_GE(expected.size(), 10u);
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(0, 60, f, 1000, 100));
  EXPECT_EQ(page.events, expected);
  EXPECT_EQ(page.scanned_through, 60u);

  ASSERT_OK_AND_ASSIGN(page, store_->ReadPage(0, 60, f, 1000, 20));
  EXPECT_EQ(page.events, Expected(f, 0, 20));
  EXPECT_EQ(page.scanned_through, 20u);
}

TEST_P(EventStoreReadTest, RejectsZeroLimits) {
  EXPECT_THAT(store_->ReadPage(0, 60, Filter{}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max")));
  EXPECT_THAT(store_->ReadPage(0, 60, Filter{}, 10, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max")));
}

TEST_P(EventStoreTest, PositionBeforePublishedSince) {
  ASSERT_OK_AND_ASSIGN(uint64_t p,
                       store_->PositionBeforePublishedSince(TestTime()));
  EXPECT_EQ(p, 0u);  // empty store: the head

  // published_at is not monotonic across streams.
  std::vector<Event> events;
  const int64_t published[] = {100, 300, 200, 500, 400};
  for (int i = 0; i < 5; ++i) {
    Event e = MakeEvent(i % 2 ? "filings" : "companies", i + 1);
    e.published_at = TestTime(published[i]);
    events.push_back(e);
  }
  CommitEvents(events);
  auto before = [&](int64_t t) {
    auto p = store_->PositionBeforePublishedSince(TestTime(t));
    EXPECT_THAT(p, IsOk());
    return p.ok() ? *p : 999;
  };
  EXPECT_EQ(before(0), 0u);
  EXPECT_EQ(before(100), 0u);
  EXPECT_EQ(before(101), 1u);  // first >= 101 is position 2 (300)
  EXPECT_EQ(before(250), 1u);
  EXPECT_EQ(before(301), 3u);  // position 4 (500)
  EXPECT_EQ(before(450), 3u);
  EXPECT_EQ(before(500), 3u);
  EXPECT_EQ(before(501), 5u);  // none: the head
}

TEST_P(EventStoreTest, PositionBeforeStreamTimepoint) {
  ASSERT_OK_AND_ASSIGN(uint64_t p,
                       store_->PositionBeforeStreamTimepoint("companies", 1));
  EXPECT_EQ(p, 0u);
  CommitEvents({MakeEvent("companies", 10), MakeEvent("filings", 5),
                MakeEvent("companies", 20), MakeEvent("filings", 6),
                MakeEvent("companies", 30)});
  auto before = [&](std::string_view stream, int64_t tp) {
    auto p = store_->PositionBeforeStreamTimepoint(stream, tp);
    EXPECT_THAT(p, IsOk());
    return p.ok() ? *p : 999;
  };
  EXPECT_EQ(before("companies", 0), 0u);
  EXPECT_EQ(before("companies", 10), 0u);
  EXPECT_EQ(before("companies", 11), 2u);
  EXPECT_EQ(before("companies", 20), 2u);
  EXPECT_EQ(before("companies", 30), 4u);
  EXPECT_EQ(before("companies", 31), 5u);  // none: the head
  EXPECT_EQ(before("filings", 6), 3u);
  EXPECT_EQ(before("charges", 1), 5u);  // unknown stream: the head
}

TEST_P(EventStoreTest, ReopenKeepsHeadStreamStatesAndCounters) {
  CommitEvents({MakeEvent("companies", 10), CompanyEvent(11, "A1", "A"),
                MakeEvent("filings", 4)},
               TestTime(50));
  Batch batch;
  batch.dead_letters = {MakeDeadLetter("filings", "bad")};
  batch.gaps = {Gap{"officers", 9, TestTime(60)}};
  ASSERT_OK(store_->Commit(std::move(batch), TestTime(70)));
  ASSERT_OK_AND_ASSIGN(auto states_before, store_->LoadStreamStates());
  ASSERT_OK_AND_ASSIGN(StoreStats stats_before, store_->Stats());

  Reopen();
  EXPECT_EQ(store_->HeadPosition(), 3u);
  ASSERT_OK_AND_ASSIGN(auto states_after, store_->LoadStreamStates());
  EXPECT_EQ(states_after, states_before);
  ASSERT_OK_AND_ASSIGN(StoreStats stats_after, store_->Stats());
  EXPECT_EQ(stats_after.head_position, stats_before.head_position);
  EXPECT_EQ(stats_after.oldest_position, 1u);
  EXPECT_EQ(stats_after.events_stored, 3u);
  EXPECT_EQ(stats_after.companies_stored, 2u);  // 01234567 and A1
  EXPECT_EQ(stats_after.dead_letters, 1u);

  // Duplicates are still recognised after the restart; positions go on.
  CommitResult r =
      CommitEvents({MakeEvent("companies", 11), MakeEvent("companies", 12),
                    MakeEvent("filings", 4)});
  EXPECT_THAT(Positions(*r.events), ElementsAre(4));
  EXPECT_THAT(r.duplicates,
              UnorderedElementsAre(Pair("companies", 1u), Pair("filings", 1u)));
}

TEST_P(EventStoreTest, StatsOfEmptyAndFilledStore) {
  ASSERT_OK_AND_ASSIGN(StoreStats empty, store_->Stats());
  EXPECT_EQ(empty.head_position, 0u);
  EXPECT_EQ(empty.oldest_position, 0u);
  EXPECT_EQ(empty.events_stored, 0u);
  EXPECT_GT(empty.db_size_bytes, 0u);
  std::vector<Event> events;
  for (int i = 1; i <= 25; ++i)
    events.push_back(CompanyEvent(i, "N" + std::to_string(i % 5), "X"));
  CommitEvents(events);
  ASSERT_OK_AND_ASSIGN(StoreStats s, store_->Stats());
  EXPECT_EQ(s.head_position, 25u);
  EXPECT_EQ(s.oldest_position, 1u);
  EXPECT_EQ(s.events_stored, 25u);
  EXPECT_EQ(s.companies_stored, 5u);
  EXPECT_EQ(s.dead_letters, 0u);
  EXPECT_GT(s.db_size_bytes, empty.db_size_bytes);
}

TEST_P(EventStoreTest, CompanyWhoseDataEventIsMissingIsDataLoss) {
  CommitEvents({CompanyEvent(1, "A0000001", "A")});
  ASSERT_OK(backend_->ExecRaw("DELETE FROM events WHERE position = 1"));
  EXPECT_THAT(store_->GetCompany("A0000001"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("event 1")));
}

// Verifies readers running during commits see a dense, ordered prefix of
// the log and never a position above the head they read.
TEST_P(EventStoreTest, ConcurrentReadersSeeDenseCommittedPrefix) {
  constexpr int kBatches = 200;
  constexpr int kPerBatch = 10;
  constexpr uint64_t kTotal = kBatches * kPerBatch;
  std::atomic<bool> failed{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      Filter filter;  // reader 2 filters (every event matches)
      if (r == 2) filter.company_numbers = {"01234567"};
      uint64_t cursor = 0;
      uint64_t last_position = 0;
      while (cursor < kTotal && !failed) {
        const uint64_t head = store_->HeadPosition();
        auto page = store_->ReadPage(cursor, head, filter, 64, 128);
        if (!page.ok() || page->scanned_through > std::max(head, cursor)) {
          failed = true;
          break;
        }
        for (const Event& e : page->events) {
          if (e.position != last_position + 1 ||
              e.timepoint != static_cast<int64_t>(e.position)) {
            failed = true;
          }
          last_position = e.position;
        }
        cursor = page->scanned_through;
      }
    });
  }
  for (int b = 0; b < kBatches; ++b) {
    std::vector<Event> events;
    for (int i = 1; i <= kPerBatch; ++i) {
      // One stream so that timepoint == position.
      events.push_back(MakeEvent("filings", b * kPerBatch + i));
    }
    CommitEvents(std::move(events));
  }
  for (std::thread& t : readers) t.join();
  EXPECT_FALSE(failed);
  EXPECT_EQ(store_->HeadPosition(), kTotal);
}

// ------------------------------------------------- identity and schema

TEST_P(EventStoreTest, StoreIdIsStableAcrossReopen) {
  const std::string id = store_->store_id();
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  CommitEvents({MakeEvent("companies", 1)});
  Reopen();
  EXPECT_EQ(store_->store_id(), id);
}

TEST_P(EventStoreTest, ForeignDatabaseIsRefusedAndLeftUntouched) {
  store_.reset();
  ASSERT_OK(backend_->NewLocation());
  ASSERT_OK(backend_->ExecRaw(
      "CREATE TABLE other (x integer); INSERT INTO other VALUES (7)"));
  EXPECT_THAT(backend_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("not a chstream database")));
  // Untouched: the table is still there and no table of ours was made.
  EXPECT_OK(backend_->ExecRaw("SELECT x FROM other"));
  EXPECT_THAT(backend_->ExecRaw("SELECT 1 FROM events"), Not(IsOk()));
}

TEST_P(EventStoreTest, NewerSchemaIsRefused) {
  CommitEvents({MakeEvent("companies", 1)});
  store_.reset();
  ASSERT_OK(backend_->ExecRaw(backend_->SetSchemaVersionSql(99)));
  EXPECT_THAT(backend_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("newer than this binary")));
  EXPECT_OK(backend_->ExecRaw("SELECT 1 FROM events"));
}

// ------------------------------------------------------- PostgreSQL only

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(backend_.NewLocation());
    ASSERT_OK_AND_ASSIGN(store_, PostgresStore::Open(backend_.uri()));
  }

  static Batch Events(std::vector<Event> events) {
    Batch b;
    b.events = std::move(events);
    return b;
  }

  PostgresBackend backend_;
  std::unique_ptr<PostgresStore> store_;
};

// Verifies that a commit under a leader epoch that is no longer current
// commits nothing (not even dead letters or gaps), leaves the batch intact,
// and that the same batch commits once the epoch is current.
TEST_F(PostgresStoreTest, FencedCommitCommitsNothingAndCanBeRetried) {
  ASSERT_OK(store_->Commit(Events({MakeEvent("companies", 1)}), TestTime()));
  store_->SetFencingEpoch(7);  // cluster.leader_epoch is 0

  Batch batch;
  batch.events = {MakeEvent("companies", 2), CompanyEvent(3, "X1", "X")};
  batch.dead_letters = {MakeDeadLetter("companies", "r")};
  batch.gaps = {Gap{"companies", 1, TestTime()}};
  EXPECT_THAT(store_->Commit(&batch, TestTime()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("fenced: leader epoch 7 is no longer "
                                 "current")));
  EXPECT_EQ(store_->HeadPosition(), 1u);
  ASSERT_EQ(batch.events.size(), 2u);
  EXPECT_EQ(batch.events[1].position, 0u);
  ASSERT_OK_AND_ASSIGN(auto dead, store_->ReadDeadLetters(10));
  EXPECT_THAT(dead, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto states, store_->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  EXPECT_THAT(states[0].gaps, IsEmpty());

  ASSERT_OK(backend_.ExecRaw("UPDATE cluster SET leader_epoch = 7"));
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(&batch, TestTime()));
  EXPECT_THAT(Positions(*r.events), ElementsAre(2, 3));
  EXPECT_EQ(r.dead_letters, 1u);
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  EXPECT_EQ(stats.head_position, 3u);
  EXPECT_EQ(stats.companies_stored, 2u);
  EXPECT_EQ(stats.dead_letters, 1u);

  // A takeover by another process (epoch 8) fences this one again.
  ASSERT_OK(backend_.ExecRaw("UPDATE cluster SET leader_epoch = 8"));
  EXPECT_THAT(
      store_->Commit(Events({MakeEvent("companies", 9)}), TestTime()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  ASSERT_OK_AND_ASSIGN(
      std::string head,
      (*chstream::testing::SharedPostgresServer())
          ->QueryValue(backend_.uri(), "SELECT head FROM cluster"));
  EXPECT_EQ(head, "3");
}

// Verifies that every commit that adds events notifies chstream_commit with
// the new head, and that commits without events do not.
TEST_F(PostgresStoreTest, CommitNotifiesTheNewHead) {
  PGconn* listener = PQconnectdb(backend_.uri().c_str());
  ASSERT_EQ(PQstatus(listener), CONNECTION_OK);
  PQclear(PQexec(listener, "LISTEN chstream_commit"));

  ASSERT_OK(store_->Commit(
      Events({MakeEvent("companies", 1), MakeEvent("companies", 2)}),
      TestTime()));
  Batch dead_only;
  dead_only.dead_letters = {MakeDeadLetter("companies", "r")};
  ASSERT_OK(store_->Commit(std::move(dead_only), TestTime()));
  ASSERT_OK(store_->Commit(Events({MakeEvent("filings", 1)}), TestTime()));

  std::vector<std::string> payloads;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (payloads.size() < 2 && absl::Now() < deadline) {
    // Reads whatever arrived (blocking on the socket up to 100 ms).
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(PQsocket(listener), &fds);
    timeval tv{0, 100000};
    select(PQsocket(listener) + 1, &fds, nullptr, nullptr, &tv);
    PQconsumeInput(listener);
    while (PGnotify* n = PQnotifies(listener)) {
      payloads.push_back(n->extra);
      PQfreemem(n);
    }
  }
  EXPECT_THAT(payloads, ElementsAre("2", "3"));
  PQfinish(listener);
}

// Verifies that two processes on one database (one after the other, as
// leaders do across a failover) keep positions dense and drop what the
// other committed; a reader's head follows with RefreshHeadPosition.
TEST_F(PostgresStoreTest, TwoStoresOnOneDatabaseKeepPositionsDense) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresStore> other,
                       PostgresStore::Open(backend_.uri()));
  EXPECT_EQ(other->store_id(), store_->store_id());
  ASSERT_OK(store_->Commit(
      Events({MakeEvent("companies", 1), MakeEvent("companies", 2)}),
      TestTime()));
  ASSERT_OK_AND_ASSIGN(CommitResult r,
                       other->Commit(Events({MakeEvent("companies", 2),
                                             MakeEvent("companies", 3)}),
                                     TestTime()));
  EXPECT_THAT(Positions(*r.events), ElementsAre(3));
  EXPECT_THAT(r.duplicates, UnorderedElementsAre(Pair("companies", 1u)));

  EXPECT_EQ(store_->HeadPosition(), 2u);  // not published here yet
  ASSERT_OK_AND_ASSIGN(uint64_t head, store_->RefreshHeadPosition());
  EXPECT_EQ(head, 3u);
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(0, head, Filter{}, 100));
  EXPECT_THAT(Positions(page.events), ElementsAre(1, 2, 3));
  EXPECT_THAT(Timepoints(page.events), ElementsAre(1, 2, 3));
}

// Verifies the v1 -> v2 migration: a database written by a v1 binary (made
// here by removing what v2 added) gets the resources the commits would have
// written, and the same stored size of its events.
TEST_F(PostgresStoreTest, MigrationFromV1FillsResourcesAndEventBytes) {
  const std::string officer = "/company/07217743/appointments/abc";
  Event o1 = MakeEvent("officers", 1, "07217743");
  o1.resource_kind = "company-officers";
  o1.resource_uri = officer;
  Event o2 = o1;  // deleted without data or company number
  o2.timepoint = 2;
  o2.type = EventType::kDeleted;
  o2.company_number.clear();
  o2.data_json.clear();
  o2.data_pb.clear();
  ASSERT_OK(store_->Commit(Events({o1, CompanyEvent(5, "SC571653", "FC LTD"),
                                   o2, MakeEvent("filings", 3)}),
                           TestTime()));
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> officer_before,
                       store_->GetResource(officer));
  ASSERT_TRUE(officer_before.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> profile_before,
                       store_->GetResource("/company/SC571653"));
  ASSERT_TRUE(profile_before.has_value());
  ASSERT_OK_AND_ASSIGN(
      std::string bytes_before,
      backend_.QueryValue("SELECT event_bytes FROM store_counters"));
  EXPECT_NE(bytes_before, "0");
  store_.reset();

  ASSERT_OK(backend_.ExecRaw(
      "DROP TABLE stream_status; DROP TABLE resources; ALTER TABLE "
      "companies DROP COLUMN "
      "pruned_data_json, DROP COLUMN pruned_data_pb; ALTER TABLE "
      "store_counters DROP COLUMN event_bytes; DROP FUNCTION "
      "chstream_event_bytes; UPDATE cluster SET schema_version = 1"));
  ASSERT_OK_AND_ASSIGN(store_, PostgresStore::Open(backend_.uri()));
  EXPECT_EQ(store_->schema_version(), pg::PgLatestSchemaVersion());
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> officer_after,
                       store_->GetResource(officer));
  EXPECT_EQ(officer_after, officer_before);
  EXPECT_EQ(officer_before->company_number, "07217743");
  EXPECT_TRUE(officer_before->deleted);
  EXPECT_EQ(officer_before->data_json, std::string(StoredDataJson(o1)));
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> profile_after,
                       store_->GetResource("/company/SC571653"));
  EXPECT_EQ(profile_after, profile_before);
  ASSERT_OK_AND_ASSIGN(std::string resources,
                       backend_.QueryValue("SELECT count(*) FROM resources"));
  EXPECT_EQ(resources, "3");
  ASSERT_OK_AND_ASSIGN(
      std::string bytes_after,
      backend_.QueryValue("SELECT event_bytes FROM store_counters"));
  EXPECT_EQ(bytes_after, bytes_before);
}

// Verifies that a lost connection (the server restarted) fails the call
// that saw it and that the store reconnects on the next one.
TEST_F(PostgresStoreTest, ReconnectsAfterTheServerTerminatesItsSessions) {
  ASSERT_OK(store_->Commit(Events({MakeEvent("companies", 1)}), TestTime()));
  ASSERT_OK(backend_.ExecRaw(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
      "datname = current_database() AND pid <> pg_backend_pid()"));
  absl::StatusOr<CommitResult> first =
      store_->Commit(Events({MakeEvent("companies", 2)}), TestTime());
  if (!first.ok()) {
    EXPECT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
    ASSERT_OK(store_->Commit(Events({MakeEvent("companies", 2)}), TestTime()));
  }
  EXPECT_EQ(store_->HeadPosition(), 2u);
  ASSERT_OK_AND_ASSIGN(auto company, store_->GetCompany("nope"));
  EXPECT_FALSE(company.has_value());
  ASSERT_OK_AND_ASSIGN(Page page, store_->ReadPage(0, 2, Filter{}, 10));
  EXPECT_THAT(Positions(page.events), ElementsAre(1, 2));
}

TEST(PostgresUrlTest, RedactionDropsUserInfoPathAndQuery) {
  EXPECT_EQ(pg::RedactPostgresUrl(
                "postgresql://chstream:s3cret@db.internal:5433/chstream"
                "?sslmode=require&password=other"),
            "postgresql://db.internal:5433/...");
  EXPECT_EQ(pg::RedactPostgresUrl("postgres://db.internal"),
            "postgres://db.internal");
  EXPECT_EQ(pg::RedactPostgresUrl("host=db password=s3cret"),
            "[conninfo redacted]");
}

// Verifies that a wrong password is refused with PermissionDenied and that
// neither the password in the URL nor anything else secret is in the error.
TEST(PostgresPasswordTest, WrongPasswordIsRefusedWithoutPrintingIt) {
  chstream::testing::PostgresServer::Options options;
  options.password = "right-horse-battery";
  ASSERT_OK_AND_ASSIGN(auto server,
                       chstream::testing::PostgresServer::Start(options));
  const std::string good = server->Uri();
  ASSERT_NE(good.find("right-horse-battery"), std::string::npos);
  std::string bad = good;
  bad.replace(bad.find("right-horse-battery"), 19, "wrong-staple-pass");
  absl::StatusOr<std::unique_ptr<PostgresStore>> store =
      PostgresStore::Open(bad);
  EXPECT_THAT(store,
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(std::string(store.status().message()),
              Not(HasSubstr("wrong-staple-pass")));
  EXPECT_THAT(std::string(store.status().message()),
              Not(HasSubstr("right-horse-battery")));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresStore> ok,
                       PostgresStore::Open(good));
  EXPECT_THAT(ok->location(), Not(HasSubstr("right-horse-battery")));
  EXPECT_THAT(ok->location(), HasSubstr("127.0.0.1"));
}

}  // namespace
}  // namespace chstream::storage
