// File: ctl/ctl.h
//
// chstreamctl: offline and online maintenance of a chstream SQLite database,
// next to (and safe to run while) chstreamd:
//
//   backup        a consistent copy of a live database, checked before it is
//                 renamed into place;
//   restore       a backup put back in place of a stopped chstreamd's
//                 database, with a new store_id;
//   check         integrity, schema version, counts, head, oldest, store_id;
//   dead-letters  the newest rejected lines;
//   copy-to-postgres
//                 a stopped chstreamd's database moved into an empty
//                 PostgreSQL database, keeping positions and store_id.
//
// Run() is the whole command line tool (main.cc only forwards to it); the
// operations are also callable on their own. Exit codes: kExitOk,
// kExitFailure (the operation failed or the check found a problem),
// kExitUsage (bad command line).
//
// Thread-safety: the functions are stateless; run one operation per
// database at a time from one process.
//
//   return chstream::ctl::Run(args, std::cout, std::cerr);
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/postgres/sqlite_import.h"

namespace chstream::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What `check` found. Counts are of one read snapshot.
struct CheckReport {
  std::string path;
  bool quick = false;                  // quick_check instead of integrity_check
  std::vector<std::string> integrity;  // ["ok"] when sound
  int schema_version = 0;
  int latest_schema_version = 0;  // of this binary
  std::string store_id;           // empty before schema version 3
  uint64_t events = 0;
  uint64_t companies = 0;
  uint64_t dead_letters = 0;
  uint64_t gaps = 0;
  uint64_t head_position = 0;    // 0: no event
  uint64_t oldest_position = 0;  // 0: no event
  uint64_t file_bytes = 0;       // the database file alone (not its WAL)
  // Everything that makes the database unfit to use; empty when OK.
  std::vector<std::string> problems;

  bool ok() const { return problems.empty(); }
};

// Checks the chstream database at `path`, read-only (safe while chstreamd
// runs: it reads one snapshot). An error status when the file cannot be
// read as a chstream database at all (missing, not chstream's, newer
// schema, unreadable); otherwise a report whose `problems` lists what is
// wrong (integrity check failures, unreadable tables).
absl::StatusOr<CheckReport> CheckDatabase(const std::string& path, bool quick);

// Copies the database at `db_path` (live or not) to `out`: the copy is
// written to a temporary file next to `out`, checked with CheckDatabase,
// fsync'ed and renamed over `out`. Refuses an existing `out` unless `force`.
// Returns the copy's report.
absl::StatusOr<CheckReport> Backup(const std::string& db_path,
                                   const std::string& out, bool force,
                                   bool quick);

// Replaces the database at `db_path` with the backup `from`, after checking
// the backup, and gives the result a new store_id. Refuses while another
// process (chstreamd) has `db_path` open, and an existing `db_path` that is
// not a chstream database. Removes the target's stale -wal, -shm and
// -journal. Returns the restored database's report.
absl::StatusOr<CheckReport> Restore(const std::string& from,
                                    const std::string& db_path, bool quick);

// Copies the SQLite database at `db_path` into the empty PostgreSQL
// database at `postgres_url` (storage/postgres/sqlite_import.h: same
// positions, same store_id, refusal of a non-empty target). Refuses while
// another process (chstreamd) has `db_path` open, and holds SQLite's
// exclusive lock on it until the copy is committed, so no chstreamd can
// start on it meanwhile. `db_path` is first migrated to this binary's
// schema version, as chstreamd would at its next start.
absl::StatusOr<storage::pg::SqliteImportReport> CopyToPostgres(
    const std::string& db_path, const std::string& postgres_url);

// The command line tool: `args` without the program name. Writes results to
// `out` and one-line errors to `err`; returns the exit code.
int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err);

}  // namespace chstream::ctl
