#include "storage/schema.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace chstream::storage {
namespace {

// Released migrations: append only, never edit.
constexpr Migration kMigrations[] = {
    {1, "core tables: events, companies, stream_state, dead_letters",
     R"sql(
CREATE TABLE events (
  position        INTEGER PRIMARY KEY,  -- dense, assigned by the writer
  stream          TEXT    NOT NULL,
  timepoint       INTEGER NOT NULL,
  type            INTEGER NOT NULL,     -- 1 changed, 2 deleted
  resource_kind   TEXT    NOT NULL,
  resource_id     TEXT    NOT NULL,
  resource_uri    TEXT    NOT NULL,
  company_number  TEXT    NOT NULL,     -- '' where none applies
  published_at    INTEGER NOT NULL,     -- microseconds since the epoch
  received_at     INTEGER NOT NULL,     -- microseconds since the epoch
  fields_changed  TEXT    NOT NULL,     -- JSON array of strings
  data_json       TEXT    NOT NULL,     -- '' when the event had no data
  data_pb         BLOB    NOT NULL      -- opaque (google.protobuf.Struct)
);
CREATE UNIQUE INDEX events_stream_timepoint ON events(stream, timepoint);
CREATE INDEX events_published_at ON events(published_at);

CREATE TABLE companies (
  company_number      TEXT    NOT NULL PRIMARY KEY,
  company_name        TEXT    NOT NULL,
  company_status      TEXT    NOT NULL,
  company_type        TEXT    NOT NULL,
  jurisdiction        TEXT    NOT NULL,
  date_of_creation    TEXT    NOT NULL,
  date_of_cessation   TEXT    NOT NULL,
  roa_premises        TEXT    NOT NULL,
  roa_address_line_1  TEXT    NOT NULL,
  roa_address_line_2  TEXT    NOT NULL,
  roa_locality        TEXT    NOT NULL,
  roa_region          TEXT    NOT NULL,
  roa_postal_code     TEXT    NOT NULL,
  roa_country         TEXT    NOT NULL,
  roa_care_of         TEXT    NOT NULL,
  roa_po_box          TEXT    NOT NULL,
  sic_codes           TEXT    NOT NULL,  -- JSON array of strings
  deleted             INTEGER NOT NULL,
  last_timepoint      INTEGER NOT NULL,
  last_position       INTEGER NOT NULL,
  updated_at          INTEGER NOT NULL,  -- received_at of the last event
  -- The event whose data_json/data_pb is the company's current data (the
  -- last one that carried data); 0 when none did. Stored once, there.
  data_position       INTEGER NOT NULL
);

CREATE TABLE stream_state (
  stream             TEXT    NOT NULL PRIMARY KEY,
  last_timepoint     INTEGER NOT NULL,
  last_published_at  INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
);

CREATE TABLE dead_letters (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  stream       TEXT    NOT NULL,
  received_at  INTEGER NOT NULL,
  reason       TEXT    NOT NULL,
  raw          BLOB    NOT NULL,
  timepoint    INTEGER            -- NULL when it could not be read
);
)sql"},
    {2, "gaps: timepoint gaps recorded after an upstream 416",
     R"sql(
CREATE TABLE gaps (
  id              INTEGER PRIMARY KEY,
  stream          TEXT    NOT NULL,
  last_timepoint  INTEGER NOT NULL,
  recorded_at     INTEGER NOT NULL
);
CREATE INDEX gaps_stream ON gaps(stream, id);
)sql"},
    {3,
     "store_identity: the store's random id (store_id) and durability marker",
     R"sql(
CREATE TABLE store_identity (
  id             INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
  store_id       TEXT    NOT NULL,  -- 32 lowercase hex digits, random
  reason         TEXT    NOT NULL,  -- why this id was made
  changed_at     INTEGER NOT NULL,  -- microseconds since the epoch
  -- 1 while a process has the store open with synchronous=normal: found
  -- at open, the last commits may have been lost (see Store::Options).
  open_unsynced  INTEGER NOT NULL
);
-- randomblob() draws from SQLite's PRNG, seeded from the OS (/dev/urandom).
INSERT INTO store_identity VALUES (
  1, lower(hex(randomblob(16))), 'created with the database',
  CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), 0);
)sql"},
    {4, "resources: the current state of every resource, keyed by resource_uri",
     R"sql(
CREATE TABLE resources (
  resource_uri    TEXT    NOT NULL PRIMARY KEY,  -- exactly as upstream sent it
  resource_kind   TEXT    NOT NULL,  -- of the last event
  company_number  TEXT    NOT NULL,  -- the last non-empty one; '' if none
  deleted         INTEGER NOT NULL,  -- the last event was a deleted one
  last_timepoint  INTEGER NOT NULL,
  last_position   INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,  -- received_at of the last event
  -- The event whose data_json/data_pb is the resource's current data (the
  -- last one that carried data); 0 when none did. Stored once, there.
  data_position   INTEGER NOT NULL
) WITHOUT ROWID;
-- ListCompanyResources: a company's resources by kind, then URI.
CREATE INDEX resources_company
  ON resources(company_number, resource_kind, resource_uri);
