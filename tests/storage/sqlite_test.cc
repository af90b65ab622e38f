#include "storage/sqlite.h"

#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::TestDbPath;
using ::chstream::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(SqliteErrorTest, MapsCodesAndNamesTheOperation) {
  EXPECT_THAT(SqliteError(SQLITE_CORRUPT, nullptr, "reading x"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("reading x")));
  EXPECT_THAT(SqliteError(SQLITE_NOTADB, nullptr, "op"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("op")));
  EXPECT_THAT(SqliteError(SQLITE_BUSY, nullptr, "op"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("op")));
  EXPECT_THAT(SqliteError(SQLITE_BUSY_SNAPSHOT, nullptr, "op"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("op")));
  EXPECT_THAT(SqliteError(SQLITE_READONLY, nullptr, "op"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("op")));
  EXPECT_THAT(SqliteError(SQLITE_FULL, nullptr, "op"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("op")));
  EXPECT_THAT(SqliteError(SQLITE_ERROR, nullptr, "op"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("op")));
}

TEST(DatabaseTest, OpenMissingReadOnlyFailsNamingThePath) {
  const std::string path = TestDbPath();
  EXPECT_THAT(Database::Open(path, SQLITE_OPEN_READONLY),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(path)));
}

// Verifies empty text and blobs bind as '' and X'' (not NULL), bytes
// round-trip exactly (embedded NULs included), and errors name the SQL.
TEST(DatabaseTest, BindsAndReadsBackExactBytes) {
  const std::string path = TestDbPath();
  ASSERT_OK_AND_ASSIGN(
      Database db,
      Database::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  ASSERT_OK(db.Exec("CREATE TABLE t (a TEXT, b BLOB, c INTEGER)"));
  ASSERT_OK_AND_ASSIGN(Statement ins,
                       db.Prepare("INSERT INTO t VALUES (?1, ?2, ?3)"));
  const std::string blob("\x00\x01\xff", 3);
  ins.BindText(1, "");
  ins.BindBlob(2, blob);
  ins.BindInt64(3, -5);
  ASSERT_OK(ins.Run());
  ins.Reset();
  ins.BindText(1, "x");
  ins.BindBlob(2, "");
  ins.BindNull(3);
  ASSERT_OK(ins.Run());

  ASSERT_OK_AND_ASSIGN(Statement sel,
                       db.Prepare("SELECT a IS NULL, a, b IS NULL, b, c "
                                  "FROM t ORDER BY rowid"));
  ASSERT_OK_AND_ASSIGN(bool row, sel.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(sel.ColumnInt64(0), 0);
  EXPECT_EQ(sel.ColumnText(1), "");
  EXPECT_EQ(sel.ColumnBlob(3), blob);
  EXPECT_EQ(sel.ColumnInt64(4), -5);
  ASSERT_OK_AND_ASSIGN(row, sel.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(sel.ColumnInt64(2), 0);
  EXPECT_EQ(sel.ColumnBlob(3), "");
  EXPECT_TRUE(sel.ColumnIsNull(4));
  ASSERT_OK_AND_ASSIGN(row, sel.Step());
  EXPECT_FALSE(row);

  EXPECT_THAT(db.Exec("INSERT INTO nope VALUES (1)"),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("nope"), HasSubstr(path))));
  EXPECT_THAT(db.Prepare("SELEC 1"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("SELEC 1")));
  ASSERT_OK_AND_ASSIGN(int64_t n, db.QueryInt64("SELECT count(*) FROM t"));
  EXPECT_EQ(n, 2);
  ASSERT_OK_AND_ASSIGN(std::string mode, db.QueryText("PRAGMA journal_mode"));
  EXPECT_EQ(mode, "delete");
}

}  // namespace
}  // namespace chstream::storage
