// File: storage/postgres/sqlite_import.cc
//
// See sqlite_import.h. The copy is driven by the two schemas rather than by
// a fixed column list: for each table, the columns PostgreSQL has are
// looked up in information_schema, matched by name with SQLite's
// (PRAGMA table_info), and each value converted to the PostgreSQL column's
// type. So a later PostgreSQL migration that adds a table or column that
// SQLite already has (resources, the retention columns) is filled by this
// tool without a change here, and a column only SQLite has is noticed
// (refused if it holds data) instead of silently dropped.
#include "storage/postgres/sqlite_import.h"

#include <sqlite3.h>

#include <map>
#include <set>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "storage/postgres/pg_connection.h"
#include "storage/postgres/pg_schema.h"

namespace chstream::storage::pg {
namespace {

// The tables copied, in this order. store_identity (SQLite) and cluster /
// store_counters (PostgreSQL) are not copied row by row: see Finish.
constexpr const char* kTables[] = {"events",       "companies", "stream_state",
                                   "dead_letters", "gaps",      "resources"};

// COPY data is sent in chunks of about this size: large enough that the
// round trips do not matter, small enough to bound the tool's memory.
constexpr size_t kCopyChunkBytes = 8 << 20;

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

// How a SQLite value becomes COPY text for a PostgreSQL column type.
enum class Conversion { kInteger, kBoolean, kTimestamp, kBytea, kText };

absl::StatusOr<Conversion> ConversionFor(const std::string& table,
                                         const std::string& column,
                                         std::string_view pg_type) {
  if (pg_type == "bigint" || pg_type == "integer" || pg_type == "smallint") {
    return Conversion::kInteger;
  }
  if (pg_type == "boolean") return Conversion::kBoolean;
  if (pg_type == "timestamp with time zone") return Conversion::kTimestamp;
  if (pg_type == "bytea") return Conversion::kBytea;
  if (pg_type == "text" || pg_type == "character varying" ||
      pg_type == "jsonb" || pg_type == "json") {
    return Conversion::kText;
  }
  return absl::UnimplementedError(absl::StrCat("cannot copy ", table, ".",
                                               column,
                                               ": no conversion to "
                                               "PostgreSQL type ",
                                               Av(pg_type)));
}

struct Column {
  std::string name;
  Conversion conversion;
};

// One table's copy plan: the columns both sides have, in PostgreSQL order.
struct TablePlan {
  std::string table;
  std::vector<Column> columns;
  uint64_t source_rows = 0;
};

std::string QuoteIdent(std::string_view name) {
  return absl::StrCat("\"", Av(name), "\"");
}

absl::StatusOr<std::vector<std::string>> SqliteColumns(Database& db,
                                                       const std::string& t) {
  CHS_ASSIGN_OR_RETURN(
      Statement st,
      db.Prepare(absl::StrCat("SELECT name FROM pragma_table_info('", t, "')"),
                 false));
  std::vector<std::string> out;
  while (true) {
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.emplace_back(st.ColumnText(0));
  }
  return out;
}

void AppendValue(const Statement& st, int i, Conversion conversion,
                 std::string* out) {
  if (st.ColumnIsNull(i)) {
    out->append("\\N");
    return;
  }
  switch (conversion) {
    case Conversion::kInteger:
      absl::StrAppend(out, st.ColumnInt64(i));
      break;
    case Conversion::kBoolean:
      out->push_back(st.ColumnInt64(i) != 0 ? 't' : 'f');
      break;
    case Conversion::kTimestamp:
      out->append(TimestampLiteral(st.ColumnInt64(i)));
      break;
    case Conversion::kBytea:
      AppendCopyBytea(out, st.ColumnBlob(i));
      break;
    case Conversion::kText:
      AppendCopyText(out, st.ColumnText(i));
      break;
  }
}

// Streams the rows of `plan.table` from SQLite into PostgreSQL by COPY, in
// chunks. Returns the rows sent.
absl::StatusOr<uint64_t> CopyTable(Database& src, PgConnection& dst,
                                   const TablePlan& plan,
                                   uint64_t* bytes_sent) {
  std::vector<std::string> names;
  for (const Column& c : plan.columns) names.push_back(QuoteIdent(c.name));
  const std::string list = absl::StrJoin(names, ", ");
  // Events in position order (their primary key, SQLite's rowid order):
  // PostgreSQL's index then grows at its right edge.
  CHS_ASSIGN_OR_RETURN(
      Statement st,
      src.Prepare(absl::StrCat("SELECT ", list, " FROM ", plan.table), false));
  const std::string copy_sql =
      absl::StrCat("COPY ", plan.table, " (", list, ") FROM STDIN");
  std::string data;
  uint64_t rows = 0;
  auto flush = [&]() -> absl::Status {
    if (data.empty()) return absl::OkStatus();
    *bytes_sent += data.size();
    absl::Status s = dst.CopyIn(copy_sql, data);
    data.clear();
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("copying ", plan.table, ": ", s.message()));
    }
    return absl::OkStatus();
  };
  while (true) {
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    for (size_t i = 0; i < plan.columns.size(); ++i) {
      if (i > 0) data.push_back('\t');
      AppendValue(st, static_cast<int>(i), plan.columns[i].conversion, &data);
    }
    data.push_back('\n');
    ++rows;
    if (data.size() >= kCopyChunkBytes) CHS_RETURN_IF_ERROR(flush());
  }
  CHS_RETURN_IF_ERROR(flush());
  return rows;
}

