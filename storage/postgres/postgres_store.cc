#include "storage/postgres/postgres_store.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "storage/commit_plan.h"
#include "storage/postgres/pg_connection.h"
#include "storage/postgres/pg_schema.h"
#include "storage/string_list.h"

namespace chstream::storage {
namespace {

using pg::PgConnection;
using pg::PgParam;
using pg::PgResult;

constexpr int64_t kMaxPosition = std::numeric_limits<int64_t>::max();

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }
PgParam TimeParam(absl::Time t) {
  return PgParam::Text(pg::TimestampLiteral(ToMicros(t)));
}

constexpr const char* kCompanyFieldColumns[] = {
    "company_name", "company_status",     "company_type",
    "jurisdiction", "date_of_creation",   "date_of_cessation",
    "roa_premises", "roa_address_line_1", "roa_address_line_2",
    "roa_locality", "roa_region",         "roa_postal_code",
    "roa_country",  "roa_care_of",        "roa_po_box",
    "sic_codes",
};
constexpr int kNumCompanyFields = std::size(kCompanyFieldColumns);

std::string EventColumnsSelect() {
  return absl::StrCat(
      "position, stream, timepoint, type, resource_kind, resource_id, "
      "resource_uri, company_number, ",
      pg::MicrosOf("published_at"), ", ", pg::MicrosOf("received_at"),
      ", fields_changed, data_json, data_pb");
}

// Reads EventColumnsSelect()'s columns, starting at `first_col`.
absl::Status ReadEventRow(const PgResult& r, int row, Event* e,
                          int first_col = 0) {
  int c = first_col;
  e->position = static_cast<uint64_t>(r.GetInt64(row, c++));
  e->stream.assign(r.Get(row, c++));
  e->timepoint = r.GetInt64(row, c++);
  e->type = static_cast<EventType>(r.GetInt64(row, c++));
  e->resource_kind.assign(r.Get(row, c++));
  e->resource_id.assign(r.Get(row, c++));
  e->resource_uri.assign(r.Get(row, c++));
  e->company_number.assign(r.Get(row, c++));
  e->published_at = FromMicros(r.GetInt64(row, c++));
  e->received_at = FromMicros(r.GetInt64(row, c++));
  CHS_RETURN_IF_ERROR(DecodeListColumn(r.Get(row, c++), "events.fields_changed",
                                       &e->fields_changed));
  e->data_json.assign(r.Get(row, c++));
  e->data_pb = r.GetBytea(row, c++);
  return absl::OkStatus();
}

// NULL (= no constraint) for an empty filter field.
PgParam ArrayParam(const std::vector<std::string>& values) {
  if (values.empty()) return PgParam::Null();
  return PgParam::Text(pg::TextArrayLiteral(values));
}

std::string CompanyFieldList(std::string_view prefix) {
  std::string out;
  for (const char* c : kCompanyFieldColumns) {
    absl::StrAppend(&out, ", ", Av(prefix), c);
  }
  return out;
}

// The per-session staging table for a commit's companies, one merged row
// per company.
std::string CompaniesInSql() {
  std::string cols = "company_number text, has_fields boolean";
  for (const char* c : kCompanyFieldColumns)
    absl::StrAppend(&cols, ", ", c, " text");
  absl::StrAppend(&cols,
                  ", data_position bigint, deleted boolean, last_timepoint "
                  "bigint, last_position bigint, updated_at timestamptz");
  return absl::StrCat("CREATE TEMP TABLE IF NOT EXISTS companies_in (", cols,
                      ") ON COMMIT DELETE ROWS");
}

std::string InsertNewCompaniesSql() {
  return absl::StrCat(
      "INSERT INTO companies (company_number", CompanyFieldList(""),
      ", data_position, deleted, last_timepoint, last_position, updated_at) "
      "SELECT company_number",
      CompanyFieldList(""),
      ", data_position, deleted, last_timepoint, last_position, updated_at "
      "FROM companies_in ON CONFLICT (company_number) DO NOTHING");
}

// Companies that existed before: fields only from an event that carried
// them, data only from one that carried data; the rest from the last event.
// Rows inserted by InsertNewCompaniesSql have last_position equal already.
std::string UpdateCompaniesSql() {
  std::string sql = "UPDATE companies c SET ";
  for (const char* f : kCompanyFieldColumns) {
    absl::StrAppend(&sql, f, " = CASE WHEN i.has_fields THEN i.", f, " ELSE c.",
                    f, " END, ");
  }
  absl::StrAppend(
      &sql,
      "data_position = CASE WHEN i.data_position <> 0 THEN i.data_position "
      "ELSE c.data_position END, deleted = i.deleted, last_timepoint = "
      "i.last_timepoint, last_position = i.last_position, updated_at = "
      "i.updated_at FROM companies_in i WHERE c.company_number = "
      "i.company_number AND c.last_position <> i.last_position");
  return sql;
}

std::string CompanySelectSql() {
  return absl::StrCat(
      "SELECT c.company_number", CompanyFieldList("c."),
      ", c.deleted, c.last_timepoint, c.last_position, ",
      pg::MicrosOf("c.updated_at"),
      // Once retention deleted the event, the row's copy.
      ", c.data_position, COALESCE(e.data_json, c.pruned_data_json), "
      "COALESCE(e.data_pb, c.pruned_data_pb) "
      "FROM companies c LEFT JOIN events e ON e.position = c.data_position "
      "WHERE c.company_number = $1");
}

// The per-session staging table for a commit's resources, one merged row
// per resource_uri.
constexpr char kResourcesInSql[] =
    "CREATE TEMP TABLE IF NOT EXISTS resources_in (resource_uri text, "
    "resource_kind text, company_number text, deleted boolean, "
    "last_timepoint bigint, last_position bigint, updated_at timestamptz, "
    "data_position bigint) ON COMMIT DELETE ROWS";

// The SQLite store's resource rules (storage/store.cc kResourceUpsertSql):
// the last event's kind, type, timepoint and position always; its company
// number unless empty; its data position only if it carried data.
constexpr char kUpsertResourcesSql[] =
    "INSERT INTO resources (resource_uri, resource_kind, company_number, "
    "deleted, last_timepoint, last_position, updated_at, data_position) "
    "SELECT resource_uri, resource_kind, company_number, deleted, "
    "last_timepoint, last_position, updated_at, data_position "
    "FROM resources_in ON CONFLICT (resource_uri) DO UPDATE SET "
    "resource_kind = excluded.resource_kind, "
    "company_number = CASE WHEN excluded.company_number <> '' "
    "THEN excluded.company_number ELSE resources.company_number END, "
    "deleted = excluded.deleted, "
    "last_timepoint = excluded.last_timepoint, "
    "last_position = excluded.last_position, "
    "updated_at = excluded.updated_at, "
    "data_position = CASE WHEN excluded.data_position <> 0 "
    "THEN excluded.data_position ELSE resources.data_position END";

// Every resource query selects these columns (ReadResourceRow's order).
std::string ResourceSelectSql() {
  return absl::StrCat(
      "SELECT r.resource_uri, r.resource_kind, r.company_number, r.deleted, "
      "r.last_timepoint, r.last_position, ",
      pg::MicrosOf("r.updated_at"),
      ", r.data_position, COALESCE(e.data_json, r.pruned_data_json), "
      "COALESCE(e.data_pb, r.pruned_data_pb) FROM resources r "
      "LEFT JOIN events e ON e.position = r.data_position ");
}

absl::Status ReadResourceRow(const PgResult& res, int row, ResourceRecord* r) {
  r->resource_uri.assign(res.Get(row, 0));
  r->resource_kind.assign(res.Get(row, 1));
  r->company_number.assign(res.Get(row, 2));
  r->deleted = res.GetBool(row, 3);
  r->last_timepoint = res.GetInt64(row, 4);
  r->last_position = static_cast<uint64_t>(res.GetInt64(row, 5));
  r->updated_at = FromMicros(res.GetInt64(row, 6));
  const int64_t data_position = res.GetInt64(row, 7);
  if (data_position != 0 && res.IsNull(row, 8)) {
    return absl::DataLossError(
        absl::StrCat("resource ", Av(r->resource_uri), " refers to event ",
                     data_position, " for its data, which is not stored"));
  }
  r->data_json.assign(res.Get(row, 8));
  r->data_pb = res.GetBytea(row, 9);
  return absl::OkStatus();
}

// The stored size of the events in a position range, as counted in
// store_counters.event_bytes (chstream_event_bytes: pg_schema.cc v2).
constexpr char kEventBytesSum[] =
    "COALESCE(sum(chstream_event_bytes(resource_uri, fields_changed, "
    "data_json, data_pb)), 0)";

// Retention copies the data of the events at positions [$1, $2] onto the
// current-state rows that still take their data from them (the SQLite
// store's kCurrentStateTables, storage/store.cc).
constexpr const char* kCopyPrunedDataSql[] = {
    "UPDATE companies t SET pruned_data_json = e.data_json, pruned_data_pb = "
    "e.data_pb FROM events e WHERE e.position BETWEEN $1 AND $2 AND "
    "t.data_position = e.position AND t.company_number = e.company_number",
    "UPDATE resources t SET pruned_data_json = e.data_json, pruned_data_pb = "
    "e.data_pb FROM events e WHERE e.position BETWEEN $1 AND $2 AND "
    "t.data_position = e.position AND t.resource_uri = e.resource_uri",
};

}  // namespace

