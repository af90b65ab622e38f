#include "storage/schema.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sqlite.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::ReadFileBytes;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::chstream::storage::testing::WriteFileBytes;
using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

int64_t UserVersion(const std::string& path) {
  auto db = Database::Open(path, SQLITE_OPEN_READONLY);
  EXPECT_THAT(db, IsOk());
  auto v = db->QueryInt64("PRAGMA user_version");
  EXPECT_THAT(v, IsOk());
  return *v;
}

// Builds a chstream database at `path` with the first `version` migrations
// (as an older binary would have), filled through raw SQL for that schema.
void BuildOldDatabase(const std::string& path, int version) {
  ASSERT_OK_AND_ASSIGN(
      Database db,
      Database::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  ASSERT_OK(db.Exec("PRAGMA journal_mode = WAL"));
  ASSERT_OK(Migrate(db, version));
  ASSERT_EQ(UserVersion(path), version);
  const int64_t t0 = absl::ToUnixMicros(TestTime());
  ASSERT_OK(db.Exec(absl::StrCat(
      "INSERT INTO events VALUES (1, 'companies', 100, 1, 'company-profile', "
      "'SC571653', '/company/SC571653', 'SC571653', ",
      t0, ", ", t0 + 1,
      R"(, '["company_name"]', '{"company_name":"FC KIOSKS LTD"}', X'0A0B');)",
      "INSERT INTO events VALUES (2, 'filings', 7, 2, 'filing-history', "
      "'MzM0', '/company/02154654/filing-history/MzM0', '02154654', ",
      t0 + 2, ", ", t0 + 3, ", '[]', '', X'');",
      "INSERT INTO companies VALUES ('SC571653', 'FC KIOSKS LTD', 'active', "
      "'ltd', 'scotland', '2017-07-20', '', '', 'Suite 4f', '', 'Glasgow', "
      "'', 'G1 1DA', 'Scotland', '', '', '[\"56290\"]', 0, 100, 1, ",
      t0 + 1, ", 1);",  // data_position: event 1 carries the data
      "INSERT INTO stream_state VALUES ('companies', 100, ", t0, ", ", t0 + 5,
      ");", "INSERT INTO stream_state VALUES ('filings', 7, ", t0 + 2, ", ",
      t0 + 5, ");",
      "INSERT INTO dead_letters (stream, received_at, reason, raw, timepoint) "
      "VALUES ('officers', ",
      t0 + 4, ", 'malformed JSON', X'7B7B', NULL);")));
  if (version >= 2) {
    ASSERT_OK(db.Exec(absl::StrCat(
        "INSERT INTO gaps (stream, last_timepoint, recorded_at) VALUES "
        "('charges', 55, ",
        t0 + 6, ");")));
  }
}

TEST(SchemaTest, MigrationVersionsAreConsecutive) {
  absl::Span<const Migration> migrations = Migrations();
  ASSERT_EQ(static_cast<int>(migrations.size()), LatestSchemaVersion());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i) + 1);
  }
  EXPECT_GE(LatestSchemaVersion(), 2);
}

TEST(SchemaTest, MissingFileIsNew) {
  const std::string path = TestDbPath();
  ASSERT_OK_AND_ASSIGN(DatabaseFile file, InspectDatabaseFile(path, true));
  EXPECT_TRUE(file.is_new);
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  store.reset();
  EXPECT_EQ(UserVersion(path), LatestSchemaVersion());
}

TEST(SchemaTest, EmptyFileIsNew) {
  const std::string path = TestDbPath();
  WriteFileBytes(path, "");
  ASSERT_OK_AND_ASSIGN(DatabaseFile file, InspectDatabaseFile(path, true));
  EXPECT_TRUE(file.is_new);
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  Batch batch;
  batch.events.push_back(MakeEvent("officers", 1));
  ASSERT_OK(store->Commit(std::move(batch), TestTime()));
  store.reset();
  EXPECT_EQ(UserVersion(path), LatestSchemaVersion());
  ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path, SQLITE_OPEN_READONLY));
  EXPECT_THAT(db.QueryInt64("PRAGMA application_id"), IsOk());
  EXPECT_EQ(*db.QueryInt64("PRAGMA application_id"), kApplicationId);
  EXPECT_EQ(*db.QueryText("PRAGMA journal_mode"), "wal");
}

