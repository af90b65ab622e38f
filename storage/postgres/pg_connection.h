// File: storage/postgres/pg_connection.h
//
// A thin RAII layer over one libpq connection (PGconn), the one wrapper
// every PostgreSQL user in chstream goes through (the store, chstreamctl
// copy-to-postgres, and the cluster parts: leader election, commit listener,
// stream status table): simple queries, named prepared statements
// (re-prepared after a reconnect), parameterised queries with text or binary
// parameters, and COPY FROM STDIN. Errors become absl::Status with the
// SQLSTATE mapped to a code (a lost connection: Unavailable; serialization
// failures and deadlocks: Aborted; any other failed statement: mostly
// Internal). No error message ever contains the connection's password:
// libpq's messages do not carry it, and the password is scrubbed from them
// anyway.
//
// Thread-safety: none; one thread uses a connection at a time.
//
//   CHS_ASSIGN_OR_RETURN(PgConnection c, PgConnection::Connect(url, "me"));
//   CHS_RETURN_IF_ERROR(c.Prepare("head", "SELECT head FROM cluster"));
//   CHS_ASSIGN_OR_RETURN(PgResult r, c.ExecPrepared("head", {}));
//   int64_t head = r.GetInt64(0, 0);
//
//   // A session whose loss is noticed within seconds (the cluster parts):
//   CHS_ASSIGN_OR_RETURN(PgConnection c,
//       PgConnection::Connect(url, "chstream-election:a", KeepaliveParams()));
#pragma once

#include <postgresql/libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chstream::storage::pg {

// One query parameter: NULL, text (format 0) or binary bytes (format 1,
// used for bytea).
struct PgParam {
  std::optional<std::string> value;
  bool binary = false;

  static PgParam Null() { return PgParam{}; }
  static PgParam Text(std::string v) { return PgParam{std::move(v), false}; }
  static PgParam Int(int64_t v) { return Text(std::to_string(v)); }
  static PgParam Bytes(std::string v) { return PgParam{std::move(v), true}; }
};

// libpq connection keywords and values (PQconnectdbParams), applied over
// the URL's.
using PgParams = std::vector<std::pair<std::string, std::string>>;

// Parameters for a connection whose loss must be noticed within ~15 s even
// when the peer vanishes without a FIN (host gone, partition), on both
// sides:
//   client (libpq): TCP keepalive after 5 s idle, then every 2 s, dead after
//     3 unanswered probes (5 + 2 * 3 = 11 s); tcp_user_timeout 10 s for data
//     that is never acknowledged;
//   server (per session, via `options`): the same tcp_keepalives_idle /
//     _interval / _count and tcp_user_timeout, so the server ends the dead
//     leader's session, and with it its advisory lock, within ~11 s.
//     Equivalent postgresql.conf settings for every session:
//     tcp_keepalives_idle = 5, tcp_keepalives_interval = 2,
//     tcp_keepalives_count = 3, tcp_user_timeout = 10000.
// Also connect_timeout = 5 s and lock_timeout = 5 s (a statement never
// waits long for a row lock: the caller retries on its next poll).
// Callers may append their own `-c name=value` settings to "options".
PgParams KeepaliveParams();