// ----------------------------------------------------------- reader leases

class PostgresStore::ReaderLease {
 public:
  ReaderLease(PostgresStore* store, PgConnection* c) : store_(store), c_(c) {}
  ReaderLease(const ReaderLease&) = delete;
  ReaderLease& operator=(const ReaderLease&) = delete;
  ~ReaderLease() { store_->ReleaseReader(c_); }
  PgConnection& operator*() const { return *c_; }
  PgConnection* operator->() const { return c_; }

 private:
  PostgresStore* store_;
  PgConnection* c_;
};

PostgresStore::ReaderLease PostgresStore::AcquireReader() {
  pool_mu_.LockWhen(absl::Condition(
      +[](std::vector<PgConnection*>* free) { return !free->empty(); },
      &free_readers_));
  PgConnection* c = free_readers_.back();
  free_readers_.pop_back();
  pool_mu_.Unlock();
  return ReaderLease(this, c);
}

void PostgresStore::ReleaseReader(PgConnection* c) {
  absl::MutexLock lock(&pool_mu_);
  free_readers_.push_back(c);
}

// -------------------------------------------------------------------- Open

PostgresStore::PostgresStore(std::string url, Options options)
    : url_(std::move(url)),
      location_(pg::RedactPostgresUrl(url_)),
      options_(std::move(options)) {}