// Verifies that a database written at each earlier schema version opens
// with the current binary, is migrated, and keeps all of its data.
TEST(SchemaTest, MigratesFromEveryEarlierVersion) {
  for (int version = 1; version < LatestSchemaVersion(); ++version) {
    SCOPED_TRACE(absl::StrCat("from version ", version));
    const std::string path = TestDbPath(absl::StrCat("_v", version));
    BuildOldDatabase(path, version);
    if (HasFatalFailure()) return;

    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    EXPECT_EQ(store->HeadPosition(), 2u);
    ASSERT_OK_AND_ASSIGN(Page page, store->ReadPage(0, 100, Filter{}, 10));
    ASSERT_EQ(page.events.size(), 2u);
    const Event& e = page.events[0];
    EXPECT_EQ(e.position, 1u);
    EXPECT_EQ(e.stream, "companies");
    EXPECT_EQ(e.timepoint, 100);
    EXPECT_EQ(e.type, EventType::kChanged);
    EXPECT_EQ(e.company_number, "SC571653");
    EXPECT_EQ(e.published_at, TestTime());
    EXPECT_EQ(e.received_at, TestTime(1));
    EXPECT_THAT(e.fields_changed, ElementsAre("company_name"));
    EXPECT_EQ(e.data_json, R"({"company_name":"FC KIOSKS LTD"})");
    EXPECT_EQ(e.data_pb, "\x0a\x0b");
    EXPECT_EQ(page.events[1].type, EventType::kDeleted);
    EXPECT_TRUE(page.events[1].fields_changed.empty());

    ASSERT_OK_AND_ASSIGN(auto company, store->GetCompany("SC571653"));
    ASSERT_TRUE(company.has_value());
    EXPECT_EQ(company->fields.company_name, "FC KIOSKS LTD");
    EXPECT_EQ(company->fields.registered_office_address.postal_code, "G1 1DA");
    EXPECT_THAT(company->fields.sic_codes, ElementsAre("56290"));
    EXPECT_EQ(company->last_position, 1u);
    EXPECT_EQ(company->data_json, R"({"company_name":"FC KIOSKS LTD"})");
    EXPECT_EQ(company->data_pb, "\x0a\x0b");

    ASSERT_OK_AND_ASSIGN(std::vector<StreamState> states,
                         store->LoadStreamStates());
    std::vector<std::string> names;
    for (const StreamState& s : states) names.push_back(s.stream);
    if (version >= 2) {
      EXPECT_THAT(names, ElementsAre("charges", "companies", "filings"));
      EXPECT_EQ(states[0].gaps.size(), 1u);
      EXPECT_FALSE(states[0].last_timepoint.has_value());
    } else {
      EXPECT_THAT(names, ElementsAre("companies", "filings"));
    }

    ASSERT_OK_AND_ASSIGN(auto dead, store->ReadDeadLetters(10));
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].reason, "malformed JSON");
    EXPECT_EQ(dead[0].raw, "{{");

    // The old stream_state drives duplicate detection and positions go on.
    Batch batch;
    batch.events.push_back(MakeEvent("companies", 100, "SC571653"));
    batch.events.push_back(MakeEvent("companies", 101, "SC571653"));
    batch.gaps.push_back(Gap{"filings", 7, TestTime(9)});
    ASSERT_OK_AND_ASSIGN(CommitResult result,
                         store->Commit(std::move(batch), TestTime(10)));
    ASSERT_EQ(result.events->size(), 1u);
    EXPECT_EQ((*result.events)[0].position, 3u);
    EXPECT_EQ(result.duplicates["companies"], 1u);
    store.reset();
    EXPECT_EQ(UserVersion(path), LatestSchemaVersion());
  }
}