// store_counters (kept by every commit) from the copied rows. Each column
// is one this tool knows how to compute; a column it does not know (added
// by a later schema) is refused rather than left wrong.
absl::Status SetStoreCounters(PgConnection& pg) {
  CHS_ASSIGN_OR_RETURN(
      PgResult cols,
      pg.Exec("SELECT column_name FROM information_schema.columns WHERE "
              "table_schema = current_schema() AND table_name = "
              "'store_counters' ORDER BY ordinal_position"));
  std::vector<std::string> sets;
  for (int i = 0; i < cols.rows(); ++i) {
    const std::string_view c = cols.Get(i, 0);
    if (c == "id") continue;
    if (c == "companies" || c == "dead_letters") {
      sets.push_back(
          absl::StrCat(Av(c), " = (SELECT count(*) FROM ", Av(c), ")"));
    } else if (c == "event_bytes") {
      // Retention's size of the stored events (PostgreSQL schema v2), as
      // that migration computes it.
      sets.push_back(
          "event_bytes = (SELECT COALESCE(sum(chstream_event_bytes("
          "resource_uri, fields_changed, data_json, data_pb)), 0) FROM "
          "events)");
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "cannot fill store_counters.", Av(c),
          ": this chstreamctl does not know how; nothing was committed"));
    }
  }
  if (sets.empty()) return absl::OkStatus();
  return pg
      .Exec(absl::StrCat("UPDATE store_counters SET ",
                         absl::StrJoin(sets, ", "), " WHERE id = 1"))
      .status();
}

}  // namespace