-- The state of the events already stored: per resource_uri, the last event
-- and the last event that carried data.
WITH last AS (
  SELECT resource_uri, MAX(position) AS position FROM events
  WHERE resource_uri != '' GROUP BY resource_uri
), with_data AS (
  SELECT resource_uri, MAX(position) AS position FROM events
  WHERE resource_uri != '' AND (data_json != '' OR length(data_pb) > 0)
  GROUP BY resource_uri
), with_number AS (
  SELECT resource_uri, MAX(position) AS position FROM events
  WHERE resource_uri != '' AND company_number != ''
  GROUP BY resource_uri
)
INSERT INTO resources
SELECT l.resource_uri, e.resource_kind,
       COALESCE((SELECT n.company_number FROM events n
                 WHERE n.position = wn.position), ''),
       e.type = 2, e.timepoint, e.position, e.received_at,
       COALESCE(d.position, 0)
FROM last l
JOIN events e ON e.position = l.position
LEFT JOIN with_data d ON d.resource_uri = l.resource_uri
LEFT JOIN with_number wn ON wn.resource_uri = l.resource_uri;
)sql"},
    // Retention (issue 11).
    {5, "pruned_data: current-state rows keep the data of a pruned event",
     R"sql(
-- NULL while the event at data_position holds the company's data; a copy
-- of that event's data_json/data_pb once retention deleted the event.
-- Reads prefer the event while it exists (see Store::GetCompany).
ALTER TABLE companies ADD COLUMN pruned_data_json TEXT;
ALTER TABLE companies ADD COLUMN pruned_data_pb BLOB;
ALTER TABLE resources ADD COLUMN pruned_data_json TEXT;
ALTER TABLE resources ADD COLUMN pruned_data_pb BLOB;
)sql"},
};

constexpr char kSqliteMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f',
                                   'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

absl::Status NotChstream(const std::string& path, std::string_view reason) {
  return absl::FailedPreconditionError(
      absl::StrCat("refusing to open ", path, ": not a chstream database (",
                   Av(reason), "); the file was left untouched"));
}

absl::Status Corrupt(const std::string& path, std::string_view reason) {
  return absl::DataLossError(
      absl::StrCat("refusing to open ", path, ": the database is corrupt (",
                   Av(reason), "); the file was left untouched"));
}

// Any error while reading an existing file read-only is reported as
// corruption when SQLite says so, and with its own code otherwise.
absl::Status ReadError(const std::string& path, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kDataLoss) {
    return Corrupt(path, std::string(status.message()));
  }
  return absl::Status(
      status.code(),
      absl::StrCat("refusing to open ", path, ": ", status.message(),
                   "; the file was left untouched"));
}

}  // namespace

absl::Span<const Migration> Migrations() { return kMigrations; }

int LatestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

