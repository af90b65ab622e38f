// File: storage/postgres/sqlite_import.h
//
// Moves a chstream SQLite database into an empty PostgreSQL chstream
// database, keeping every position and the store_id, so that clients
// resuming with `after_position` and `expected_store_id` carry on against
// the PostgreSQL replicas as if nothing had changed. Used by
// `chstreamctl copy-to-postgres` (ctl/ctl.h), which first makes sure no
// chstreamd has the SQLite file open.
//
// What is copied: every table both schemas have (events, companies,
// stream_state, dead_letters, gaps, and resources once PostgreSQL has it),
// column by column by name, with each value converted to the PostgreSQL
// column's type (microseconds -> timestamptz, 0/1 -> boolean, BLOB ->
// bytea). The store_id goes to `cluster.store_id`, the last position to
// `cluster.head`, the row counts to `store_counters`, and identity
// sequences (dead_letters.id, gaps.id) continue after the copied ids.
// Rows go by COPY in batches of a few MB; everything happens in one
// PostgreSQL transaction, so a failure leaves the target as empty as it was.
// Before committing, the counts of every table, the head and the oldest
// position are compared with the source.
//
// Refused, with nothing written: a target that holds any chstream data
// (head > 0 or any row in a copied table), a target with non-chstream
// tables or a newer schema (PgMigrate's refusals), a target some chstreamd
// is connected to (pg_stat_activity: application_name chstream*, as the
// store, election, listener and status connections name themselves), and a
// source whose data has no place in the target's schema (a SQLite-only
// column holding values, e.g. the data retention kept for pruned events
// before PostgreSQL has those columns). The resources table, derived from
// the events, is skipped with a note where PostgreSQL does not have it yet
// (before PostgreSQL schema v2), unless it holds data kept for pruned
// events; store_counters columns this tool cannot compute are refused.
//
// The password in `postgres_url` never appears in the report or in an
// error (see RedactPostgresUrl).
//
// Thread-safety: stateless; the caller owns `source` for the duration.
//
//   CHS_ASSIGN_OR_RETURN(SqliteImportReport r,
//                        pg::CopySqliteToPostgres(db, url));
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/sqlite.h"

namespace chstream::storage::pg {

struct SqliteImportReport {
  std::string target;  // the URL without user info, path or query
  int target_schema_version = 0;
  std::string store_id;  // of the PostgreSQL store after the copy
  // False when the source's store_id could not be kept (see notes).
  bool kept_store_id = true;
  uint64_t head_position = 0;    // 0: no event
  uint64_t oldest_position = 0;  // 0: no event
  // Rows copied per table, in copy order.
  std::vector<std::pair<std::string, uint64_t>> tables;
  uint64_t bytes_sent = 0;  // COPY data sent
  // What was not copied or changed, and why.
  std::vector<std::string> notes;
};

// Copies `source` (an open chstream SQLite database at this binary's schema
// version, which no other process writes: the caller holds its lock) into
// the PostgreSQL database at `postgres_url`, creating chstream's schema
// there if it is empty. See the file comment for what is refused.
absl::StatusOr<SqliteImportReport> CopySqliteToPostgres(
    Database& source, const std::string& postgres_url);

}  // namespace chstream::storage::pg