// Verifies that the migration to version 4 fills the resources table from
// the events already stored: per resource_uri the last event's kind, type and
// position, the last data, the last non-empty company number; events without
// a resource_uri have no state.
TEST(SchemaTest, MigrationToVersion4FillsResourcesFromStoredEvents) {
  const std::string path = TestDbPath();
  {
    ASSERT_OK_AND_ASSIGN(
        Database db,
        Database::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    ASSERT_OK(db.Exec("PRAGMA journal_mode = WAL"));
    ASSERT_OK(Migrate(db, 3));
    const int64_t t0 = absl::ToUnixMicros(TestTime());
    const auto row = [&](int position, const char* stream, int type,
                         const char* kind, const char* uri, const char* number,
                         const char* data_json) {
      return absl::StrCat("INSERT INTO events VALUES (", position, ", '",
                          stream, "', ", position, ", ", type, ", '", kind,
                          "', 'id', '", uri, "', '", number, "', ", t0, ", ",
                          t0 + position, ", '[]', '", data_json, "', X'",
                          *data_json != 0 ? "0A00" : "", "');");
    };
    const char* officer = "/company/07217743/appointments/A";
    const char* corporate = "/disqualified-officers/corporate/B";
    ASSERT_OK(db.Exec(absl::StrCat(
        row(1, "officers", 1, "company-officers", officer, "07217743",
            R"({"name":"A"})"),
        row(2, "disqualified-officers", 1, "disqualified-officer-corporate",
            corporate, "01234567", R"({"company_number":"01234567"})"),
        row(3, "officers", 2, "company-officers", officer, "07217743", ""),
        row(4, "disqualified-officers", 2, "disqualified-officer-corporate",
            corporate, "", ""),
        row(5, "filings", 1, "filing-history", "", "02154654", R"({"x":1})"))));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> a,
                       store->GetResource("/company/07217743/appointments/A"));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->resource_kind, "company-officers");
  EXPECT_EQ(a->company_number, "07217743");
  EXPECT_TRUE(a->deleted);
  EXPECT_EQ(a->last_timepoint, 3);
  EXPECT_EQ(a->last_position, 3u);
  EXPECT_EQ(a->updated_at, TestTime(3));
  EXPECT_EQ(a->data_json, R"({"name":"A"})");
  ASSERT_OK_AND_ASSIGN(
      std::optional<ResourceRecord> b,
      store->GetResource("/disqualified-officers/corporate/B"));
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->deleted);
  EXPECT_EQ(b->company_number, "01234567");
  EXPECT_EQ(b->data_json, R"({"company_number":"01234567"})");
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> none,
                       store->GetResource(""));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(
      ResourcePage page,
      store->ListCompanyResources("01234567", {}, std::nullopt, 10, true));
  ASSERT_EQ(page.resources.size(), 1u);
  EXPECT_EQ(page.resources[0].resource_uri,
            "/disqualified-officers/corporate/B");
}

