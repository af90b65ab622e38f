#include "storage/sqlite.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace chstream::storage {
namespace {

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

absl::Status SqliteError(int rc, sqlite3* db, std::string_view context) {
  std::string file;
  if (db != nullptr) {
    const char* name = sqlite3_db_filename(db, "main");
    if (name != nullptr && *name != '\0') file = name;
  }
  // The extended code is more precise than the primary one, but the message
  // of the connection only describes the most recent failing call.
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = absl::StrCat(
      Av(context), file.empty() ? "" : absl::StrCat(" (", file, ")"), ": ",
      detail, " [sqlite ", rc, "]");
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return absl::FailedPreconditionError(message);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    // The data, not the environment: retrying the same values cannot help
    // (EventWriter isolates and dead-letters the item).
    case SQLITE_TOOBIG:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// ---------------------------------------------------------------- Statement

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)),
      db_(std::exchange(other.db_, nullptr)),
      bind_rc_(std::exchange(other.bind_rc_, 0)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    db_ = std::exchange(other.db_, nullptr);
    bind_rc_ = std::exchange(other.bind_rc_, 0);
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

void Statement::BindInt64(int index, int64_t value) {
  KeepBindError(sqlite3_bind_int64(stmt_, index, value));
}

void Statement::BindText(int index, std::string_view value) {
  // A non-null pointer even for "" so that the value is '' and not NULL.
  KeepBindError(sqlite3_bind_text64(stmt_, index,
                                    value.empty() ? "" : value.data(),
                                    value.size(), SQLITE_STATIC, SQLITE_UTF8));
}

void Statement::BindBlob(int index, std::string_view value) {
  KeepBindError(sqlite3_bind_blob64(stmt_, index,
                                    value.empty() ? "" : value.data(),
                                    value.size(), SQLITE_STATIC));
}

void Statement::BindNull(int index) {
  KeepBindError(sqlite3_bind_null(stmt_, index));
}

void Statement::KeepBindError(int rc) {
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

absl::StatusOr<bool> Statement::Step() {
  if (bind_rc_ != SQLITE_OK) {
    // A failed bind leaves the parameter NULL: running the statement would
    // store NULL where a value was meant (e.g. SQLITE_TOOBIG).
    // (The connection's message is not set by a bind: use the code's.)
    return SqliteError(bind_rc_, nullptr, "bind");
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(rc, db_,
                     absl::StrCat("step \"", sqlite3_sql(stmt_), "\""));
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

void Statement::Reset() {
  bind_rc_ = SQLITE_OK;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::ColumnInt64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string_view Statement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return {reinterpret_cast<const char*>(text),
          static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
}

std::string_view Statement::ColumnBlob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  if (blob == nullptr) return {};
  return {static_cast<const char*>(blob),
          static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
}

// ----------------------------------------------------------------- Database

absl::StatusOr<Database> Database::Open(const std::string& path, int flags) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                           nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status =
        SqliteError(rc, db, absl::StrCat("cannot open SQLite database ", path));
    sqlite3_close_v2(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  return Database(db, path);
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    Close();
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

Database::~Database() { Close(); }

void Database::Close() {
  if (db_ != nullptr) {
    // _v2 defers the close if a statement is still alive instead of failing.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

absl::Status Database::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  sqlite3_free(error);
  if (rc != SQLITE_OK) {
    return Error(rc, absl::StrCat("exec \"", sql.substr(0, 80), "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Database::Prepare(std::string_view sql,
                                            bool persistent) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              persistent ? SQLITE_PREPARE_PERSISTENT : 0, &stmt,
                              nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Error(rc, absl::StrCat("prepare \"", Av(sql), "\""));
  }
  return Statement(stmt, db_);
}

absl::StatusOr<int64_t> Database::QueryInt64(std::string_view sql) {
  absl::StatusOr<Statement> st = Prepare(sql, /*persistent=*/false);
  if (!st.ok()) return st.status();
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) return row.status();
  return *row ? st->ColumnInt64(0) : 0;
}

absl::StatusOr<std::string> Database::QueryText(std::string_view sql) {
  absl::StatusOr<Statement> st = Prepare(sql, /*persistent=*/false);
  if (!st.ok()) return st.status();
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) return row.status();
  return *row ? std::string(st->ColumnText(0)) : std::string();
}

absl::Status Database::Error(int rc, std::string_view context) const {
  return SqliteError(rc, db_, context);
}

}  // namespace chstream::storage