absl::StatusOr<SqliteImportReport> CopySqliteToPostgres(
    Database& source, const std::string& postgres_url) {
  SqliteImportReport report;
  report.target = RedactPostgresUrl(postgres_url);
  const std::string& where = report.target;
  auto refuse = [&](std::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to copy into PostgreSQL database ", where, ": ",
                     Av(why), "; nothing was written"));
  };

  CHS_ASSIGN_OR_RETURN(
      PgConnection pg,
      PgConnection::Connect(postgres_url, "chstreamctl copy-to-postgres"));
  // Creates chstream's tables in an empty database; refuses a foreign or
  // newer schema.
  CHS_ASSIGN_OR_RETURN(PgSchemaInfo schema, PgMigrate(pg, where));
  report.target_schema_version = schema.version;

  // A chstreamd already on the target would go on committing (and keep the
  // store_id it read at start): it must not run while the data moves in.
  {
    CHS_ASSIGN_OR_RETURN(
        PgResult others,
        pg.Exec(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND "
            "application_name LIKE 'chstream%' AND application_name NOT LIKE "
            "'chstreamctl%'"));
    if (others.GetInt64(0, 0) > 0) {
      return refuse(absl::StrCat(
          others.GetInt64(0, 0),
          " chstreamd connection(s) are open on it; stop every chstreamd "
          "using this database first"));
    }
  }

  // The source: one read transaction (the caller's lock already keeps
  // writers out; this makes the counts below match the rows copied).
  CHS_RETURN_IF_ERROR(source.Exec("BEGIN"));
  struct SourceEnd {
    Database& db;
    ~SourceEnd() { db.Exec("COMMIT").IgnoreError(); }
  } source_end{source};
  int64_t open_unsynced = 0;
  std::string store_id;
  {
    CHS_ASSIGN_OR_RETURN(
        Statement st,
        source.Prepare("SELECT store_id, open_unsynced FROM store_identity",
                       false));
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return absl::DataLossError("store_identity has no row");
    store_id.assign(st.ColumnText(0));
    open_unsynced = st.ColumnInt64(1);
  }
  CHS_ASSIGN_OR_RETURN(int64_t head,
                       source.QueryInt64("SELECT MAX(position) FROM events"));
  CHS_ASSIGN_OR_RETURN(int64_t oldest,
                       source.QueryInt64("SELECT MIN(position) FROM events"));

  // As PostgresStore's writer session does (postgres_store.cc): lz4 TOAST
  // compression of the ~2.6 KB event rows halves the COPY time; kept at
  // pglz where the server lacks lz4.
  CHS_RETURN_IF_ERROR(
      pg.Exec("DO $$ BEGIN SET default_toast_compression = 'lz4'; "
              "EXCEPTION WHEN OTHERS THEN NULL; END $$")
          .status());
  CHS_RETURN_IF_ERROR(pg.Exec("BEGIN").status());
  absl::Status status = [&]() -> absl::Status {
    // Locks the cluster row: a chstreamd starting meanwhile waits for this
    // transaction before its first commit.
    CHS_ASSIGN_OR_RETURN(
        PgResult cluster,
        pg.Exec("SELECT head FROM cluster WHERE id = 1 FOR UPDATE"));
    if (cluster.rows() != 1) return absl::DataLossError("cluster has no row");
    std::vector<std::string> not_empty;
    if (cluster.GetInt64(0, 0) != 0) {
      not_empty.push_back(
          absl::StrCat("head position ", cluster.GetInt64(0, 0)));
    }

    // Plan every table before writing anything, so that a refusal leaves
    // nothing behind to roll back.
    std::vector<TablePlan> plans;
    for (const char* t : kTables) {
      const std::string table = t;
      CHS_ASSIGN_OR_RETURN(std::vector<std::string> sqlite_cols,
                           SqliteColumns(source, table));
      CHS_ASSIGN_OR_RETURN(
          PgResult pg_cols,
          pg.Query("SELECT column_name, data_type FROM "
                   "information_schema.columns WHERE table_schema = "
                   "current_schema() AND table_name = $1 ORDER BY "
                   "ordinal_position",
                   {PgParam::Text(table)}));
      uint64_t source_rows = 0;
      if (!sqlite_cols.empty()) {
        CHS_ASSIGN_OR_RETURN(int64_t n, source.QueryInt64(absl::StrCat(
                                            "SELECT count(*) FROM ", table)));
        source_rows = static_cast<uint64_t>(n);
      }
      if (pg_cols.rows() == 0) {
        if (source_rows == 0) continue;
        // Only resources can be left behind: its rows are derived from the
        // events (PostgreSQL's migration that adds the table fills it from
        // them), except data retention kept for pruned events.
        int64_t kept_data = 0;
        if (table == "resources") {
          std::set<std::string> cols(sqlite_cols.begin(), sqlite_cols.end());
          if (cols.count("pruned_data_json") && cols.count("pruned_data_pb")) {
            CHS_ASSIGN_OR_RETURN(
                kept_data,
                source.QueryInt64("SELECT count(*) FROM resources WHERE "
                                  "pruned_data_json IS NOT NULL OR "
                                  "pruned_data_pb IS NOT NULL"));
          }
        }
        if (table != "resources" || kept_data > 0) {
          return refuse(absl::StrCat(
              "the SQLite database has ", source_rows, " rows in ", table,
              kept_data > 0 ? " (with data kept for pruned events)" : "",
              " and PostgreSQL schema version ", schema.version,
              " has no such table: upgrade chstream to a version that "
              "stores them on PostgreSQL"));
        }
        report.notes.push_back(absl::StrCat(
            table, ": ", source_rows,
            " rows not copied: PostgreSQL schema version ", schema.version,
            " has no ", table,
            " table (it is derived from the events: the chstream version "
            "that adds it fills it from them)"));
        continue;
      }
      CHS_ASSIGN_OR_RETURN(
          PgResult any,
          pg.Exec(absl::StrCat("SELECT EXISTS (SELECT 1 FROM ", table, ")")));
      if (any.GetBool(0, 0)) not_empty.push_back(absl::StrCat(table, " rows"));
      if (sqlite_cols.empty()) continue;  // older SQLite schema: nothing

      TablePlan plan{table, {}, source_rows};
      std::set<std::string> in_pg;
      const std::set<std::string> in_sqlite(sqlite_cols.begin(),
                                            sqlite_cols.end());
      for (int i = 0; i < pg_cols.rows(); ++i) {
        const std::string name(pg_cols.Get(i, 0));
        in_pg.insert(name);
        if (!in_sqlite.count(name)) continue;  // PostgreSQL's default
        CHS_ASSIGN_OR_RETURN(Conversion c,
                             ConversionFor(table, name, pg_cols.Get(i, 1)));
        plan.columns.push_back({name, c});
      }
      // A column only SQLite has must hold nothing, or data would be lost.
      for (const std::string& name : sqlite_cols) {
        if (in_pg.count(name)) continue;
        CHS_ASSIGN_OR_RETURN(int64_t n,
                             source.QueryInt64(absl::StrCat(
                                 "SELECT count(*) FROM ", table, " WHERE ",
                                 QuoteIdent(name), " IS NOT NULL")));
        if (n > 0) {
          return refuse(absl::StrCat(
              "the SQLite database has values in ", table, ".", name, " (", n,
              " rows) and PostgreSQL schema version ", schema.version,
              " has no such column: upgrade chstream to a version that "
              "stores them on PostgreSQL"));
        }
      }
      plans.push_back(std::move(plan));
    }
    if (!not_empty.empty()) {
      return refuse(absl::StrCat(
          "it is not empty (", absl::StrJoin(not_empty, ", "),
          "); copy-to-postgres only fills a new database: createdb a new "
          "one, or drop this one's chstream tables first"));
    }

    for (const TablePlan& plan : plans) {
      CHS_ASSIGN_OR_RETURN(uint64_t rows,
                           CopyTable(source, pg, plan, &report.bytes_sent));
      report.tables.emplace_back(plan.table, rows);
    }

    // Identity columns (dead_letters.id, gaps.id) were given the source's
    // ids (COPY writes them as given); new rows continue after them.
    CHS_ASSIGN_OR_RETURN(
        PgResult identities,
        pg.Exec("SELECT table_name, column_name FROM "
                "information_schema.columns WHERE table_schema = "
                "current_schema() AND is_identity = 'YES'"));
    for (int i = 0; i < identities.rows(); ++i) {
      const std::string table(identities.Get(i, 0));
      const std::string column(identities.Get(i, 1));
      CHS_RETURN_IF_ERROR(
          pg.Query(absl::StrCat("SELECT setval(pg_get_serial_sequence($1, $2), "
                                "max(",
                                QuoteIdent(column), ")) FROM ",
                                QuoteIdent(table), " HAVING max(",
                                QuoteIdent(column), ") IS NOT NULL"),
                   {PgParam::Text(QuoteIdent(table)), PgParam::Text(column)})
              .status());
    }

    // The store's identity and head. A source whose last process ran with
    // synchronous=normal and stopped uncleanly may have lost commits whose
    // positions clients saw: chstreamd would give it a new store_id at its
    // next start, and so does the copy (the one PgMigrate made).
    report.kept_store_id = open_unsynced == 0;
    if (!report.kept_store_id) {
      report.notes.push_back(
          "store_id not kept: the SQLite database's last process ran with "
          "synchronous=normal and did not shut down cleanly, so its last "
          "commits may have been lost (chstreamd would have given it a new "
          "store_id too); clients resuming with expected_store_id resume by "
          "timepoint");
      store_id = schema.store_id;
    }
    CHS_RETURN_IF_ERROR(
        pg.Query("UPDATE cluster SET store_id = $1, head = $2 WHERE id = 1",
                 {PgParam::Text(store_id), PgParam::Int(head)})
            .status());
    CHS_RETURN_IF_ERROR(SetStoreCounters(pg));

    // Check what the transaction is about to commit against the source.
    for (const auto& [table, rows] : report.tables) {
      CHS_ASSIGN_OR_RETURN(
          PgResult n, pg.Exec(absl::StrCat("SELECT count(*) FROM ", table)));
      uint64_t expected = 0;
      for (const TablePlan& p : plans) {
        if (p.table == table) expected = p.source_rows;
      }
      if (static_cast<uint64_t>(n.GetInt64(0, 0)) != expected ||
          rows != expected) {
        return absl::DataLossError(absl::StrCat(
            "check after copying failed: ", table, " has ", n.GetInt64(0, 0),
            " rows in PostgreSQL (", rows, " sent), ", expected,
            " in SQLite; nothing was committed"));
      }
    }
    CHS_ASSIGN_OR_RETURN(
        PgResult bounds,
        pg.Exec("SELECT coalesce(min(position), 0), coalesce(max(position), "
                "0), (SELECT head FROM cluster WHERE id = 1), (SELECT "
                "store_id FROM cluster WHERE id = 1) FROM events"));
    if (bounds.GetInt64(0, 0) != oldest || bounds.GetInt64(0, 1) != head ||
        bounds.GetInt64(0, 2) != head || bounds.Get(0, 3) != store_id) {
      return absl::DataLossError(
          absl::StrCat("check after copying failed: PostgreSQL has positions ",
                       bounds.GetInt64(0, 0), "..", bounds.GetInt64(0, 1),
                       " and head ", bounds.GetInt64(0, 2), ", SQLite ", oldest,
                       "..", head, "; nothing was committed"));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    pg.Exec("ROLLBACK").IgnoreError();
    return status;
  }
  CHS_RETURN_IF_ERROR(pg.Exec("COMMIT").status());
  report.store_id = store_id;
  report.head_position = static_cast<uint64_t>(head);
  report.oldest_position = static_cast<uint64_t>(oldest);
  return report;
}

}  // namespace chstream::storage::pg