PostgresStore::~PostgresStore() = default;

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const std::string& url, const Options& options) {
  if (options.read_connections < 1) {
    return absl::InvalidArgumentError("read_connections must be >= 1");
  }
  std::unique_ptr<PostgresStore> store(new PostgresStore(url, options));
  CHS_RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status PostgresStore::Init() {
  CHS_ASSIGN_OR_RETURN(PgConnection w,
                       PgConnection::Connect(url_, options_.application_name));
  CHS_ASSIGN_OR_RETURN(pg::PgSchemaInfo schema, pg::PgMigrate(w, location_));
  store_id_ = schema.store_id;
  schema_version_ = schema.version;
  if (schema.from_version == 0) {
    log::Info("storage database created", {{"postgres", location_},
                                           {"schema_version", schema.version},
                                           {"store_id", store_id_}});
  } else if (schema.from_version != schema.version) {
    log::Info("storage schema migrated", {{"postgres", location_},
                                          {"from_version", schema.from_version},
                                          {"to_version", schema.version}});
  }
  CHS_ASSIGN_OR_RETURN(PgResult sync, w.Exec("SHOW synchronous_commit"));
  synchronous_full_ = sync.rows() == 1 && sync.Get(0, 0) != "off";
  CHS_ASSIGN_OR_RETURN(PgResult head,
                       w.Exec("SELECT head FROM cluster WHERE id = 1"));
  head_position_.store(static_cast<uint64_t>(head.GetInt64(0, 0)));
  CHS_RETURN_IF_ERROR(PrepareWriter(w));
  // A writer paused inside a commit (SIGSTOP, a hang) would hold the cluster
  // row lock, and with it every takeover, for as long as it stays paused:
  // the server ends such a session instead. A commit never idles for long
  // between its statements.
  CHS_RETURN_IF_ERROR(
      w.AddSessionSql("SET idle_in_transaction_session_timeout = '10s'"));
  {
    absl::MutexLock lock(&writer_mu_);
    writer_ = std::make_unique<PgConnection>(std::move(w));
  }

  for (int i = 0; i < options_.read_connections; ++i) {
    CHS_ASSIGN_OR_RETURN(
        PgConnection r, PgConnection::Connect(url_, options_.application_name));
    CHS_RETURN_IF_ERROR(PrepareReader(r));
    readers_.push_back(std::make_unique<PgConnection>(std::move(r)));
  }
  absl::MutexLock lock(&pool_mu_);
  for (const auto& r : readers_) free_readers_.push_back(r.get());
  return absl::OkStatus();
}

absl::Status PostgresStore::PrepareWriter(PgConnection& c) {
  CHS_RETURN_IF_ERROR(c.AddSessionSql(CompaniesInSql()));
  CHS_RETURN_IF_ERROR(c.AddSessionSql(kResourcesInSql));
  // Event rows (~2.6 KB with data_json + data_pb) are TOAST-compressed;
  // lz4 instead of the default pglz took COPY from ~300 to ~150 ms per 1000
  // events (bench/RESULTS.md). Where the server lacks lz4 it stays pglz.
  CHS_RETURN_IF_ERROR(
      c.AddSessionSql("DO $$ BEGIN SET default_toast_compression = 'lz4'; "
                      "EXCEPTION WHEN OTHERS THEN NULL; END $$"));
  CHS_RETURN_IF_ERROR(
      c.Prepare("lock", "SELECT head FROM cluster WHERE id = 1 FOR UPDATE"));
  CHS_RETURN_IF_ERROR(
      c.Prepare("lock_fenced",
                "UPDATE cluster SET heartbeat_at = now() WHERE id = 1 AND "
                "leader_epoch = $1 RETURNING head"));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "timepoints", "SELECT stream, last_timepoint FROM stream_state"));
  CHS_RETURN_IF_ERROR(c.Prepare("insert_companies", InsertNewCompaniesSql()));
  CHS_RETURN_IF_ERROR(c.Prepare("update_companies", UpdateCompaniesSql()));
  CHS_RETURN_IF_ERROR(c.Prepare("upsert_resources", kUpsertResourcesSql));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "upsert_stream_state",
      "INSERT INTO stream_state (stream, last_timepoint, last_published_at, "
      "updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (stream) DO UPDATE SET "
      "last_timepoint = excluded.last_timepoint, "
      "last_published_at = excluded.last_published_at, "
      "updated_at = excluded.updated_at"));
  CHS_RETURN_IF_ERROR(
      c.Prepare("insert_gap",
                "INSERT INTO gaps (stream, last_timepoint, recorded_at) "
                "VALUES ($1, $2, $3)"));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "counters",
      absl::StrCat("UPDATE store_counters SET companies = companies "
                   "+ $1, dead_letters = dead_letters + $2, "
                   "event_bytes = event_bytes + (SELECT ",
                   kEventBytesSum,
                   " FROM events WHERE position > $3) WHERE id = 1")));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "publish_head",
      "WITH u AS (UPDATE cluster SET head = $1 WHERE id = 1 RETURNING head) "
      "SELECT pg_notify('chstream_commit', head::text) FROM u"));
  return absl::OkStatus();
}

absl::Status PostgresStore::PrepareReader(PgConnection& c) {
  // The oldest stored position first (one row even when no event
  // matches), from the same snapshot as the events: a cursor whose next
  // event was pruned is told so (ReadPage) instead of skipping silently.
  CHS_RETURN_IF_ERROR(c.Prepare(
      "scan",
      absl::StrCat(
          "SELECT b.oldest, s.* FROM (SELECT min(position) AS oldest FROM "
          "events) b LEFT JOIN LATERAL (SELECT ",
          EventColumnsSelect(),
          " FROM events WHERE position > $1 AND position <= $2"
          " AND ($4::text[] IS NULL OR stream = ANY($4::text[]))"
          " AND ($5::text[] IS NULL OR resource_kind = ANY($5::text[]))"
          " AND ($6::text[] IS NULL OR company_number = ANY($6::text[]))"
          " AND ($7::int[] IS NULL OR type = ANY($7::int[]))"
          " ORDER BY position LIMIT $3) s ON true ORDER BY s.position")));
  CHS_RETURN_IF_ERROR(
      c.Prepare("published_since",
                "SELECT min(position) FROM events WHERE published_at >= $1"));
  CHS_RETURN_IF_ERROR(
      c.Prepare("stream_timepoint",
                "SELECT position FROM events WHERE stream = $1 AND "
                "timepoint >= $2 ORDER BY timepoint LIMIT 1"));
  CHS_RETURN_IF_ERROR(c.Prepare("get_company", CompanySelectSql()));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "get_resource",
      absl::StrCat(ResourceSelectSql(), "WHERE r.resource_uri = $1")));
  // Kinds as an array (NULL: every kind); byte order (the columns'
  // COLLATE "C"), as on SQLite.
  CHS_RETURN_IF_ERROR(c.Prepare(
      "list_resources",
      absl::StrCat(ResourceSelectSql(),
                   "WHERE r.company_number = $1 AND ($2::text[] IS NULL OR "
                   "r.resource_kind = ANY($2::text[])) AND (r.resource_kind, "
                   "r.resource_uri) > ($3, $4) AND ($5 OR NOT r.deleted) "
                   "ORDER BY r.resource_kind, r.resource_uri LIMIT $6")));
  CHS_RETURN_IF_ERROR(
      c.Prepare("oldest_position", "SELECT MIN(position) FROM events"));
  // One statement, so one snapshot for stream_state and gaps.
  CHS_RETURN_IF_ERROR(c.Prepare(
      "stream_states", absl::StrCat("SELECT 0, stream, last_timepoint, ",
                                    pg::MicrosOf("last_published_at"), ", ",
                                    pg::MicrosOf("updated_at"),
                                    ", 0::bigint FROM stream_state UNION ALL "
                                    "SELECT 1, stream, last_timepoint, ",
                                    pg::MicrosOf("recorded_at"),
                                    ", 0, id FROM gaps ORDER BY 1, 6")));
  CHS_RETURN_IF_ERROR(c.Prepare(
      "stats",
      "SELECT (SELECT min(position) FROM events), "
      "(SELECT max(position) FROM events), s.companies, s.dead_letters, "
      "pg_database_size(current_database()) FROM store_counters s "
      "WHERE s.id = 1"));
  CHS_RETURN_IF_ERROR(
      c.Prepare("dead_letters",
                absl::StrCat("SELECT stream, ", pg::MicrosOf("received_at"),
                             ", reason, raw, timepoint FROM dead_letters "
                             "ORDER BY id DESC LIMIT $1")));
  CHS_RETURN_IF_ERROR(
      c.Prepare("head", "SELECT head FROM cluster WHERE id = 1"));
  return absl::OkStatus();
}