absl::StatusOr<DatabaseFile> InspectDatabaseFile(const std::string& path,
                                                 bool check_integrity,
                                                 absl::Duration busy_timeout) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return DatabaseFile{.is_new = true};
    return absl::FailedPreconditionError(
        absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return NotChstream(path, "not a regular file");
  }
  if (st.st_size == 0) return DatabaseFile{.is_new = true};

  // Look at the magic ourselves first, so that SQLite never gets to open
  // (and possibly try to recover a journal next to) a file that is not even
  // an SQLite database.
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
    }
    char header[sizeof(kSqliteMagic)] = {};
    in.read(header, sizeof(header));
    if (in.gcount() != static_cast<std::streamsize>(sizeof(header)) ||
        std::memcmp(header, kSqliteMagic, sizeof(header)) != 0) {
      return NotChstream(path, "not an SQLite file");
    }
    if (st.st_size < 512) {
      return Corrupt(path,
                     absl::StrCat("file is only ", st.st_size, " bytes long"));
    }
  }

  // Read-only: SQLite may read a WAL written by a crashed writer but never
  // checkpoints or rolls back into the main file.
  absl::StatusOr<Database> db = Database::Open(path, SQLITE_OPEN_READONLY);
  if (!db.ok()) return ReadError(path, db.status());
  // Before the first read: after a crash, the first connection to read
  // rebuilds the WAL index under a lock, and another process (a restarted
  // chstreamd, a reader of the same file) that reads meanwhile gets
  // SQLITE_BUSY_RECOVERY, at once when its connection has no busy handler.
  sqlite3_busy_timeout(
      db->get(), static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));

  absl::StatusOr<int64_t> app_id = db->QueryInt64("PRAGMA application_id");
  if (!app_id.ok()) return ReadError(path, app_id.status());
  if (*app_id != kApplicationId) {
    return NotChstream(
        path, absl::StrFormat("application_id is 0x%08x, chstream uses 0x%08x",
                              static_cast<uint32_t>(*app_id),
                              static_cast<uint32_t>(kApplicationId)));
  }
  absl::StatusOr<int64_t> version = db->QueryInt64("PRAGMA user_version");
  if (!version.ok()) return ReadError(path, version.status());
  if (*version > LatestSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to open ", path, ": schema version ", *version,
        " is newer than this binary understands (", LatestSchemaVersion(),
        "); upgrade chstream. The file was left untouched"));
  }
  if (*version < 0) {
    return Corrupt(path, absl::StrCat("negative user_version ", *version));
  }
  // Reading the schema parses every CREATE statement: a damaged
  // sqlite_schema fails here even without the integrity check.
  absl::StatusOr<int64_t> tables =
      db->QueryInt64("SELECT count(*) FROM sqlite_schema");
  if (!tables.ok()) return ReadError(path, tables.status());

  if (check_integrity) {
    absl::StatusOr<Statement> check = db->Prepare("PRAGMA quick_check", false);
    if (!check.ok()) return ReadError(path, check.status());
    absl::StatusOr<bool> row = check->Step();
    if (!row.ok()) return ReadError(path, row.status());
    if (!*row) return Corrupt(path, "quick_check returned nothing");
    std::string_view first = check->ColumnText(0);
    if (first != "ok") {
      return Corrupt(path, absl::StrCat("quick_check: ", Av(first)));
    }
  }
  return DatabaseFile{.is_new = false,
                      .user_version = static_cast<int>(*version)};
}

absl::Status Migrate(Database& db, int target_version) {
  if (target_version < 0 || target_version > LatestSchemaVersion()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no schema version ", target_version));
  }
  CHS_ASSIGN_OR_RETURN(int64_t current, db.QueryInt64("PRAGMA user_version"));
  for (const Migration& m : kMigrations) {
    if (m.version <= current) continue;
    if (m.version > target_version) break;
    CHS_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    absl::Status status = db.Exec(m.sql);
    if (status.ok()) {
      status = db.Exec(absl::StrCat("PRAGMA application_id = ", kApplicationId,
                                    "; PRAGMA user_version = ", m.version));
    }
    if (status.ok()) status = db.Exec("COMMIT");
    if (!status.ok()) {
      db.Exec("ROLLBACK").IgnoreError();
      return absl::Status(
          status.code(),
          absl::StrCat("migration to schema version ", m.version, " (",
                       m.description, ") failed: ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace chstream::storage
