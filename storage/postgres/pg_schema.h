// File: storage/postgres/pg_schema.h
//
// The PostgreSQL schema of a chstream store and its forward-only
// migrations. The schema lives in the database's current schema (normally
// `public`). Its marker and version are the one-row `cluster` table:
//
//   cluster(id = 1, store_id, schema_version, leader_epoch, leader_id, head,
//           heartbeat_at)
//
// shared with leader election (pgcluster): `leader_epoch`/`leader_id` are
// written by the elected leader, `head` is the last committed position
// (positions are assigned from it inside the commit transaction), and the
// table carries COMMENT 'chstream store' so that a foreign table named
// `cluster` is not mistaken for ours.
//
// PostgreSQL schema versions are numbered on their own (SQLite has its own
// list in storage/schema.h):
//   version 1: events, companies, stream_state, dead_letters, gaps,
//              store_counters, cluster (store_id created here)
//   version 2: resources (the current state of every resource, as SQLite's
//              v4, filled from the stored events); pruned_data_json/_pb on
//              companies and resources (retention copies a pruned event's
//              data there, as SQLite's v5); store_counters.event_bytes and
//              chstream_event_bytes() (the stored size --retain_bytes caps)
//   version 3: stream_status (each stream's state as the ingest leader last
//              recorded it, so that every replica shows the same picture)
//
// Migrations run under a transaction-level advisory lock (kMigrationLockKey),
// so replicas starting together on an empty database create it once.
// A database that has tables but no chstream `cluster` table, or a
// schema_version newer than this binary's, is refused without change.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "storage/postgres/pg_connection.h"

namespace chstream::storage::pg {

// pg_advisory_xact_lock key serialising migrations ("CHST" << 32 | 1).
// Leader election uses other keys.
inline constexpr int64_t kMigrationLockKey = 0x4348535400000001;

// The comment on the cluster table that marks a chstream database.
inline constexpr char kClusterComment[] = "chstream store";

int PgLatestSchemaVersion();

struct PgSchemaInfo {
  int from_version = 0;  // 0 for a database created now
  int version = 0;       // after migration
  std::string store_id;
};

// Creates or migrates the schema on `conn` (which must not be in a
// transaction), or refuses a foreign or newer database (FailedPrecondition,
// nothing changed). `where` names the database in messages (redacted URL).
absl::StatusOr<PgSchemaInfo> PgMigrate(PgConnection& conn,
                                       const std::string& where);

}  // namespace chstream::storage::pg
