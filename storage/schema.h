// File: storage/schema.h
//
// The on-disk schema of a chstream database and its forward-only migrations.
//
// A chstream database is an SQLite file whose header carries
// PRAGMA application_id = kApplicationId and whose PRAGMA user_version is the
// number of migrations applied. Migration i (1-based) takes the schema from
// version i-1 to version i, in one transaction that also sets user_version,
// so a crash leaves the file at some whole version. Migrations are never
// edited once released: a change to the schema is a new migration appended to
// the list.
//
//   version 1: events, companies, stream_state, dead_letters;
//              unique (stream, timepoint) and published_at indexes
//   version 2: gaps (timepoint gaps recorded after an upstream 416)
//   version 3: store_identity: the store's random id (store_id, created
//              here for new and older databases alike) and whether a
//              process has the store open with synchronous=normal
//   version 4: resources: the current state of every resource of every
//              stream, keyed by resource_uri (like companies: the data is
//              referenced by event position), with an index by
//              (company_number, resource_kind, resource_uri); filled from
//              the events already stored
//   version 5: companies.pruned_data_json and pruned_data_pb (and the
//              same on resources): a row's current data, copied from its
//              event when retention deleted the event
//
// Deliberately absent: an index on events(company_number). Company numbers
// arrive in random order, so such an index dirties a random page per event;
// it halved write throughput in bench/storage_writer_bench. Company-filtered
// reads scan positions instead (bounded by ReadPage's max_scan).
//
// Times are integer microseconds since the Unix epoch (UTC). String lists
// (fields_changed, sic_codes) are JSON arrays of strings.
//
// Thread-safety: the functions are stateless; the Database passed in must not
// be used by another thread during the call.
//
//   CHS_ASSIGN_OR_RETURN(DatabaseFile file, InspectDatabaseFile(path, true));
//   ... open read-write ...
//   CHS_RETURN_IF_ERROR(Migrate(db, kLatestSchemaVersion));
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/sqlite.h"

namespace chstream::storage {

// "CHST" in ASCII: marks an SQLite file as a chstream database.
inline constexpr int32_t kApplicationId = 0x43485354;

struct Migration {
  int version;              // the user_version after this migration
  const char* description;  // one line, for logs
  const char* sql;          // DDL run inside the migration's transaction
};

// All migrations in order; element i has version i + 1.
absl::Span<const Migration> Migrations();

// The schema version this binary writes (the number of migrations).
int LatestSchemaVersion();

// What InspectDatabaseFile found, without modifying anything.
struct DatabaseFile {
  bool is_new = false;   // missing or empty (0 bytes): create it
  int user_version = 0;  // for an existing chstream database
};

// Decides whether `path` may be opened as a chstream database, reading it
// only (the file is never written, whatever the outcome):
// - missing or 0 bytes: a new database;
// - not an SQLite file, or an SQLite file with another application_id:
//   FailedPrecondition;
// - a user_version newer than LatestSchemaVersion(): FailedPrecondition;
// - unreadable structure, or (with `check_integrity`) a failed
//   PRAGMA quick_check: DataLoss.
// Every error message names the path and the reason. Its reads wait up to
// `busy_timeout` for locks held by another process, such as the WAL recovery
// that follows a crash (SQLITE_BUSY_RECOVERY); beyond that: Unavailable.
absl::StatusOr<DatabaseFile> InspectDatabaseFile(
    const std::string& path, bool check_integrity,
    absl::Duration busy_timeout = absl::Seconds(5));

// Applies the migrations after the database's current user_version up to and
// including `target_version`, each in its own transaction, stamping
// application_id and user_version. A database already at or beyond
// `target_version` is left alone. REQUIRES: 0 <= target_version <=
// LatestSchemaVersion() and `db` opened read-write.
absl::Status Migrate(Database& db, int target_version);

}  // namespace chstream::storage
