// File: tests/testing/postgres_server.h
//
// A throwaway PostgreSQL 15 server for tests that need the real thing
// (PostgresStore, leader election, LISTEN/NOTIFY): initdb into a fresh
// directory, the postmaster on a free 127.0.0.1 port, one fresh database per
// test, crash/stop/restart for failover tests, and always shut down at the
// end.
//
//   auto server = PostgresServer::Start();          // ~1-3 s
//   ASSERT_TRUE(server.ok()) << server.status();
//   absl::StatusOr<std::string> uri = (*server)->CreateDatabase();
//   // uri: "postgresql://postgres@127.0.0.1:PORT/t_1"
//   ASSERT_TRUE((*server)->Execute(*uri, "CREATE TABLE t (x int)").ok());
//   (*server)->Kill();       // crash: SIGKILL to the postmaster and backends
//   (*server)->Restart();    // crash recovery on the same port and data
//
// Or one server per test binary: SharedPostgresServer().
//
// Running as root (the project's CI and Bazel do): initdb and postgres refuse
// to run as root, so the children run through `unshare --user
// --map-user=<postgres uid>`: in a user namespace in which they are the
// `postgres` user (created by Debian's postgresql-common; `nobody`
// otherwise) while keeping root's file access outside. Bazel's linux-sandbox
// maps only uid 0 in its own user namespace, so a real setuid() fails there;
// it is the fallback where user namespaces are unavailable.
// The directory is created under /tmp, not TEST_TMPDIR: a Unix socket path
// must stay under 108 bytes, and under the setuid fallback the user could
// not traverse /root (mode 0700), where TEST_TMPDIR lies. It is removed when
// the server is destroyed (the server log is first copied to
// TEST_UNDECLARED_OUTPUTS_DIR, so a failed test keeps it).
//
// The postmaster gets PR_SET_PDEATHSIG=SIGQUIT (PostgreSQL's immediate
// shutdown), so even a test binary that crashes does not leave a server
// behind. The signal fires when the *thread* that started the server exits:
// start (and Restart) servers from the test's main thread.
//
// The server runs with fsync=off: tests kill processes, never the machine,
// so durability past the OS page cache is not needed. synchronous_commit
// stays on: with it off a commit returns before its WAL is even written to
// the OS, and a Kill() loses the last few hundred ms of commits (seen as a
// flaky crash test under --config=tsan). Without fsync, on costs one write()
// per commit.
//
// Thread-safety: Execute, QueryValue, CreateDatabase and the accessors may be
// called from any thread; Stop, Kill, Restart and destruction from one thread
// at a time (the main thread, see above).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace chstream::testing {

class PostgresServer {
 public:
  struct Options {
    // Debian's postgresql-15 (tools/setup installs it).
    std::string bin_dir = "/usr/lib/postgresql/15/bin";
    absl::Duration start_timeout = absl::Seconds(60);
    // If set, TCP connections need this password (scram-sha-256) for the
    // superuser `postgres`; Uri() then includes it. Empty: trust.
    std::string password;
    // Extra server settings, "name=value" each (passed as -c name=value).
    std::vector<std::string> settings;
  };

  // initdb + start + wait until it accepts connections.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(
      const Options& options);
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start() {
    return Start(Options());
  }

  // Fast shutdown (as `pg_ctl stop -m fast`), then the directory is removed.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // The directory holding the server's Unix socket (.s.PGSQL.<port>).
  const std::string& socket_dir() const { return dir_; }
  // pid of the postmaster, or -1 while stopped.
  pid_t pid() const { return pid_; }

  // libpq URI for `database` as the superuser `postgres`, over TCP:
  // "postgresql://postgres@127.0.0.1:PORT/DATABASE".
  std::string Uri(absl::string_view database = "postgres") const;

  // Creates a fresh, empty database t_<n> and returns its URI.
  absl::StatusOr<std::string> CreateDatabase();

  // Runs `sql` (one or more statements, no results) on the database at `uri`
  // over a new connection.
  absl::Status Execute(absl::string_view uri, absl::string_view sql);
  // Runs a query on a new connection; returns the first column of the first
  // row ("" for NULL), or NotFound if there is no row.
  absl::StatusOr<std::string> QueryValue(absl::string_view uri,
                                         absl::string_view sql);

  // Fast shutdown: SIGINT to the postmaster (what `pg_ctl stop -m fast`
  // sends): clients are disconnected, a checkpoint is written. Waits for the
  // exit. No-op when stopped.
  absl::Status Stop();
  // A crash: SIGKILL to the postmaster and every backend. The next start runs
  // crash recovery. Waits until all of them are gone.
  absl::Status Kill();
  // Starts the stopped or killed server again on the same port and data;
  // Stop()s it first if it is running (as `pg_ctl restart`).
  absl::Status Restart();

  bool running() const { return pid_ > 0; }
  // The server's log so far.
  std::string Log() const;

 private:
  PostgresServer(Options options, std::string dir, int drop, uid_t uid,
                 gid_t gid);
  absl::Status InitDb();
  // Starts the postmaster; waits until it accepts connections.
  absl::Status StartPostmaster();
  absl::Status WaitForExit(absl::Duration timeout);

  const Options options_;
  const std::string dir_;
  const int drop_;   // how children drop root (Drop in the .cc)
  const uid_t uid_;  // the unprivileged user the server runs as
  const gid_t gid_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::atomic<int> next_database_{1};
};

// One server per test binary, started on first call (from the main thread)
// and stopped at exit. Tests share it and take a database each with
// CreateDatabase(). Returns the start error on every call if it failed.
absl::StatusOr<PostgresServer*> SharedPostgresServer();

}  // namespace chstream::testing