TEST(SchemaTest, MigrateIsIdempotentAndStepwiseEqualsDirect) {
  const std::string stepwise = TestDbPath("_stepwise");
  const std::string direct = TestDbPath("_direct");
  auto schema_of = [](const std::string& path) {
    auto db = Database::Open(path, SQLITE_OPEN_READONLY);
    EXPECT_THAT(db, IsOk());
    auto st = db->Prepare(
        "SELECT type || ' ' || name || ' ' || IFNULL(sql, '') FROM "
        "sqlite_schema ORDER BY name");
    EXPECT_THAT(st, IsOk());
    std::vector<std::string> rows;
    while (*st->Step()) rows.emplace_back(st->ColumnText(0));
    return rows;
  };
  {
    ASSERT_OK_AND_ASSIGN(
        Database db,
        Database::Open(stepwise, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    for (int v = 1; v <= LatestSchemaVersion(); ++v) ASSERT_OK(Migrate(db, v));
    ASSERT_OK(Migrate(db, LatestSchemaVersion()));  // nothing left to do
    EXPECT_THAT(
        Migrate(db, LatestSchemaVersion() + 1),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no schema")));
  }
  {
    ASSERT_OK_AND_ASSIGN(
        Database db,
        Database::Open(direct, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    ASSERT_OK(Migrate(db, LatestSchemaVersion()));
  }
  EXPECT_EQ(schema_of(stepwise), schema_of(direct));
  EXPECT_FALSE(schema_of(direct).empty());
}

// ---- Refusals: the file must be left byte for byte as it was.

class RefusalTest : public ::testing::Test {
 protected:
  void ExpectRefused(const std::string& path, absl::StatusCode code,
                     const std::string& reason) {
    const std::string before = ReadFileBytes(path);
    ASSERT_FALSE(before.empty());
    auto store = Store::Open(path);
    EXPECT_THAT(store,
                StatusIs(code, AllOf(HasSubstr(path), HasSubstr(reason))));
    EXPECT_EQ(ReadFileBytes(path), before) << "file was modified";
  }

  // A real chstream database with enough events to span many pages, closed
  // cleanly (checkpointed, no WAL left).
  std::string MakeChstreamDatabase() {
    const std::string path = TestDbPath();
    auto store = Store::Open(path);
    EXPECT_THAT(store, IsOk());
    Batch batch;
    for (int i = 1; i <= 300; ++i) {
      Event e = MakeEvent("filings", i);
      e.data_pb.assign(600, 'x');
      batch.events.push_back(std::move(e));
    }
    EXPECT_THAT((*store)->Commit(std::move(batch), TestTime()), IsOk());
    store->reset();
    return path;
  }
};

TEST_F(RefusalTest, RefusesTextFile) {
  const std::string path = TestDbPath();
  WriteFileBytes(path, std::string(5000, 'z') + "\nnot a database\n");
  ExpectRefused(path, absl::StatusCode::kFailedPrecondition,
                "not an SQLite file");
}

TEST_F(RefusalTest, RefusesTinyFile) {
  const std::string path = TestDbPath();
  WriteFileBytes(path, "SQLite");
  ExpectRefused(path, absl::StatusCode::kFailedPrecondition,
                "not a chstream database");
}

TEST_F(RefusalTest, RefusesOtherApplicationsDatabase) {
  const std::string path = TestDbPath();
  {
    ASSERT_OK_AND_ASSIGN(
        Database db,
        Database::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    ASSERT_OK(
        db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                "INSERT INTO notes (body) VALUES ('keep me');"));
  }
  ExpectRefused(path, absl::StatusCode::kFailedPrecondition, "application_id");
}

TEST_F(RefusalTest, RefusesNewerSchemaVersion) {
  const std::string path = MakeChstreamDatabase();
  {
    ASSERT_OK_AND_ASSIGN(Database db,
                         Database::Open(path, SQLITE_OPEN_READWRITE));
    ASSERT_OK(db.Exec(
        absl::StrCat("PRAGMA user_version = ", LatestSchemaVersion() + 1)));
    ASSERT_OK(db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  ExpectRefused(path, absl::StatusCode::kFailedPrecondition,
                "newer than this binary understands");
}

TEST_F(RefusalTest, RefusesCorruptPages) {
  const std::string path = MakeChstreamDatabase();
  std::string bytes = ReadFileBytes(path);
  ASSERT_GT(bytes.size(), 40000u);
  // Scribble over pages in the middle of the file (the header is intact).
  for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 8192; ++i) {
    bytes[i] = static_cast<char>(0xA5);
  }
  WriteFileBytes(path, bytes);
  ExpectRefused(path, absl::StatusCode::kDataLoss, "corrupt");
}

TEST_F(RefusalTest, RefusesTruncatedDatabase) {
  const std::string path = MakeChstreamDatabase();
  std::string bytes = ReadFileBytes(path);
  WriteFileBytes(path, bytes.substr(0, bytes.size() / 2));
  ExpectRefused(path, absl::StatusCode::kDataLoss, "corrupt");
}

TEST_F(RefusalTest, RefusesDamagedHeader) {
  const std::string path = MakeChstreamDatabase();
  std::string bytes = ReadFileBytes(path);
  bytes[16] = 0x00;  // page size 3: impossible
  bytes[17] = 0x03;
  WriteFileBytes(path, bytes);
  ExpectRefused(path, absl::StatusCode::kDataLoss, "corrupt");
}

TEST_F(RefusalTest, RefusesDirectory) {
  const char* dir = std::getenv("TEST_TMPDIR");
  ASSERT_NE(dir, nullptr);
  EXPECT_THAT(Store::Open(dir), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("not a regular file")));
}

TEST_F(RefusalTest, RefusesInMemoryPath) {
  EXPECT_THAT(Store::Open(":memory:"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("path")));
}

}  // namespace
}  // namespace chstream::storage
