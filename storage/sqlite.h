// File: storage/sqlite.h
//
// A thin RAII layer over the SQLite C API that turns result codes into
// absl::Status. It owns connections (Database) and prepared statements
// (Statement) and does nothing clever: the schema, migrations and queries
// live in schema.h and store.h.
//
// Thread-safety: a Database and its Statements must be used by one thread at
// a time (connections are opened with SQLITE_OPEN_NOMUTEX). Different
// Database objects may be used concurrently.
//
//   CHS_ASSIGN_OR_RETURN(Database db, Database::Open(path,
//   SQLITE_OPEN_READONLY)); CHS_ASSIGN_OR_RETURN(Statement st,
//   db.Prepare("SELECT x FROM t WHERE k=?")); st.BindText(1, key);
//   CHS_ASSIGN_OR_RETURN(bool row, st.Step());
//   if (row) use(st.ColumnInt64(0));
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chstream::storage {

// Maps a SQLite result code to an absl::Status whose message names the
// operation (`context`), the database file and SQLite's own message.
// SQLITE_CORRUPT and SQLITE_NOTADB become DataLoss; SQLITE_BUSY and
// SQLITE_LOCKED Unavailable; SQLITE_READONLY, SQLITE_CANTOPEN and SQLITE_PERM
// FailedPrecondition; SQLITE_FULL ResourceExhausted; SQLITE_TOOBIG,
// SQLITE_CONSTRAINT, SQLITE_MISMATCH and SQLITE_RANGE (the data, not the
// environment) InvalidArgument; others Internal.
// `db` may be null.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view context);

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  bool valid() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() const { return stmt_; }

  // Parameters are 1-based. Text and blobs are not copied (SQLITE_STATIC):
  // the bytes must stay valid until the statement is Reset() or destroyed.
  // A failed bind (e.g. SQLITE_TOOBIG) is returned by the next Step/Run.
  void BindInt64(int index, int64_t value);
  void BindText(int index, std::string_view value);
  void BindBlob(int index, std::string_view value);
  void BindNull(int index);

  // Returns true when a row is available, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows (INSERT/UPDATE/DDL).
  absl::Status Run();
  // Makes the statement ready to run again and drops its bindings (and a
  // pending bind error).
  void Reset();

  // Columns are 0-based. The views stay valid until the next Step/Reset.
  int64_t ColumnInt64(int column) const;
  bool ColumnIsNull(int column) const;
  std::string_view ColumnText(int column) const;
  std::string_view ColumnBlob(int column) const;

 private:
  void KeepBindError(int rc);

  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
  int bind_rc_ = 0;  // the first failed bind since Reset (SQLITE_OK = 0)
};

class Database {
 public:
  // `flags` are sqlite3_open_v2 flags; SQLITE_OPEN_NOMUTEX and
  // SQLITE_OPEN_EXRESCODE are always added.
  static absl::StatusOr<Database> Open(const std::string& path, int flags);

  Database() = default;
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  // Closes the connection. Statements prepared on it must be destroyed first.
  ~Database();

  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }

  // Runs one or more SQL statements that return no rows of interest.
  absl::Status Exec(const std::string& sql);
  // `persistent` hints SQLite that the statement will be reused many times.
  absl::StatusOr<Statement> Prepare(std::string_view sql,
                                    bool persistent = true);
  // Runs a query that returns one integer (e.g. "PRAGMA user_version").
  // A NULL or missing row is 0.
  absl::StatusOr<int64_t> QueryInt64(std::string_view sql);
  // Runs a query that returns one text value ("PRAGMA journal_mode=WAL").
  absl::StatusOr<std::string> QueryText(std::string_view sql);

  // An error status for `rc` on this connection (see SqliteError).
  absl::Status Error(int rc, std::string_view context) const;

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  void Close();

  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace chstream::storage