// A query result (text format). Owns the PGresult.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r, &PQclear) {}

  const PGresult* raw() const { return r_.get(); }
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  int columns() const { return r_ ? PQnfields(r_.get()) : 0; }
  bool IsNull(int row, int col) const {
    return PQgetisnull(r_.get(), row, col) != 0;
  }
  std::string_view Get(int row, int col) const {
    return std::string_view(
        PQgetvalue(r_.get(), row, col),
        static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  // A bigint/int/smallint column (0 for NULL or malformed text).
  int64_t GetInt64(int row, int col) const;
  bool GetBool(int row, int col) const { return Get(row, col) == "t"; }
  // A bytea column in hex output format ("\x0a1b..."), decoded.
  std::string GetBytea(int row, int col) const;
  // The number of rows a command (UPDATE, INSERT...) affected.
  int64_t AffectedRows() const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_{nullptr, &PQclear};
};

class PgConnection {
 public:
  // Connects to `url` (a libpq URI or conninfo string; PGPASSWORD, .pgpass,
  // PGSSLMODE... apply). `application_name` is shown in pg_stat_activity.
  // `params` (e.g. KeepaliveParams()) override the URL's keywords, the
  // application name and the default connect_timeout (10 s).
  // Unavailable when the server cannot be reached, PermissionDenied for a
  // refused password, NotFound for a missing database or role.
  static absl::StatusOr<PgConnection> Connect(
      const std::string& url, const std::string& application_name,
      const PgParams& params = {});

  PgConnection(PgConnection&&) = default;
  PgConnection& operator=(PgConnection&&) = default;
  ~PgConnection() = default;

  PGconn* get() const { return conn_.get(); }
  // False once libpq has seen the connection fail (or after a move).
  bool healthy() const {
    return conn_ != nullptr && PQstatus(conn_.get()) == CONNECTION_OK;
  }
  // The server process serving this session (for pg_terminate_backend);
  // 0 without a connection.
  int backend_pid() const {
    return conn_ != nullptr ? PQbackendPID(conn_.get()) : 0;
  }

  // Reconnects if the connection was lost (after a server restart, a network
  // failure), runs the session setup again and re-prepares every statement
  // Prepare()d so far. A healthy connection that is idle in a failed or open
  // transaction is rolled back. Cheap when healthy.
  absl::Status EnsureReady();

  // Runs `sql` now and again at the start of every new session after a
  // reconnect (before re-preparing statements): e.g. temp tables.
  absl::Status AddSessionSql(const std::string& sql);

  // Runs `sql` (one or more statements, no parameters) as a simple query.
  absl::StatusOr<PgResult> Exec(std::string_view sql);
  // A one-off parameterised query (not prepared).
  absl::StatusOr<PgResult> Query(std::string_view sql,
                                 const std::vector<PgParam>& params);
  // Prepares `sql` under `name` on this session (and again after every
  // reconnect).
  absl::Status Prepare(const std::string& name, const std::string& sql);
  absl::StatusOr<PgResult> ExecPrepared(const std::string& name,
                                        const std::vector<PgParam>& params);
  // COPY ... FROM STDIN with `data` in COPY text format.
  absl::Status CopyIn(std::string_view copy_sql, std::string_view data);

  // Turns libpq's last error (or `result`'s) into a Status; public for the
  // callers' own messages (e.g. after PQconsumeInput). Unavailable, with
  // "connection lost" in the message, once the connection has failed.
  absl::Status Error(std::string_view what, const PGresult* result) const;

 private:
  PgConnection() = default;
  absl::StatusOr<PgResult> Check(PGresult* r, std::string_view what);
  absl::Status SetUpSession();

  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_{nullptr, &PQfinish};
  std::string password_;  // scrubbed from messages
  std::vector<std::string> session_sql_;
  std::vector<std::pair<std::string, std::string>> prepared_;
};

// Appends `s` to a COPY text-format row (escaping \, tab, newline, CR).
void AppendCopyText(std::string* out, std::string_view s);
// Appends `bytes` as a bytea value in COPY text format ("\\x0a1b...").
void AppendCopyBytea(std::string* out, std::string_view bytes);
// A PostgreSQL array literal of text values: {"a","b\"c"}.
std::string TextArrayLiteral(const std::vector<std::string>& values);
// A timestamptz literal in UTC with microseconds.
std::string TimestampLiteral(int64_t unix_micros);

// The SQL expression that reads a timestamptz column as Unix microseconds.
std::string MicrosOf(std::string_view column);

// A libpq URL with its user info, path and query removed
// (log::RedactUrl), or "[conninfo redacted]" for a key=value conninfo
// string, so that no password can leak.
std::string RedactPostgresUrl(std::string_view url);

}  // namespace chstream::storage::pg
