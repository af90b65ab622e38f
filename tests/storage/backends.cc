#include "tests/storage/backends.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite.h"
#include "tests/storage/test_util.h"
#include "tests/testing/postgres_server.h"

namespace chstream::storage::testing {

absl::Status SqliteBackend::NewLocation() {
  // Not TestDbPath(): a parameterised test's name holds '/'.
  static std::atomic<int> n{0};
  const char* dir = std::getenv("TEST_TMPDIR");
  path_ = absl::StrCat(dir != nullptr ? dir : "/tmp", "/event_store_", getpid(),
                       "_", ++n, ".db");
  RemoveDbFiles(path_);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EventStore>> SqliteBackend::Open() {
  CHS_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(path_));
  return std::unique_ptr<EventStore>(std::move(store));
}

absl::Status SqliteBackend::ExecRaw(const std::string& sql) {
  CHS_ASSIGN_OR_RETURN(
      Database db,
      Database::Open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  return db.Exec(sql);
}

absl::StatusOr<std::string> SqliteBackend::QueryValue(const std::string& sql) {
  CHS_ASSIGN_OR_RETURN(Database db,
                       Database::Open(path_, SQLITE_OPEN_READONLY));
  CHS_ASSIGN_OR_RETURN(Statement st, db.Prepare(sql, false));
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no row: ", sql));
  return std::string(st.ColumnText(0));
}

std::string SqliteBackend::SetSchemaVersionSql(int v) const {
  return absl::StrCat("PRAGMA user_version = ", v);
}

absl::Status PostgresBackend::NewLocation() {
  CHS_ASSIGN_OR_RETURN(chstream::testing::PostgresServer * server,
                       chstream::testing::SharedPostgresServer());
  CHS_ASSIGN_OR_RETURN(uri_, server->CreateDatabase());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EventStore>> PostgresBackend::Open() {
  PostgresStore::Options options;
  options.read_connections = 3;
  CHS_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStore> store,
                       PostgresStore::Open(uri_, options));
  return std::unique_ptr<EventStore>(std::move(store));
}

absl::Status PostgresBackend::ExecRaw(const std::string& sql) {
  CHS_ASSIGN_OR_RETURN(chstream::testing::PostgresServer * server,
                       chstream::testing::SharedPostgresServer());
  return server->Execute(uri_, sql);
}

absl::StatusOr<std::string> PostgresBackend::QueryValue(
    const std::string& sql) {
  CHS_ASSIGN_OR_RETURN(chstream::testing::PostgresServer * server,
                       chstream::testing::SharedPostgresServer());
  return server->QueryValue(uri_, sql);
}

std::string PostgresBackend::SetSchemaVersionSql(int v) const {
  return absl::StrCat("UPDATE cluster SET schema_version = ", v);
}

std::unique_ptr<Backend> MakeBackend(BackendKind kind) {
  if (kind == BackendKind::kSqlite) return std::make_unique<SqliteBackend>();
  return std::make_unique<PostgresBackend>();
}

std::string BackendName(const ::testing::TestParamInfo<BackendKind>& info) {
  return info.param == BackendKind::kSqlite ? "Sqlite" : "Postgres";
}

}  // namespace chstream::storage::testing
