#include "storage/postgres/pg_schema.h"

#include <iterator>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace chstream::storage::pg {
namespace {

struct PgMigration {
  int version;
  const char* description;
  const char* sql;  // run in the migration's transaction
};

// Released migrations: append only, never edit. Each later migration ends
// by setting cluster.schema_version (done by PgMigrate).
constexpr PgMigration kMigrations[] = {
    {1,
     "core tables: events, companies, stream_state, dead_letters, gaps, "
     "store_counters, cluster",
     R"sql(
CREATE TABLE events (
  position        bigint      PRIMARY KEY,  -- dense, from cluster.head
  stream          text        NOT NULL,
  timepoint       bigint      NOT NULL,
  type            smallint    NOT NULL,     -- 1 changed, 2 deleted
  resource_kind   text        NOT NULL,
  resource_id     text        NOT NULL,
  resource_uri    text        NOT NULL,
  company_number  text        NOT NULL,     -- '' where none applies
  published_at    timestamptz NOT NULL,
  received_at     timestamptz NOT NULL,
  fields_changed  text        NOT NULL,     -- JSON array of strings
  data_json       text        NOT NULL,     -- as sent; '' when no data
  data_pb         bytea       NOT NULL,     -- google.protobuf.Struct
  UNIQUE (stream, timepoint)
);
CREATE INDEX events_published_at ON events (published_at);

CREATE TABLE companies (
  company_number      text        PRIMARY KEY,
  company_name        text        NOT NULL,
  company_status      text        NOT NULL,
  company_type        text        NOT NULL,
  jurisdiction        text        NOT NULL,
  date_of_creation    text        NOT NULL,
  date_of_cessation   text        NOT NULL,
  roa_premises        text        NOT NULL,
  roa_address_line_1  text        NOT NULL,
  roa_address_line_2  text        NOT NULL,
  roa_locality        text        NOT NULL,
  roa_region          text        NOT NULL,
  roa_postal_code     text        NOT NULL,
  roa_country         text        NOT NULL,
  roa_care_of         text        NOT NULL,
  roa_po_box          text        NOT NULL,
  sic_codes           text        NOT NULL,  -- JSON array of strings
  deleted             boolean     NOT NULL,
  last_timepoint      bigint      NOT NULL,
  last_position       bigint      NOT NULL,
  updated_at          timestamptz NOT NULL,  -- received_at of the last event
  -- The event whose data_json/data_pb is the company's current data; 0
  -- when none carried data.
  data_position       bigint      NOT NULL
);

CREATE TABLE stream_state (
  stream             text        PRIMARY KEY,
  last_timepoint     bigint      NOT NULL,
  last_published_at  timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL
);

CREATE TABLE dead_letters (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream       text        NOT NULL,
  received_at  timestamptz NOT NULL,
  reason       text        NOT NULL,
  raw          bytea       NOT NULL,
  timepoint    bigint                 -- NULL when it could not be read
);

CREATE TABLE gaps (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream          text        NOT NULL,
  last_timepoint  bigint      NOT NULL,
  recorded_at     timestamptz NOT NULL
);
CREATE INDEX gaps_stream ON gaps (stream, id);

-- Row counts kept by the commit transaction, so that Stats() (metrics,
-- GetStatus) never counts a large table.
CREATE TABLE store_counters (
  id            int    PRIMARY KEY CHECK (id = 1),
  companies     bigint NOT NULL,
  dead_letters  bigint NOT NULL
);
INSERT INTO store_counters VALUES (1, 0, 0);

CREATE TABLE cluster (
  id int PRIMARY KEY CHECK (id = 1),
  store_id text NOT NULL,
  schema_version int NOT NULL,
  leader_epoch bigint NOT NULL DEFAULT 0,
  leader_id text,
  head bigint NOT NULL DEFAULT 0,
  heartbeat_at timestamptz
);
COMMENT ON TABLE cluster IS 'chstream store';
-- gen_random_uuid() (core since PostgreSQL 13) is 122 random bits:
-- 32 lowercase hex digits, the same shape as an SQLite store_id.
INSERT INTO cluster (id, store_id, schema_version)
  VALUES (1, replace(gen_random_uuid()::text, '-', ''), 1);
)sql"},
    {2,
     "resources (filled from the stored events), pruned_data on current-state "
     "rows, store_counters.event_bytes (retention)",
     R"sql(
-- The current state of every resource of every stream, keyed by
-- resource_uri (SQLite schema v4): the last event's kind, type, timepoint
-- and position; its last non-empty company number; the position of the
-- last event that carried data (0: none), whose data it is. Byte order
-- (COLLATE "C") as on SQLite, so that pages and cursors agree.
CREATE TABLE resources (
  resource_uri      text COLLATE "C" PRIMARY KEY,
  resource_kind     text COLLATE "C" NOT NULL,
  company_number    text COLLATE "C" NOT NULL,
  deleted           boolean     NOT NULL,
  last_timepoint    bigint      NOT NULL,
  last_position     bigint      NOT NULL,
  updated_at        timestamptz NOT NULL,  -- received_at of the last event
  data_position     bigint      NOT NULL,
  -- NULL while the event at data_position holds the data; a copy of it
  -- once retention deleted that event (SQLite schema v5).
  pruned_data_json  text,
  pruned_data_pb    bytea
);
-- ListCompanyResources: a company's resources by kind, then URI.
CREATE INDEX resources_company
  ON resources (company_number, resource_kind, resource_uri);
INSERT INTO resources (resource_uri, resource_kind, company_number, deleted,
                       last_timepoint, last_position, updated_at,
                       data_position)
SELECT l.resource_uri, e.resource_kind, COALESCE(n.company_number, ''),
       e.type = 2, e.timepoint, e.position, e.received_at,
       COALESCE(l.data_position, 0)
FROM (SELECT resource_uri, max(position) AS position,
             max(position) FILTER (WHERE data_json <> ''
                                   OR length(data_pb) > 0) AS data_position,
             max(position) FILTER (WHERE company_number <> '')
               AS number_position
      FROM events WHERE resource_uri <> '' GROUP BY resource_uri) l
JOIN events e ON e.position = l.position
LEFT JOIN events n ON n.position = l.number_position;

ALTER TABLE companies ADD COLUMN pruned_data_json text,
                      ADD COLUMN pruned_data_pb bytea;

-- What an event takes in the events table, roughly: its variable-length
-- values as stored (compressed, TOAST included: pg_column_size) plus 100
-- bytes of row header, fixed columns, short texts and index entries.
-- --retain_bytes compares store_counters.event_bytes, the sum over the
-- stored events, with its cap: the table's own size never shrinks (freed
-- space is reused, not returned), so it cannot say when to stop.
CREATE FUNCTION chstream_event_bytes(resource_uri text, fields_changed text,
                                     data_json text, data_pb bytea)
  RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT 100 + pg_column_size($1) + pg_column_size($2)
            + pg_column_size($3) + pg_column_size($4) $$;
ALTER TABLE store_counters ADD COLUMN event_bytes bigint NOT NULL DEFAULT 0;
UPDATE store_counters SET event_bytes = (
  SELECT COALESCE(sum(chstream_event_bytes(resource_uri, fields_changed,
                                           data_json, data_pb)), 0)
  FROM events);
  )sql"},
    // The stream status recorded by the ingest leader
    // (server/stream_status_table.h).
    {3,
     "stream_status: each stream's state as the ingest leader last "
     "recorded it, shown by every replica",
     R"sql(
CREATE TABLE stream_status (
  stream               text             PRIMARY KEY,
  state                text             NOT NULL,  -- STREAMING, BACKING_OFF...
  last_timepoint       bigint,                     -- last committed
  last_published_at    timestamptz,
  last_event_at        timestamptz,
  last_heartbeat_at    timestamptz,
  connected_since      timestamptz,                -- NULL: not connected
  next_retry_at        timestamptz,
  events_total         bigint           NOT NULL,
  heartbeats_total     bigint           NOT NULL,
  malformed_total      bigint           NOT NULL,
  duplicates_total     bigint           NOT NULL,
  reconnects_total     bigint           NOT NULL,
  bytes_total          bigint           NOT NULL,
  partial_lines_total  bigint           NOT NULL,
  last_error           text             NOT NULL,
  last_http_status     int              NOT NULL,
  lag_seconds          double precision NOT NULL,
  reader_wait_seconds  double precision NOT NULL,
  reconnects_by_cause  jsonb            NOT NULL,  -- {"network_error": 2}
  http_responses       jsonb            NOT NULL,  -- {"200": 5}
  gaps                 jsonb            NOT NULL,  -- [{"last_timepoint", "recorded_at"}]
  replica_id           text             NOT NULL,  -- the leader that recorded it
  leader_epoch         bigint           NOT NULL,
  recorded_at          timestamptz      NOT NULL
);
)sql"},
};

}  // namespace

int PgLatestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

absl::StatusOr<PgSchemaInfo> PgMigrate(PgConnection& conn,
                                       const std::string& where) {
  auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to use PostgreSQL database ", where, ": ", why,
                     "; the database was left untouched"));
  };
  CHS_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
  absl::Status status = [&]() -> absl::Status {
    CHS_RETURN_IF_ERROR(conn.Exec(absl::StrCat("SELECT pg_advisory_xact_lock(",
                                               kMigrationLockKey, ")"))
                            .status());
    return absl::OkStatus();
  }();
  PgSchemaInfo info;
  if (status.ok()) {
    status = [&]() -> absl::Status {
      CHS_ASSIGN_OR_RETURN(
          PgResult marker,
          conn.Exec("SELECT to_regclass('cluster') IS NOT NULL, "
                    "obj_description(to_regclass('cluster'), 'pg_class'), "
                    "(SELECT count(*) FROM pg_catalog.pg_class c JOIN "
                    "pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind IN "
                    "('r', 'v', 'm', 'p', 'f'))"));
      const bool has_cluster = marker.GetBool(0, 0);
      if (!has_cluster) {
        const int64_t tables = marker.GetInt64(0, 2);
        if (tables > 0) {
          return refuse(
              absl::StrCat("not a chstream database (its schema has ", tables,
                           " tables or views and no chstream cluster table)"));
        }
        info.from_version = 0;
      } else {
        if (marker.IsNull(0, 1) || marker.Get(0, 1) != kClusterComment) {
          return refuse(
              "not a chstream database (its cluster table is not "
              "chstream's)");
        }
        CHS_ASSIGN_OR_RETURN(
            PgResult row,
            conn.Exec("SELECT schema_version FROM cluster WHERE id = 1"));
        if (row.rows() != 1) {
          return refuse("not a chstream database (cluster has no row)");
        }
        info.from_version = static_cast<int>(row.GetInt64(0, 0));
        if (info.from_version > PgLatestSchemaVersion()) {
          return refuse(absl::StrCat("schema version ", info.from_version,
                                     " is newer than this binary understands (",
                                     PgLatestSchemaVersion(),
                                     "); upgrade chstream"));
        }
        if (info.from_version < 1) {
          return refuse(
              absl::StrCat("invalid schema version ", info.from_version));
        }
      }
      for (const PgMigration& m : kMigrations) {
        if (m.version <= info.from_version) continue;
        absl::Status s = conn.Exec(m.sql).status();
        if (s.ok() && m.version > 1) {
          s = conn.Exec(absl::StrCat("UPDATE cluster SET schema_version = ",
                                     m.version, " WHERE id = 1"))
                  .status();
        }
        if (!s.ok()) {
          return absl::Status(
              s.code(),
              absl::StrCat("migration to PostgreSQL schema version ", m.version,
                           " (", m.description, ") failed: ", s.message()));
        }
      }
      CHS_ASSIGN_OR_RETURN(
          PgResult row,
          conn.Exec(
              "SELECT schema_version, store_id FROM cluster WHERE id = 1"));
      info.version = static_cast<int>(row.GetInt64(0, 0));
      info.store_id = std::string(row.Get(0, 1));
      return absl::OkStatus();
    }();
  }
  if (!status.ok()) {
    conn.Exec("ROLLBACK").IgnoreError();
    return status;
  }
  CHS_RETURN_IF_ERROR(conn.Exec("COMMIT").status());
  return info;
}

}  // namespace chstream::storage::pg
