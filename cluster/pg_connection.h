// File: cluster/pg_connection.h
//
// A small owner of one libpq connection for the cluster parts (leader
// election, commit listener): connect from a libpq URI with overriding
// parameters (keepalives, application_name), run statements with text
// parameters, and tell a lost connection (Unavailable) from a failed
// statement (Internal / FailedPrecondition).
//
// Error messages carry libpq's text, never the URI (it may hold a
// password).
//
// Thread-safety: none; one thread uses a connection at a time.
//
//   CHS_ASSIGN_OR_RETURN(auto conn, PgConnection::Connect(url, {}));
//   CHS_ASSIGN_OR_RETURN(PgResult r, conn->Exec("SELECT $1::int", {"7"}));
//   PQgetvalue(r.get(), 0, 0);  // "7"
#pragma once

#include <postgresql/libpq-fe.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chstream::cluster {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// libpq connection keywords and values, applied over the URI's.
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
PgParams KeepaliveParams(const std::string& application_name);

class PgConnection {
 public:
  // Connects to `url` (a libpq URI or key=value string) with `params`
  // overriding it. Unavailable with libpq's message if it fails.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(
      const std::string& url, const PgParams& params);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  PGconn* get() const { return conn_; }
  // False once libpq has seen the connection fail.
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  // The server process serving this session (for pg_terminate_backend).
  int backend_pid() const { return PQbackendPID(conn_); }

  // Runs one statement with text parameters ($1, $2...). Unavailable when
  // the connection is lost (the caller should reconnect), Internal for any
  // other failure, with the server's message.
  absl::StatusOr<PgResult> Exec(const std::string& sql,
                                const std::vector<std::string>& params = {});

 private:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}
  PGconn* const conn_;
};

// The rows a command changed ("UPDATE 1" -> 1).
int AffectedRows(const PgResult& result);

}  // namespace chstream::cluster