void PostgresStore::AdvanceHead(uint64_t head) {
  uint64_t cur = head_position_.load(std::memory_order_relaxed);
  while (cur < head &&
         !head_position_.compare_exchange_weak(
             cur, head, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

absl::StatusOr<PgResult> PostgresStore::ReadQuery(
    const std::string& name, const std::vector<PgParam>& params) {
  ReaderLease r = AcquireReader();
  CHS_RETURN_IF_ERROR(r->EnsureReady());
  absl::StatusOr<PgResult> res = r->ExecPrepared(name, params);
  if (!res.ok() && !r->healthy()) {
    // The session was gone before the call (a server restart, an idle
    // connection dropped): reads are idempotent, so reconnect and retry
    // once instead of failing a call per pooled connection.
    CHS_RETURN_IF_ERROR(r->EnsureReady());
    res = r->ExecPrepared(name, params);
  }
  return res;
}

absl::StatusOr<uint64_t> PostgresStore::RefreshHeadPosition() {
  CHS_ASSIGN_OR_RETURN(PgResult res, ReadQuery("head", {}));
  if (res.rows() != 1) return absl::DataLossError("cluster has no row");
  AdvanceHead(static_cast<uint64_t>(res.GetInt64(0, 0)));
  return HeadPosition();
}

// ------------------------------------------------------------------ Commit

absl::StatusOr<CommitResult> PostgresStore::Commit(Batch* batch,
                                                   absl::Time now) {
  CommitResult result;
  if (batch->empty()) {
    result.events = std::make_shared<const std::vector<Event>>();
    return result;
  }
  absl::MutexLock lock(&writer_mu_);
  PgConnection& w = *writer_;
  CHS_RETURN_IF_ERROR(w.EnsureReady());
  const int64_t epoch = fencing_epoch();

  // Filled inside the transaction; applied to `*batch` only after COMMIT so
  // that a failed commit leaves the batch as it was.
  CommitPlan plan;
  const std::vector<size_t>& kept = plan.kept;
  uint64_t head = 0;
  uint64_t new_companies = 0;

  auto run = [&]() -> absl::Status {
    if (absl::Status begin = w.Exec("BEGIN").status(); !begin.ok()) {
      // Nothing was sent but BEGIN: a session that was already gone can be
      // replaced and the transaction started again without any doubt.
      if (w.healthy()) return begin;
      CHS_RETURN_IF_ERROR(w.EnsureReady());
      CHS_RETURN_IF_ERROR(w.Exec("BEGIN").status());
    }
    // 1. The cluster row: fencing and the head.
    if (epoch != 0) {
      CHS_ASSIGN_OR_RETURN(
          PgResult r, w.ExecPrepared("lock_fenced", {PgParam::Int(epoch)}));
      if (r.rows() != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("fenced: leader epoch ", epoch,
                         " is no longer current; nothing was committed"));
      }
      head = static_cast<uint64_t>(r.GetInt64(0, 0));
    } else {
      CHS_ASSIGN_OR_RETURN(PgResult r, w.ExecPrepared("lock", {}));
      if (r.rows() != 1) return absl::DataLossError("cluster has no row");
      head = static_cast<uint64_t>(r.GetInt64(0, 0));
    }

    // 2. What each stream has committed, whoever committed it.
    absl::flat_hash_map<std::string, int64_t> committed;
    {
      CHS_ASSIGN_OR_RETURN(PgResult r, w.ExecPrepared("timepoints", {}));
      for (int i = 0; i < r.rows(); ++i) {
        committed[std::string(r.Get(i, 0))] = r.GetInt64(i, 1);
      }
    }
    // Which events to keep: the rule every backend shares.
    plan = PlanCommit(
        batch->events, [&](std::string_view stream) -> std::optional<int64_t> {
          auto c =
              committed.find(absl::string_view(stream.data(), stream.size()));
          if (c == committed.end()) return std::nullopt;
          return c->second;
        });

    // 3. Events, by COPY.
    if (!kept.empty()) {
      std::string data;
      for (size_t j = 0; j < kept.size(); ++j) {
        const Event& e = batch->events[kept[j]];
        absl::StrAppend(&data, head + 1 + j, "\t");
        pg::AppendCopyText(&data, e.stream);
        absl::StrAppend(&data, "\t", e.timepoint, "\t",
                        static_cast<int>(e.type), "\t");
        pg::AppendCopyText(&data, e.resource_kind);
        data.push_back('\t');
        pg::AppendCopyText(&data, e.resource_id);
        data.push_back('\t');
        pg::AppendCopyText(&data, e.resource_uri);
        data.push_back('\t');
        pg::AppendCopyText(&data, e.company_number);
        absl::StrAppend(&data, "\t",
                        pg::TimestampLiteral(ToMicros(e.published_at)), "\t",
                        pg::TimestampLiteral(ToMicros(e.received_at)), "\t");
        pg::AppendCopyText(&data, EncodeStringList(e.fields_changed));
        data.push_back('\t');
        pg::AppendCopyText(&data, StoredDataJson(e));
        data.push_back('\t');
        pg::AppendCopyBytea(&data, e.data_pb);
        data.push_back('\n');
      }
      CHS_RETURN_IF_ERROR(w.CopyIn(
          "COPY events (position, stream, timepoint, type, resource_kind, "
          "resource_id, resource_uri, company_number, published_at, "
          "received_at, fields_changed, data_json, data_pb) FROM STDIN",
          data));
    }

    // Companies: one merged row per company (the latest fields, the latest
    // data, the last event's state: storage/commit_plan.h), staged by COPY,
    // then two statements.
    const std::vector<CompanyChange> companies =
        MergeCompanyChanges(batch->events, kept, head + 1);
    if (!companies.empty()) {
      std::string data;
      static const CompanyFields kNoFields;
      for (const CompanyChange& m : companies) {
        const CompanyFields& f =
            m.fields != nullptr ? *m.fields->company : kNoFields;
        const Address& a = f.registered_office_address;
        const std::string sic = EncodeStringList(f.sic_codes);
        const std::string_view values[kNumCompanyFields] = {
            f.company_name,     f.company_status,
            f.company_type,     f.jurisdiction,
            f.date_of_creation, f.date_of_cessation,
            a.premises,         a.address_line_1,
            a.address_line_2,   a.locality,
            a.region,           a.postal_code,
            a.country,          a.care_of,
            a.po_box,           sic,
        };
        pg::AppendCopyText(&data, m.company_number);
        data.append(m.fields != nullptr ? "\tt" : "\tf");
        for (std::string_view v : values) {
          data.push_back('\t');
          pg::AppendCopyText(&data, v);
        }
        absl::StrAppend(&data, "\t", m.data_position, "\t",
                        m.last->type == EventType::kDeleted ? "t" : "f", "\t",
                        m.last->timepoint, "\t", m.last_position, "\t",
                        pg::TimestampLiteral(ToMicros(m.last->received_at)),
                        "\n");
      }
      CHS_RETURN_IF_ERROR(w.CopyIn("COPY companies_in FROM STDIN", data));
      CHS_ASSIGN_OR_RETURN(PgResult ins,
                           w.ExecPrepared("insert_companies", {}));
      new_companies = static_cast<uint64_t>(ins.AffectedRows());
      CHS_RETURN_IF_ERROR(w.ExecPrepared("update_companies", {}).status());
    }

    // Resources: one merged row per resource_uri, staged by COPY, then one
    // upsert.
    const std::vector<ResourceChange> resources =
        MergeResourceChanges(batch->events, kept, head + 1);
    if (!resources.empty()) {
      std::string data;
      for (const ResourceChange& m : resources) {
        pg::AppendCopyText(&data, m.resource_uri);
        data.push_back('\t');
        pg::AppendCopyText(&data, m.last->resource_kind);
        data.push_back('\t');
        pg::AppendCopyText(&data, m.company_number);
        absl::StrAppend(&data, "\t",
                        m.last->type == EventType::kDeleted ? "t" : "f", "\t",
                        m.last->timepoint, "\t", m.last_position, "\t",
                        pg::TimestampLiteral(ToMicros(m.last->received_at)),
                        "\t", m.data_position, "\n");
      }
      CHS_RETURN_IF_ERROR(w.CopyIn("COPY resources_in FROM STDIN", data));
      CHS_RETURN_IF_ERROR(w.ExecPrepared("upsert_resources", {}).status());
    }

    for (const auto& [stream, p] : plan.progress) {
      if (!p.advanced) continue;
      const Event& last = batch->events[p.last_kept];
      CHS_RETURN_IF_ERROR(
          w.ExecPrepared("upsert_stream_state",
                         {PgParam::Text(std::string(stream)),
                          PgParam::Int(last.timepoint),
                          TimeParam(last.published_at), TimeParam(now)})
              .status());
    }
    if (!batch->dead_letters.empty()) {
      std::string data;
      for (const DeadLetter& d : batch->dead_letters) {
        pg::AppendCopyText(&data, d.stream);
        absl::StrAppend(&data, "\t",
                        pg::TimestampLiteral(ToMicros(d.received_at)), "\t");
        pg::AppendCopyText(&data, d.reason);
        data.push_back('\t');
        pg::AppendCopyBytea(&data, d.raw);
        data.push_back('\t');
        if (d.timepoint.has_value()) {
          absl::StrAppend(&data, *d.timepoint);
        } else {
          data.append("\\N");
        }
        data.push_back('\n');
      }
      CHS_RETURN_IF_ERROR(w.CopyIn(
          "COPY dead_letters (stream, received_at, reason, raw, timepoint) "
          "FROM STDIN",
          data));
    }
    for (const Gap& g : batch->gaps) {
      CHS_RETURN_IF_ERROR(
          w.ExecPrepared("insert_gap", {PgParam::Text(g.stream),
                                        PgParam::Int(g.last_timepoint),
                                        TimeParam(g.recorded_at)})
              .status());
    }
    // Counts, and the stored size of the new events (--retain_bytes).
    if (!kept.empty() || new_companies != 0 || !batch->dead_letters.empty()) {
      CHS_RETURN_IF_ERROR(
          w.ExecPrepared(
               "counters",
               {PgParam::Int(static_cast<int64_t>(new_companies)),
                PgParam::Int(static_cast<int64_t>(batch->dead_letters.size())),
                PgParam::Int(static_cast<int64_t>(head))})
              .status());
    }
    // 4. The new head, and the notification listeners get at COMMIT.
    if (!kept.empty()) {
      CHS_RETURN_IF_ERROR(
          w.ExecPrepared(
               "publish_head",
               {PgParam::Int(static_cast<int64_t>(head + kept.size()))})
              .status());
    }
    return w.Exec("COMMIT").status();
  };

  absl::Status status = run();
  if (!status.ok()) {
    if (w.healthy() && PQtransactionStatus(w.get()) != PQTRANS_IDLE) {
      absl::Status rb = w.Exec("ROLLBACK").status();
      if (!rb.ok()) {
        log::Error("storage rollback failed",
                   {{"postgres", location_}, {"error", rb}});
      }
    }
    return status;
  }

  result.duplicates = std::move(plan.duplicates);
  std::vector<Event>& in = batch->events;
  if (kept.size() != in.size()) {
    for (size_t j = 0; j < kept.size(); ++j) {
      if (j != kept[j]) in[j] = std::move(in[kept[j]]);
    }
    in.resize(kept.size());
  }
  for (size_t j = 0; j < in.size(); ++j) in[j].position = head + 1 + j;
  result.events = std::make_shared<const std::vector<Event>>(std::move(in));
  in.clear();
  result.dead_letters = batch->dead_letters.size();
  result.gaps = batch->gaps.size();
  AdvanceHead(head + kept.size());
  return result;
}

// ------------------------------------------------------------------- Reads

absl::StatusOr<Page> PostgresStore::ReadPage(uint64_t after, uint64_t up_to,
                                             const Filter& filter,
                                             size_t max_events,
                                             size_t max_scan) {
  if (max_events == 0 || max_scan == 0) {
    return absl::InvalidArgumentError(
        "ReadPage: max_events and max_scan must be positive");
  }
  const uint64_t head = HeadPosition();
  const uint64_t limit_hi = std::min(up_to, head);
  Page page;
  page.scanned_through = after;
  if (after >= limit_hi) return page;
  // Positions are dense, so this window holds at most max_scan events: the
  // work is bounded whatever the filter, which PostgreSQL applies.
  const uint64_t window_end =
      max_scan >= limit_hi - after ? limit_hi : after + max_scan;
  std::vector<std::string> types;
  for (EventType t : filter.types) {
    types.push_back(std::to_string(static_cast<int>(t)));
  }
  CHS_ASSIGN_OR_RETURN(
      PgResult res,
      ReadQuery("scan",
                {PgParam::Int(static_cast<int64_t>(
                     std::min<uint64_t>(after, kMaxPosition))),
                 PgParam::Int(static_cast<int64_t>(window_end)),
                 PgParam::Int(static_cast<int64_t>(
                     std::min<uint64_t>(max_events, kMaxPosition))),
                 ArrayParam(filter.streams), ArrayParam(filter.resource_kinds),
                 ArrayParam(filter.company_numbers),
                 types.empty() ? PgParam::Null()
                               : PgParam::Text(absl::StrCat(
                                     "{", absl::StrJoin(types, ","), "}"))}));
  // Positions are dense from the oldest: the event after `after` is
  // stored unless retention deleted it.
  const uint64_t oldest = res.rows() == 0 || res.IsNull(0, 0)
                              ? 0
                              : static_cast<uint64_t>(res.GetInt64(0, 0));
  if (oldest == 0 || oldest > after + 1) {
    return PrunedCursorError(after, oldest, head);
  }
  const int rows = res.IsNull(0, 1) ? 0 : res.rows();
  page.events.resize(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    CHS_RETURN_IF_ERROR(ReadEventRow(res, i, &page.events[i], 1));
  }
  page.scanned_through = page.events.size() >= max_events
                             ? page.events.back().position
                             : window_end;
  return page;
}

absl::StatusOr<uint64_t> PostgresStore::PositionBeforePublishedSince(
    absl::Time t) {
  const uint64_t head = HeadPosition();
  CHS_ASSIGN_OR_RETURN(PgResult res,
                       ReadQuery("published_since", {TimeParam(t)}));
  if (res.rows() != 1 || res.IsNull(0, 0)) return head;
  return static_cast<uint64_t>(res.GetInt64(0, 0)) - 1;
}

absl::StatusOr<uint64_t> PostgresStore::PositionBeforeStreamTimepoint(
    std::string_view stream, int64_t timepoint) {
  const uint64_t head = HeadPosition();
  CHS_ASSIGN_OR_RETURN(
      PgResult res,
      ReadQuery("stream_timepoint",
                {PgParam::Text(std::string(stream)), PgParam::Int(timepoint)}));
  if (res.rows() != 1) return head;
  return static_cast<uint64_t>(res.GetInt64(0, 0)) - 1;
}

absl::StatusOr<std::optional<CompanyRecord>> PostgresStore::GetCompany(
    std::string_view company_number) {
  CHS_ASSIGN_OR_RETURN(
      PgResult res,
      ReadQuery("get_company", {PgParam::Text(std::string(company_number))}));
  if (res.rows() != 1) return std::nullopt;
  CompanyRecord c;
  int col = 0;
  c.company_number.assign(res.Get(0, col++));
  CompanyFields& f = c.fields;
  Address& a = f.registered_office_address;
  std::string* const text_fields[] = {
      &f.company_name, &f.company_status,   &f.company_type,
      &f.jurisdiction, &f.date_of_creation, &f.date_of_cessation,
      &a.premises,     &a.address_line_1,   &a.address_line_2,
      &a.locality,     &a.region,           &a.postal_code,
      &a.country,      &a.care_of,          &a.po_box,
  };
  static_assert(std::size(text_fields) + 1 == kNumCompanyFields);
  for (std::string* field : text_fields) field->assign(res.Get(0, col++));
  CHS_RETURN_IF_ERROR(
      DecodeListColumn(res.Get(0, col++), "companies.sic_codes", &f.sic_codes));
  c.deleted = res.GetBool(0, col++);
  c.last_timepoint = res.GetInt64(0, col++);
  c.last_position = static_cast<uint64_t>(res.GetInt64(0, col++));
  c.updated_at = FromMicros(res.GetInt64(0, col++));
  const int64_t data_position = res.GetInt64(0, col++);
  if (data_position != 0 && res.IsNull(0, col)) {
    return absl::DataLossError(
        absl::StrCat("company ", Av(company_number), " refers to event ",
                     data_position, " for its data, which is not stored"));
  }
  c.data_json.assign(res.Get(0, col++));
  c.data_pb = res.GetBytea(0, col++);
  return c;
}

absl::StatusOr<std::vector<StreamState>> PostgresStore::LoadStreamStates() {
  CHS_ASSIGN_OR_RETURN(PgResult res, ReadQuery("stream_states", {}));
  std::map<std::string, StreamState, std::less<>> states;
  for (int i = 0; i < res.rows(); ++i) {
    StreamState& s = states[std::string(res.Get(i, 1))];
    if (res.GetInt64(i, 0) == 0) {
      s.last_timepoint = res.GetInt64(i, 2);
      s.last_published_at = FromMicros(res.GetInt64(i, 3));
      s.updated_at = FromMicros(res.GetInt64(i, 4));
    } else {
      Gap g;
      g.stream.assign(res.Get(i, 1));
      g.last_timepoint = res.GetInt64(i, 2);
      g.recorded_at = FromMicros(res.GetInt64(i, 3));
      s.gaps.push_back(std::move(g));
    }
  }
  std::vector<StreamState> out;
  out.reserve(states.size());
  for (auto& [name, s] : states) {
    s.stream = name;
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<StoreStats> PostgresStore::Stats() {
  CHS_ASSIGN_OR_RETURN(PgResult res, ReadQuery("stats", {}));
  if (res.rows() != 1) return absl::DataLossError("store_counters has no row");
  StoreStats stats;
  if (!res.IsNull(0, 0)) {
    stats.oldest_position = static_cast<uint64_t>(res.GetInt64(0, 0));
    stats.head_position = static_cast<uint64_t>(res.GetInt64(0, 1));
    // Positions are dense: nothing is ever deleted from the middle.
    stats.events_stored = stats.head_position - stats.oldest_position + 1;
  } else {
    stats.head_position = HeadPosition();
  }
  stats.companies_stored = static_cast<uint64_t>(res.GetInt64(0, 2));
  stats.dead_letters = static_cast<uint64_t>(res.GetInt64(0, 3));
  stats.db_size_bytes = static_cast<uint64_t>(res.GetInt64(0, 4));
  prune_stats_.Fill(&stats);
  return stats;
}

absl::StatusOr<uint64_t> PostgresStore::OldestPosition() {
  CHS_ASSIGN_OR_RETURN(PgResult res, ReadQuery("oldest_position", {}));
  if (res.rows() != 1 || res.IsNull(0, 0)) return 0;
  return static_cast<uint64_t>(res.GetInt64(0, 0));
}

absl::StatusOr<std::optional<ResourceRecord>> PostgresStore::GetResource(
    std::string_view resource_uri) {
  CHS_ASSIGN_OR_RETURN(
      PgResult res,
      ReadQuery("get_resource", {PgParam::Text(std::string(resource_uri))}));
  if (res.rows() != 1) return std::nullopt;
  ResourceRecord out;
  CHS_RETURN_IF_ERROR(ReadResourceRow(res, 0, &out));
  return out;
}

absl::StatusOr<ResourcePage> PostgresStore::ListCompanyResources(
    std::string_view company_number, const std::vector<std::string>& kinds,
    const std::optional<ResourceCursor>& after, size_t limit,
    bool include_deleted) {
  if (limit == 0) {
    return absl::InvalidArgumentError(
        "ListCompanyResources: limit must be positive");
  }
  // One row more than asked for says whether another page follows.
  const int64_t want =
      static_cast<int64_t>(std::min<uint64_t>(limit, kMaxPosition - 1)) + 1;
  CHS_ASSIGN_OR_RETURN(
      PgResult res,
      ReadQuery("list_resources",
                {PgParam::Text(std::string(company_number)), ArrayParam(kinds),
                 PgParam::Text(after.has_value() ? after->resource_kind : ""),
                 PgParam::Text(after.has_value() ? after->resource_uri : ""),
                 PgParam::Text(include_deleted ? "true" : "false"),
                 PgParam::Int(want)}));
  ResourcePage page;
  page.resources.resize(static_cast<size_t>(res.rows()));
  for (int i = 0; i < res.rows(); ++i) {
    CHS_RETURN_IF_ERROR(ReadResourceRow(res, i, &page.resources[i]));
  }
  if (static_cast<int64_t>(page.resources.size()) >= want) {
    page.resources.pop_back();
    const ResourceRecord& last = page.resources.back();
    page.next = ResourceCursor{last.resource_kind, last.resource_uri};
  }
  return page;
}

absl::StatusOr<std::vector<DeadLetter>> PostgresStore::ReadDeadLetters(
    size_t limit) {
  std::vector<DeadLetter> out;
  if (limit == 0) return out;
  CHS_ASSIGN_OR_RETURN(
      PgResult res, ReadQuery("dead_letters",
                              {PgParam::Int(static_cast<int64_t>(
                                  std::min<uint64_t>(limit, kMaxPosition)))}));
  for (int i = 0; i < res.rows(); ++i) {
    DeadLetter& d = out.emplace_back();
    d.stream.assign(res.Get(i, 0));
    d.received_at = FromMicros(res.GetInt64(i, 1));
    d.reason.assign(res.Get(i, 2));
    d.raw = res.GetBytea(i, 3);
    if (!res.IsNull(i, 4)) d.timepoint = res.GetInt64(i, 4);
  }
  return out;
}

// --------------------------------------------------------------- Retention

absl::StatusOr<PruneStepResult> PostgresStore::PruneStep(
    const RetentionPolicy& policy, absl::Time now) {
  PruneStepResult result;
  if (policy.keeps_everything()) {
    CHS_ASSIGN_OR_RETURN(result.oldest_position, OldestPosition());
    return result;
  }
  absl::MutexLock lock(&prune_mu_);
  if (pruner_ == nullptr) {
    CHS_ASSIGN_OR_RETURN(
        PgConnection c, PgConnection::Connect(url_, options_.application_name));
    // The cluster row first, as in Commit: commits and prune transactions
    // take turns on it (and so never deadlock on company rows).
    CHS_RETURN_IF_ERROR(
        c.Prepare("lock", "SELECT head FROM cluster WHERE id = 1 FOR UPDATE"));
    CHS_RETURN_IF_ERROR(
        c.Prepare("oldest", "SELECT min(position) FROM events"));
    CHS_RETURN_IF_ERROR(
        c.Prepare("event_bytes", "SELECT event_bytes FROM store_counters"));
    CHS_RETURN_IF_ERROR(
        c.Prepare("first_young",
                  "SELECT min(position) FROM events WHERE position BETWEEN $1 "
                  "AND $2 AND received_at >= $3"));
    for (size_t i = 0; i < std::size(kCopyPrunedDataSql); ++i) {
      CHS_RETURN_IF_ERROR(
          c.Prepare(absl::StrCat("copy_data_", i), kCopyPrunedDataSql[i]));
    }
    // The size is summed before the delete (one snapshot), on the stored
    // rows as Commit summed it.
    CHS_RETURN_IF_ERROR(c.Prepare(
        "delete_events",
        absl::StrCat("WITH b AS (SELECT ", kEventBytesSum,
                     " AS bytes FROM events WHERE position BETWEEN $1 AND $2), "
                     "u AS (UPDATE store_counters SET event_bytes = "
                     "greatest(event_bytes - (SELECT bytes FROM b), 0) WHERE "
                     "id = 1) DELETE FROM events WHERE position BETWEEN $1 AND "
                     "$2")));
    // Oldest first by id; received_at is not indexed (dead letters are
    // few), so the scan stops after $2 matches or at the end of the table.
    CHS_RETURN_IF_ERROR(c.Prepare(
        "delete_dead_letters",
        "WITH d AS (DELETE FROM dead_letters WHERE id IN (SELECT id FROM "
        "dead_letters WHERE received_at < $1 ORDER BY id LIMIT $2) "
        "RETURNING 1), n AS (SELECT count(*) AS n FROM d), u AS (UPDATE "
        "store_counters SET dead_letters = dead_letters - (SELECT n FROM n) "
        "WHERE id = 1) SELECT n FROM n"));
    CHS_RETURN_IF_ERROR(
        c.Prepare("delete_gaps",
                  "DELETE FROM gaps WHERE id IN (SELECT id FROM gaps WHERE "
                  "recorded_at < $1 ORDER BY id LIMIT $2)"));
    pruner_ = std::make_unique<PgConnection>(std::move(c));
  }
  PgConnection& p = *pruner_;
  CHS_RETURN_IF_ERROR(p.EnsureReady());
  if (policy.events_for > absl::ZeroDuration() || policy.max_bytes > 0) {
    CHS_RETURN_IF_ERROR(PruneEvents(p, policy, now, &result));
  } else {
    CHS_ASSIGN_OR_RETURN(result.oldest_position, OldestPosition());
  }
  if (policy.dead_letters_for > absl::ZeroDuration()) {
    CHS_RETURN_IF_ERROR(PruneDeadLetters(p, policy, now, &result));
  }
  prune_stats_.RecordStep(result);
  return result;
}

template <typename Body>
absl::Status PostgresStore::PruneTransaction(PgConnection& p, Body body,
                                             PruneStepResult* result) {
  // The time that counts is the time a commit may have to wait: from when
  // the body has its locks (it moves `start` there) to the end.
  absl::Time start = Clock::Real()->Now();
  absl::Status status = p.Exec("BEGIN").status();
  if (status.ok()) status = body(start);
  if (status.ok()) status = p.Exec("COMMIT").status();
  if (!status.ok()) {
    if (p.healthy() && PQtransactionStatus(p.get()) != PQTRANS_IDLE) {
      p.Exec("ROLLBACK").IgnoreError();
    }
    return status;
  }
  const absl::Duration took =
      std::max(Clock::Real()->Now() - start, absl::ZeroDuration());
  result->transaction_time += took;
  prune_stats_.RecordTransaction(took);
  return absl::OkStatus();
}

absl::Status PostgresStore::PruneEvents(PgConnection& p,
                                        const RetentionPolicy& policy,
                                        absl::Time now,
                                        PruneStepResult* result) {
  const int64_t chunk = std::max(policy.rows_per_transaction, 1);
  return PruneTransaction(
      p,
      [&](absl::Time& locked_at) -> absl::Status {
        // Locked: no commit runs until this transaction ends, so the head
        // cannot move. Waiting for a commit to end is not holding one up.
        CHS_ASSIGN_OR_RETURN(PgResult lock, p.ExecPrepared("lock", {}));
        locked_at = Clock::Real()->Now();
        if (lock.rows() != 1) return absl::DataLossError("cluster has no row");
        const int64_t head = lock.GetInt64(0, 0);
        CHS_ASSIGN_OR_RETURN(PgResult o, p.ExecPrepared("oldest", {}));
        const int64_t oldest = o.IsNull(0, 0) ? 0 : o.GetInt64(0, 0);
        result->oldest_position = static_cast<uint64_t>(oldest);
        // Never the newest event, as on SQLite: the stored events stay
        // exactly [oldest, head].
        if (oldest == 0 || oldest >= head) return absl::OkStatus();
        const int64_t chunk_end = std::min(oldest + chunk - 1, head - 1);
        int64_t last = oldest - 1;  // the last position to delete
        bool over_size = false;
        if (policy.max_bytes > 0) {
          CHS_ASSIGN_OR_RETURN(PgResult b, p.ExecPrepared("event_bytes", {}));
          over_size = b.rows() == 1 && b.GetInt64(0, 0) > policy.max_bytes;
        }
        if (over_size) {
          last = chunk_end;
        } else if (policy.events_for > absl::ZeroDuration()) {
          // Oldest first, up to the first event young enough to keep: by
          // position, not by time, so that positions stay dense.
          CHS_ASSIGN_OR_RETURN(
              PgResult y,
              p.ExecPrepared("first_young",
                             {PgParam::Int(oldest), PgParam::Int(chunk_end),
                              TimeParam(now - policy.events_for)}));
          last = y.IsNull(0, 0) ? chunk_end : y.GetInt64(0, 0) - 1;
        }
        if (last < oldest) return absl::OkStatus();
        const std::vector<PgParam> range = {PgParam::Int(oldest),
                                            PgParam::Int(last)};
        for (size_t i = 0; i < std::size(kCopyPrunedDataSql); ++i) {
          CHS_ASSIGN_OR_RETURN(
              PgResult copied,
              p.ExecPrepared(absl::StrCat("copy_data_", i), range));
          result->rows_given_data +=
              static_cast<uint64_t>(copied.AffectedRows());
        }
        CHS_RETURN_IF_ERROR(p.ExecPrepared("delete_events", range).status());
        result->events = static_cast<uint64_t>(last - oldest + 1);
        result->oldest_position = static_cast<uint64_t>(last + 1);
        // A full chunk: there may be more (the next step finds out).
        result->more = last == oldest + chunk - 1;
        return absl::OkStatus();
      },
      result);
}

absl::Status PostgresStore::PruneDeadLetters(PgConnection& p,
                                             const RetentionPolicy& policy,
                                             absl::Time now,
                                             PruneStepResult* result) {
  const int64_t chunk = std::max(policy.rows_per_transaction, 1);
  const std::vector<PgParam> params = {TimeParam(now - policy.dead_letters_for),
                                       PgParam::Int(chunk)};
  return PruneTransaction(
      p,
      [&](absl::Time&) -> absl::Status {
        CHS_ASSIGN_OR_RETURN(PgResult d,
                             p.ExecPrepared("delete_dead_letters", params));
        result->dead_letters = static_cast<uint64_t>(d.GetInt64(0, 0));
        CHS_ASSIGN_OR_RETURN(PgResult g, p.ExecPrepared("delete_gaps", params));
        result->gaps = static_cast<uint64_t>(g.AffectedRows());
        if (static_cast<int64_t>(result->dead_letters) == chunk ||
            static_cast<int64_t>(result->gaps) == chunk) {
          result->more = true;
        }
        return absl::OkStatus();
      },
      result);
}

}  // namespace chstream::storage
