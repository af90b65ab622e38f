#include "storage/store.h"

#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <map>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "storage/commit_plan.h"
#include "storage/schema.h"
#include "storage/sqlite.h"
#include "storage/string_list.h"

namespace chstream::storage {
namespace {

// Page cache per connection, in KiB. The writer's cache holds the hot
// b-tree pages of a batch. 8 MB, not 16: with EventWriter's default queue
// full of ~2.5 KB events the process budget (< 100 MB RSS) is tight, and
// 16 MB bought no measurable CPU in bench/storage_writer_bench (400k
// companies). Readers mostly stream through events.
constexpr int kWriterCacheKib = 8 * 1024;
constexpr int kReaderCacheKib = 4 * 1024;
// Page size of new databases (existing ones keep theirs). Event rows are
// ~1.3 KB with their data. Larger pages mean fewer pages per byte to write,
// checksum into the WAL and checkpoint, and to read back in a replay.
// ingest_bench, chstreamd CPU per event, medians of 6 interleaved rounds
// (issue 13): 4/8/16 KB pages 18.2/16.7/15.8 us in one run, 16/32/64 KB
// 14.6/14.1/14.1 us in another (the checkpointer 1.3 -> 1.0 us); with a
// 1,000,000-company pool (random upserts) 16 and 32 KB the same within the
// spread; replay 296k -> 311-334k events/s. 64 KB, SQLite's largest,
// gained nothing more.
constexpr int kPageSizeBytes = 32768;
// How long a commit that found the WAL above Options::wal_limit_bytes waits
// for the checkpointer (a reader holding an old snapshot can prevent it).
constexpr absl::Duration kWalLimitMaxWait = absl::Seconds(1);
constexpr int64_t kMaxPosition = std::numeric_limits<int64_t>::max();

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

// Hash sets/maps keyed by views into strings that outlive them.
using ViewSet =
    absl::flat_hash_set<std::string_view, std::hash<std::string_view>>;

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// The filter prepared for per-row checks on column views (no allocation).
class FilterMatcher {
 public:
  explicit FilterMatcher(const Filter& f) {
    for (const std::string& s : f.streams) streams_.insert(s);
    for (const std::string& s : f.resource_kinds) kinds_.insert(s);
    for (const std::string& s : f.company_numbers) companies_.insert(s);
    for (EventType t : f.types) types_.insert(static_cast<int>(t));
  }
  bool Matches(std::string_view stream, std::string_view kind,
               std::string_view company, int type) const {
    return (streams_.empty() || streams_.contains(stream)) &&
           (kinds_.empty() || kinds_.contains(kind)) &&
           (companies_.empty() || companies_.contains(company)) &&
           (types_.empty() || types_.contains(type));
  }

 private:
  ViewSet streams_, kinds_, companies_;
  absl::flat_hash_set<int> types_;
};

template <typename T>
bool Contains(const std::vector<T>& v, const T& x) {
  return v.empty() || std::find(v.begin(), v.end(), x) != v.end();
}

// Column list shared by every events query, in this order.
constexpr char kEventColumns[] =
    "position, stream, timepoint, type, resource_kind, resource_id, "
    "resource_uri, company_number, published_at, received_at, "
    "fields_changed, data_json, data_pb";
enum EventColumn {
  kColPosition = 0,
  kColStream,
  kColTimepoint,
  kColType,
  kColResourceKind,
  kColResourceId,
  kColResourceUri,
  kColCompanyNumber,
  kColPublishedAt,
  kColReceivedAt,
  kColFieldsChanged,
  kColDataJson,
  kColDataPb,
};

absl::Status ReadEventRow(const Statement& st, Event* e) {
  e->position = static_cast<uint64_t>(st.ColumnInt64(kColPosition));
  e->stream.assign(st.ColumnText(kColStream));
  e->timepoint = st.ColumnInt64(kColTimepoint);
  e->type = static_cast<EventType>(st.ColumnInt64(kColType));
  e->resource_kind.assign(st.ColumnText(kColResourceKind));
  e->resource_id.assign(st.ColumnText(kColResourceId));
  e->resource_uri.assign(st.ColumnText(kColResourceUri));
  e->company_number.assign(st.ColumnText(kColCompanyNumber));
  e->published_at = FromMicros(st.ColumnInt64(kColPublishedAt));
  e->received_at = FromMicros(st.ColumnInt64(kColReceivedAt));
  CHS_RETURN_IF_ERROR(DecodeListColumn(st.ColumnText(kColFieldsChanged),
                                       "events.fields_changed",
                                       &e->fields_changed));
  e->data_json.assign(st.ColumnText(kColDataJson));
  e->data_pb.assign(st.ColumnBlob(kColDataPb));
  return absl::OkStatus();
}

// Company upsert parameters (shared numbering of the UPDATE and the INSERT).
enum CompanyParam {
  kCpNumber = 1,
  kCpFieldsFirst = 2,    // 16 fields: ?2 .. ?17, in kCompanyFieldColumns order
  kCpDataPosition = 18,  // the event's position if it carries data, else 0
  kCpDeleted = 19,
  kCpLastTimepoint = 20,
  kCpLastPosition = 21,
  kCpUpdatedAt = 22,
};
constexpr const char* kCompanyFieldColumns[] = {
    "company_name", "company_status",     "company_type",
    "jurisdiction", "date_of_creation",   "date_of_cessation",
    "roa_premises", "roa_address_line_1", "roa_address_line_2",
    "roa_locality", "roa_region",         "roa_postal_code",
    "roa_country",  "roa_care_of",        "roa_po_box",
    "sic_codes",
};
constexpr int kNumCompanyFields = std::size(kCompanyFieldColumns);

// With `with_fields` (the event carries the typed fields) the update sets
// them; without, it keeps the stored ones (an event without data). Two
// statements rather than one with a CASE per field: SQLite evaluated the 16
// CASEs on every update.
std::string CompanyUpsertSql(bool with_fields) {
  std::string cols = "company_number";
  std::string vals = absl::StrCat("?", kCpNumber);
  for (int i = 0; i < kNumCompanyFields; ++i) {
    absl::StrAppend(&cols, ", ", kCompanyFieldColumns[i]);
    absl::StrAppend(&vals, ", ?", kCpFieldsFirst + i);
  }
  absl::StrAppend(&cols,
                  ", data_position, deleted, last_timepoint, last_position, "
                  "updated_at");
  absl::StrAppend(&vals, ", ?", kCpDataPosition, ", ?", kCpDeleted, ", ?",
                  kCpLastTimepoint, ", ?", kCpLastPosition, ", ?",
                  kCpUpdatedAt);
  std::string sql =
      absl::StrCat("INSERT INTO companies (", cols, ") VALUES (", vals,
                   ") ON CONFLICT (company_number) DO "
                   "UPDATE SET ");
  for (int i = 0; i < kNumCompanyFields && with_fields; ++i) {
    const char* c = kCompanyFieldColumns[i];
    absl::StrAppend(&sql, c, " = excluded.", c, ", ");
  }
  absl::StrAppend(&sql, "data_position = CASE WHEN ?", kCpDataPosition,
                  " THEN ?", kCpDataPosition, " ELSE data_position END, ");
  absl::StrAppend(&sql,
                  "deleted = excluded.deleted, "
                  "last_timepoint = excluded.last_timepoint, "
                  "last_position = excluded.last_position, "
                  "updated_at = excluded.updated_at");
  return sql;
}

std::string CompanySelectSql() {
  // The data lives once, in the event that carried it.
  std::string sql = "SELECT c.company_number";
  for (const char* c : kCompanyFieldColumns) absl::StrAppend(&sql, ", c.", c);
  absl::StrAppend(&sql,
                  ", c.deleted, c.last_timepoint, c.last_position, "
                  "c.updated_at, c.data_position, "
                  // Once retention deleted the event, the row's copy.
                  "COALESCE(e.data_json, c.pruned_data_json), "
                  "COALESCE(e.data_pb, c.pruned_data_pb) "
                  "FROM companies c LEFT JOIN events e "
                  "ON e.position = c.data_position "
                  "WHERE c.company_number = ?1");
  return sql;
}

// ---- Retention and current state.

// The current-state tables: each row keeps its data (data_json, data_pb) in
// one event, referenced by position, instead of on the row. Before retention
// deletes events, the data of the rows that reference them is copied onto
// the rows (pruned_data_json, pruned_data_pb), and reads take the event's
// data while it exists and the copy after (COALESCE, as in
// CompanySelectSql). Copying, rather than keeping the referenced events and
// hiding them from reads, keeps positions dense (the stored events are
// exactly [oldest, head], so a pruned cursor is detected without a lookup)
// and lets whole pages of old events be freed. A new current-state table
// adds a line here and the two columns in its migration.
struct CurrentStateTable {
  const char* table;
  // The column holding the position of the event with the row's data.
  const char* position_column;
  // SQL condition: row `t` is the one event `e` is about, on the table's
  // primary key, so that the copy is a key lookup per event (there is no
  // index on position_column: it would cost every upsert a random write).
  const char* row_of_event;
};
constexpr CurrentStateTable kCurrentStateTables[] = {
    {"companies", "data_position", "t.company_number = e.company_number"},
    {"resources", "data_position", "t.resource_uri = e.resource_uri"},
};

// Copies the data of the events at positions [?1, ?2] onto the rows of
// `table` that still take their data from them.
std::string CopyPrunedDataSql(const CurrentStateTable& table) {
  return absl::StrCat("UPDATE ", table.table,
                      " AS t SET pruned_data_json = e.data_json, "
                      "pruned_data_pb = e.data_pb FROM events AS e "
                      "WHERE e.position >= ?1 AND e.position <= ?2 AND t.",
                      table.position_column, " = e.position AND ",
                      table.row_of_event);
}

// Resource upserts: the last event's kind, type, timepoint and position
// always; its company number unless empty (a deleted event without data may
// lack the one data carried); its data only if it carries data, else the
// previous data stays.
constexpr char kResourceUpsertSql[] =
    "INSERT INTO resources (resource_uri, resource_kind, company_number, "
    "deleted, last_timepoint, last_position, updated_at, data_position) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
    "ON CONFLICT (resource_uri) DO UPDATE SET "
    "resource_kind = excluded.resource_kind, "
    "company_number = CASE WHEN excluded.company_number != '' "
    "THEN excluded.company_number ELSE company_number END, "
    "deleted = excluded.deleted, "
    "last_timepoint = excluded.last_timepoint, "
    "last_position = excluded.last_position, "
    "updated_at = excluded.updated_at, "
    "data_position = CASE WHEN excluded.data_position != 0 "
    "THEN excluded.data_position ELSE data_position END";

// Every resource query selects these columns (ReadResourceRow's order); the
// data lives once, in the event that carried it.
constexpr char kResourceSelect[] =
    "SELECT r.resource_uri, r.resource_kind, r.company_number, r.deleted, "
    "r.last_timepoint, r.last_position, r.updated_at, r.data_position, "
    // Once retention deleted the event, the row's copy.
    "COALESCE(e.data_json, r.pruned_data_json), "
    "COALESCE(e.data_pb, r.pruned_data_pb) FROM resources r LEFT JOIN events e "
    "ON e.position = r.data_position ";

absl::Status ReadResourceRow(const Statement& st, ResourceRecord* r) {
  r->resource_uri.assign(st.ColumnText(0));
  r->resource_kind.assign(st.ColumnText(1));
  r->company_number.assign(st.ColumnText(2));
  r->deleted = st.ColumnInt64(3) != 0;
  r->last_timepoint = st.ColumnInt64(4);
  r->last_position = static_cast<uint64_t>(st.ColumnInt64(5));
  r->updated_at = FromMicros(st.ColumnInt64(6));
  const int64_t data_position = st.ColumnInt64(7);
  if (data_position != 0 && st.ColumnIsNull(8)) {
    return absl::DataLossError(
        absl::StrCat("resource ", Av(r->resource_uri), " refers to event ",
                     data_position, " for its data, which is not stored"));
  }
  r->data_json.assign(st.ColumnText(8));
  r->data_pb.assign(st.ColumnBlob(9));
  return absl::OkStatus();
}

absl::Status SetPragmas(Database& db, int cache_kib, absl::Duration busy) {
  sqlite3_busy_timeout(db.get(),
                       static_cast<int>(absl::ToInt64Milliseconds(busy)));
  CHS_RETURN_IF_ERROR(db.Exec(absl::StrCat("PRAGMA cache_size = -", cache_kib,
                                           "; PRAGMA temp_store = MEMORY")));
  return absl::OkStatus();
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

// ------------------------------------------------------------------- Filter

bool Filter::Matches(const Event& e) const {
  return Contains(streams, e.stream) &&
         Contains(resource_kinds, e.resource_kind) &&
         Contains(company_numbers, e.company_number) && Contains(types, e.type);
}

bool Filter::empty() const {
  return streams.empty() && resource_kinds.empty() && company_numbers.empty() &&
         types.empty();
}

// ------------------------------------------------------- connection structs

struct Store::Writer {
  Database db;  // declared first: destroyed after its statements
  Statement begin, commit, rollback;
  Statement insert_event;
  Statement upsert_company;                 // the event carries fields
  Statement upsert_company_keeping_fields;  // it does not
  Statement upsert_resource;
  Statement upsert_stream_state;
  Statement insert_dead_letter;
  Statement insert_gap;
  // The committed timepoint per stream (mirrors stream_state).
  absl::flat_hash_map<std::string, int64_t> stream_timepoints;
  int64_t page_size = 4096;
  int wal_frames = 0;  // WAL size in pages after the last commit (wal hook)
};

// Copies WAL frames back into the database file on its own thread and
// connection (PASSIVE checkpoints: never blocks the writer or readers), so
// that the writer does not do it inline after a commit as SQLite's
// autocheckpoint would: that halved write throughput in
// bench/storage_writer_bench.
struct Store::Checkpointer {
  Database db;
  std::thread thread;
  absl::Mutex mu;
  uint64_t requested ABSL_GUARDED_BY(mu) = 0;
  uint64_t served ABSL_GUARDED_BY(mu) = 0;
  // The last request served by a checkpoint that backfilled the whole WAL.
  uint64_t completed ABSL_GUARDED_BY(mu) = 0;
  bool stop ABSL_GUARDED_BY(mu) = false;

  void Run() {
    while (true) {
      uint64_t target;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](Checkpointer* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) {
              return c->stop || c->served < c->requested;
            },
            this));
        if (stop) return;
        target = requested;
      }
      int wal_frames = 0;
      int backfilled = 0;
      const int rc =
          sqlite3_wal_checkpoint_v2(db.get(), "main", SQLITE_CHECKPOINT_PASSIVE,
                                    &wal_frames, &backfilled);
      if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
        log::Warning(
            "storage checkpoint failed",
            {{"path", db.path()}, {"error", db.Error(rc, "wal_checkpoint")}});
      }
      absl::MutexLock lock(&mu);
      served = target;
      if (rc == SQLITE_OK && wal_frames == backfilled) completed = target;
    }
  }

  void Request() {
    absl::MutexLock lock(&mu);
    ++requested;
  }

  // Requests a checkpoint and waits up to `timeout` for one that started
  // after this call to backfill the whole WAL. Returns whether it did.
  bool RequestAndWait(absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    const uint64_t ticket = ++requested;
    struct Args {
      Checkpointer* c;
      uint64_t ticket;
    } args{this, ticket};
    return mu.AwaitWithTimeout(absl::Condition(
                                   +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                     return a->c->stop ||
                                            a->c->completed >= a->ticket;
                                   },
                                   &args),
                               timeout) &&
           completed >= ticket;
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu);
      stop = true;
    }
    if (thread.joinable()) thread.join();
  }
};

struct Store::Reader {
  Database db;
  Statement scan;
  Statement published_since;
  Statement stream_timepoint;
  Statement get_company;
  Statement get_resource;
  // A company's resources after a (kind, uri) cursor, any kind / one kind.
  Statement list_resources;
  Statement list_resources_of_kind;
  Statement stream_states;
  Statement gaps;
  Statement dead_letters;
  Statement bounds;
  Statement begin, commit;
};

// Retention's own read-write connection (see PruneStep), so that deleting
// never runs on, or waits for, the writer's thread.
struct Store::Pruner {
  Database db;  // declared first: destroyed after its statements
  Statement begin, commit, rollback;
  Statement oldest;       // MIN(position)
  Statement first_young;  // the first position in [?1, ?2] received >= ?3
  std::vector<Statement> copy_data;  // one per kCurrentStateTables entry
  Statement delete_events;
  Statement delete_dead_letters;
  Statement delete_gaps;
  int64_t page_size = 4096;
  int wal_frames = 0;  // WAL size in pages after the last commit (wal hook)
};

class Store::ReaderLease {
 public:
  ReaderLease(Store* store, Reader* reader) : store_(store), reader_(reader) {}
  ReaderLease(const ReaderLease&) = delete;
  ReaderLease& operator=(const ReaderLease&) = delete;
  ~ReaderLease() { store_->ReleaseReader(reader_); }
  Reader* operator->() const { return reader_; }

 private:
  Store* store_;
  Reader* reader_;
};

// -------------------------------------------------------------------- Open

Store::Store(std::string path, Options options)
    : path_(std::move(path)), options_(options) {}

Store::~Store() {
  MarkCleanShutdown();
  // The checkpointer and the readers first; the writer's connection closes
  // last and, being the last, checkpoints the WAL and deletes it.
  if (checkpointer_ != nullptr) checkpointer_->Stop();
  checkpointer_.reset();
  pruner_.reset();
  readers_.clear();
  writer_.reset();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                   const Options& options) {
  if (path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage path must be a file path, got \"", path, "\""));
  }
  if (options.read_connections < 1) {
    return absl::InvalidArgumentError("read_connections must be >= 1");
  }
  if (options.checkpoint_bytes <= 0 ||
      options.wal_limit_bytes < options.checkpoint_bytes) {
    return absl::InvalidArgumentError(
        "need 0 < checkpoint_bytes <= wal_limit_bytes");
  }
  CHS_ASSIGN_OR_RETURN(
      DatabaseFile file,
      InspectDatabaseFile(path, options.check_integrity, options.busy_timeout));
  std::unique_ptr<Store> store(new Store(path, options));
  absl::Status status = store->Init(file.is_new);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("opening ", path, ": ", status.message()));
  }
  return store;
}

absl::Status Store::Init(bool is_new) {
  writer_ = std::make_unique<Writer>();
  Writer& w = *writer_;
  CHS_ASSIGN_OR_RETURN(
      w.db, Database::Open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  sqlite3_busy_timeout(
      w.db.get(),
      static_cast<int>(absl::ToInt64Milliseconds(options_.busy_timeout)));
  if (is_new) {
    // Stamp the file before anything else, in rollback mode, so that even a
    // crash during creation leaves a file recognisable as chstream's.
    CHS_RETURN_IF_ERROR(
        w.db.Exec(absl::StrCat("PRAGMA page_size = ", kPageSizeBytes,
                               "; PRAGMA application_id = ", kApplicationId)));
  }
  CHS_ASSIGN_OR_RETURN(std::string mode,
                       w.db.QueryText("PRAGMA journal_mode = WAL"));
  if (mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot enable WAL mode (journal_mode is ", mode, ")"));
  }
  // Only now is the page size settled, which a cache size in KiB depends on.
  CHS_RETURN_IF_ERROR(SetPragmas(w.db, kWriterCacheKib, options_.busy_timeout));
  CHS_RETURN_IF_ERROR(w.db.Exec(absl::StrCat(
      "PRAGMA synchronous = ", options_.synchronous_full ? "FULL" : "NORMAL",
      // A restarted WAL larger than this is truncated: twice the limit, so
      // that under load the file is reused rather than truncated and grown
      // again.
      "; PRAGMA journal_size_limit = ", 2 * options_.wal_limit_bytes)));

  CHS_ASSIGN_OR_RETURN(w.page_size, w.db.QueryInt64("PRAGMA page_size"));
  if (options_.max_value_bytes > 0) {
    sqlite3_limit(w.db.get(), SQLITE_LIMIT_LENGTH, options_.max_value_bytes);
  }
  // Replaces SQLite's autocheckpoint hook: commits only record the WAL size
  // and checkpoints run on the checkpointer's thread.
  sqlite3_wal_hook(
      w.db.get(),
      +[](void* arg, sqlite3*, const char*, int frames) {
        static_cast<Writer*>(arg)->wal_frames = frames;
        return SQLITE_OK;
      },
      &w);

  CHS_ASSIGN_OR_RETURN(int64_t from_version,
                       w.db.QueryInt64("PRAGMA user_version"));
  CHS_RETURN_IF_ERROR(Migrate(w.db, LatestSchemaVersion()));
  CHS_ASSIGN_OR_RETURN(int64_t version, w.db.QueryInt64("PRAGMA user_version"));
  if (version != LatestSchemaVersion()) {
    return absl::InternalError(absl::StrCat("schema version is ", version,
                                            " after migration, expected ",
                                            LatestSchemaVersion()));
  }
  if (from_version == 0) {
    log::Info("storage database created",
              {{"path", path_}, {"schema_version", version}});
  } else if (from_version != version) {
    log::Info("storage schema migrated", {{"path", path_},
                                          {"from_version", from_version},
                                          {"to_version", version}});
  }

  CHS_RETURN_IF_ERROR(InitIdentity(w.db));

  // In-memory mirrors of the durable state.
  CHS_ASSIGN_OR_RETURN(int64_t head,
                       w.db.QueryInt64("SELECT MAX(position) FROM events"));
  head_position_.store(static_cast<uint64_t>(head));
  CHS_ASSIGN_OR_RETURN(int64_t companies,
                       w.db.QueryInt64("SELECT count(*) FROM companies"));
  companies_stored_.store(static_cast<uint64_t>(companies));
  CHS_ASSIGN_OR_RETURN(int64_t dead,
                       w.db.QueryInt64("SELECT count(*) FROM dead_letters"));
  dead_letters_stored_.store(static_cast<uint64_t>(dead));
  {
    CHS_ASSIGN_OR_RETURN(
        Statement st,
        w.db.Prepare("SELECT stream, last_timepoint FROM stream_state", false));
    while (true) {
      CHS_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      w.stream_timepoints[std::string(st.ColumnText(0))] = st.ColumnInt64(1);
    }
  }

  CHS_ASSIGN_OR_RETURN(w.begin, w.db.Prepare("BEGIN IMMEDIATE"));
  CHS_ASSIGN_OR_RETURN(w.commit, w.db.Prepare("COMMIT"));
  CHS_ASSIGN_OR_RETURN(w.rollback, w.db.Prepare("ROLLBACK"));
  CHS_ASSIGN_OR_RETURN(
      w.insert_event,
      w.db.Prepare(absl::StrCat("INSERT INTO events (", kEventColumns,
                                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                                "?9, ?10, ?11, ?12, ?13)")));
  CHS_ASSIGN_OR_RETURN(w.upsert_company,
                       w.db.Prepare(CompanyUpsertSql(/*with_fields=*/true)));
  CHS_ASSIGN_OR_RETURN(w.upsert_company_keeping_fields,
                       w.db.Prepare(CompanyUpsertSql(/*with_fields=*/false)));
  CHS_ASSIGN_OR_RETURN(w.upsert_resource, w.db.Prepare(kResourceUpsertSql));
  CHS_ASSIGN_OR_RETURN(
      w.upsert_stream_state,
      w.db.Prepare("INSERT INTO stream_state (stream, last_timepoint, "
                   "last_published_at, updated_at) VALUES (?1, ?2, ?3, ?4) "
                   "ON CONFLICT (stream) DO UPDATE SET "
                   "last_timepoint = excluded.last_timepoint, "
                   "last_published_at = excluded.last_published_at, "
                   "updated_at = excluded.updated_at"));
  CHS_ASSIGN_OR_RETURN(
      w.insert_dead_letter,
      w.db.Prepare("INSERT INTO dead_letters (stream, received_at, reason, "
                   "raw, timepoint) VALUES (?1, ?2, ?3, ?4, ?5)"));
  CHS_ASSIGN_OR_RETURN(
      w.insert_gap,
      w.db.Prepare("INSERT INTO gaps (stream, last_timepoint, recorded_at) "
                   "VALUES (?1, ?2, ?3)"));

  for (int i = 0; i < options_.read_connections; ++i) {
    auto r = std::make_unique<Reader>();
    CHS_ASSIGN_OR_RETURN(r->db, Database::Open(path_, SQLITE_OPEN_READONLY));
    CHS_RETURN_IF_ERROR(
        SetPragmas(r->db, kReaderCacheKib, options_.busy_timeout));
    CHS_ASSIGN_OR_RETURN(
        r->scan, r->db.Prepare(absl::StrCat(
                     "SELECT ", kEventColumns,
                     " FROM events WHERE position > ?1 AND position <= ?2"
                     " ORDER BY position LIMIT ?3")));
    CHS_ASSIGN_OR_RETURN(
        r->published_since,
        r->db.Prepare(
            "SELECT MIN(position) FROM events WHERE published_at >= ?1"));
    CHS_ASSIGN_OR_RETURN(
        r->stream_timepoint,
        r->db.Prepare("SELECT position FROM events WHERE stream = ?1 AND "
                      "timepoint >= ?2 ORDER BY timepoint LIMIT 1"));
    CHS_ASSIGN_OR_RETURN(r->get_company, r->db.Prepare(CompanySelectSql()));
    CHS_ASSIGN_OR_RETURN(r->get_resource,
                         r->db.Prepare(absl::StrCat(
                             kResourceSelect, "WHERE r.resource_uri = ?1")));
    CHS_ASSIGN_OR_RETURN(
        r->list_resources,
        r->db.Prepare(
            absl::StrCat(kResourceSelect,
                         "WHERE r.company_number = ?1 AND "
                         "(r.resource_kind, r.resource_uri) > (?2, ?3) AND "
                         "(?4 OR r.deleted = 0) "
                         "ORDER BY r.resource_kind, r.resource_uri LIMIT ?5")));
    CHS_ASSIGN_OR_RETURN(
        r->list_resources_of_kind,
        r->db.Prepare(absl::StrCat(
            kResourceSelect,
            "WHERE r.company_number = ?1 AND r.resource_kind = ?2 AND "
            "r.resource_uri > ?3 AND (?4 OR r.deleted = 0) "
            "ORDER BY r.resource_uri LIMIT ?5")));
    CHS_ASSIGN_OR_RETURN(
        r->stream_states,
        r->db.Prepare("SELECT stream, last_timepoint, last_published_at, "
                      "updated_at FROM stream_state"));
    CHS_ASSIGN_OR_RETURN(
        r->gaps, r->db.Prepare("SELECT stream, last_timepoint, recorded_at "
                               "FROM gaps ORDER BY id"));
    CHS_ASSIGN_OR_RETURN(
        r->dead_letters,
        r->db.Prepare("SELECT stream, received_at, reason, raw, timepoint "
                      "FROM dead_letters ORDER BY id DESC LIMIT ?1"));
    CHS_ASSIGN_OR_RETURN(
        r->bounds, r->db.Prepare("SELECT (SELECT MIN(position) FROM events), "
                                 "(SELECT MAX(position) FROM events)"));
    CHS_ASSIGN_OR_RETURN(r->begin, r->db.Prepare("BEGIN"));
    CHS_ASSIGN_OR_RETURN(r->commit, r->db.Prepare("COMMIT"));
    readers_.push_back(std::move(r));
  }
  {
    absl::MutexLock lock(&pool_mu_);
    for (const auto& r : readers_) free_readers_.push_back(r.get());
  }

  checkpointer_ = std::make_unique<Checkpointer>();
  CHS_ASSIGN_OR_RETURN(checkpointer_->db,
                       Database::Open(path_, SQLITE_OPEN_READWRITE));
  CHS_RETURN_IF_ERROR(
      SetPragmas(checkpointer_->db, kReaderCacheKib, options_.busy_timeout));
  // Checkpoints fsync according to the connection that runs them.
  CHS_RETURN_IF_ERROR(checkpointer_->db.Exec(absl::StrCat(
      "PRAGMA synchronous = ", options_.synchronous_full ? "FULL" : "NORMAL")));
  checkpointer_->thread = std::thread([c = checkpointer_.get()] {
    SetCurrentThreadName("chs-checkpoint");
    c->Run();
  });
  return absl::OkStatus();
}

absl::Status Store::InitIdentity(Database& db) {
  int64_t open_unsynced = 0;
  {
    CHS_ASSIGN_OR_RETURN(
        Statement st,
        db.Prepare("SELECT store_id, open_unsynced FROM store_identity",
                   false));
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return absl::DataLossError("store_identity has no row");
    store_id_.assign(st.ColumnText(0));
    open_unsynced = st.ColumnInt64(1);
  }
  std::string reason;
  if (options_.new_store_id) {
    reason = "requested (--new_store_id)";
  } else if (open_unsynced != 0) {
    reason =
        "the last process ran with synchronous=normal and did not shut down "
        "cleanly: its last commits may have been lost and their positions "
        "given to other events";
  }
  // Whatever the setting, this transaction is fsync'ed before anything is
  // read or committed: under NORMAL a power loss could otherwise undo the
  // marker together with the commits it covers.
  CHS_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous = FULL"));
  absl::Status status = db.Exec(absl::StrCat(
      "BEGIN IMMEDIATE; UPDATE store_identity SET open_unsynced = ",
      options_.synchronous_full ? 0 : 1));
  if (status.ok() && !reason.empty()) status = ReplaceStoreId(db, reason);
  if (status.ok()) status = db.Exec("COMMIT");
  if (!status.ok()) {
    db.Exec("ROLLBACK").IgnoreError();
    return status;
  }
  CHS_RETURN_IF_ERROR(db.Exec(absl::StrCat(
      "PRAGMA synchronous = ", options_.synchronous_full ? "FULL" : "NORMAL")));
  if (!reason.empty()) {
    const std::string old_id = store_id_;
    CHS_ASSIGN_OR_RETURN(store_id_,
                         db.QueryText("SELECT store_id FROM store_identity"));
    log::Warning(
        "new store_id: positions may have been reassigned; clients resuming "
        "with expected_store_id get FAILED_PRECONDITION and resume from a "
        "timepoint or the beginning",
        {{"path", path_},
         {"old_store_id", old_id},
         {"store_id", store_id_},
         {"reason", reason}});
  }
  return absl::OkStatus();
}

absl::Status ReplaceStoreId(Database& db, std::string_view reason) {
  CHS_ASSIGN_OR_RETURN(
      Statement st,
      db.Prepare("UPDATE store_identity SET store_id = "
                 "lower(hex(randomblob(16))), reason = ?1, changed_at = "
                 "CAST((julianday('now') - 2440587.5) * 86400000000 AS "
                 "INTEGER)",
                 false));
  st.BindText(1, reason);
  return st.Run();
}

void Store::MarkCleanShutdown() {
  if (options_.synchronous_full || writer_ == nullptr ||
      writer_->db.get() == nullptr || store_id_.empty()) {
    return;
  }
  // FULL for this commit: its fsync also makes every earlier WAL frame
  // durable. If it fails, the next open replaces the store_id (safe).
  absl::Status status = writer_->db.Exec(
      "PRAGMA synchronous = FULL; "
      "UPDATE store_identity SET open_unsynced = 0");
  if (!status.ok()) {
    log::Warning(
        "could not record a clean shutdown: the next start gives "
        "the store a new store_id",
        {{"path", path_}, {"error", status}});
  }
}

// ------------------------------------------------------------------ Commit

void Store::SetMaxPageCountForTest(int64_t pages) {
  pending_max_page_count_.store(std::max<int64_t>(pages, 0));
}

absl::StatusOr<CommitResult> Store::Commit(Batch* batch, absl::Time now) {
  CommitResult result;
  if (batch->empty()) {
    result.events = std::make_shared<const std::vector<Event>>();
    return result;
  }
  // Takes turns with retention's transactions (PruneStep).
  absl::MutexLock write_lock(&write_mu_);
  Writer& w = *writer_;
  if (const int64_t pages = pending_max_page_count_.exchange(-1); pages >= 0) {
    // 0 restores SQLite's maximum (max_page_count cannot be set to 0).
    CHS_RETURN_IF_ERROR(w.db.Exec(absl::StrCat(
        "PRAGMA max_page_count = ", pages > 0 ? pages : int64_t{4294967294})));
  }
  const uint64_t head = head_position_.load(std::memory_order_relaxed);

  // Decide what to keep without touching the batch, so that a failed commit
  // can be retried with the same batch.
  CommitPlan plan = PlanCommit(
      batch->events, [&](std::string_view s) -> std::optional<int64_t> {
        auto committed =
            w.stream_timepoints.find(absl::string_view(s.data(), s.size()));
        if (committed == w.stream_timepoints.end()) return std::nullopt;
        return committed->second;
      });
  const std::vector<size_t>& kept = plan.kept;
  const auto& progress = plan.progress;
  result.duplicates = std::move(plan.duplicates);

  uint64_t new_companies = 0;
  auto run = [&]() -> absl::Status {
    CHS_RETURN_IF_ERROR(w.begin.Run());
    w.begin.Reset();
    std::string fields_changed;
    std::string sic_codes;
    for (size_t j = 0; j < kept.size(); ++j) {
      const Event& e = batch->events[kept[j]];
      const int64_t position = static_cast<int64_t>(head + 1 + j);
      fields_changed = EncodeStringList(e.fields_changed);
      Statement& ins = w.insert_event;
      ins.BindInt64(1, position);
      ins.BindText(2, e.stream);
      ins.BindInt64(3, e.timepoint);
      ins.BindInt64(4, static_cast<int64_t>(e.type));
      ins.BindText(5, e.resource_kind);
      ins.BindText(6, e.resource_id);
      ins.BindText(7, e.resource_uri);
      ins.BindText(8, e.company_number);
      ins.BindInt64(9, ToMicros(e.published_at));
      ins.BindInt64(10, ToMicros(e.received_at));
      ins.BindText(11, fields_changed);
      ins.BindText(12, StoredDataJson(e));
      ins.BindBlob(13, e.data_pb);
      absl::Status s = ins.Run();
      ins.Reset();
      CHS_RETURN_IF_ERROR(s);
    }

    // One upsert per company and per resource of the batch, in key order
    // (storage/commit_plan.h).
    for (const CompanyChange& c :
         MergeCompanyChanges(batch->events, kept, head + 1)) {
      static const CompanyFields kNoFields;
      const CompanyFields& f =
          c.fields != nullptr ? *c.fields->company : kNoFields;
      sic_codes = EncodeStringList(f.sic_codes);
      const Address& a = f.registered_office_address;
      const std::string_view values[kNumCompanyFields] = {
          f.company_name, f.company_status,   f.company_type,
          f.jurisdiction, f.date_of_creation, f.date_of_cessation,
          a.premises,     a.address_line_1,   a.address_line_2,
          a.locality,     a.region,           a.postal_code,
          a.country,      a.care_of,          a.po_box,
          sic_codes,
      };
      Statement& st = c.fields != nullptr ? w.upsert_company
                                          : w.upsert_company_keeping_fields;
      st.BindText(kCpNumber, c.company_number);
      for (int k = 0; k < kNumCompanyFields; ++k) {
        st.BindText(kCpFieldsFirst + k, values[k]);
      }
      st.BindInt64(kCpDataPosition, static_cast<int64_t>(c.data_position));
      st.BindInt64(kCpDeleted, c.last->type == EventType::kDeleted ? 1 : 0);
      st.BindInt64(kCpLastTimepoint, c.last->timepoint);
      st.BindInt64(kCpLastPosition, static_cast<int64_t>(c.last_position));
      st.BindInt64(kCpUpdatedAt, ToMicros(c.last->received_at));
      // Company rowids start at 1, and the UPDATE arm of an upsert leaves
      // last_insert_rowid alone: non-zero afterwards means a new company.
      sqlite3_set_last_insert_rowid(w.db.get(), 0);
      absl::Status s = st.Run();
      st.Reset();
      CHS_RETURN_IF_ERROR(s);
      if (sqlite3_last_insert_rowid(w.db.get()) != 0) ++new_companies;
    }
    for (const ResourceChange& r :
         MergeResourceChanges(batch->events, kept, head + 1)) {
      Statement& st = w.upsert_resource;
      st.BindText(1, r.resource_uri);
      st.BindText(2, r.last->resource_kind);
      st.BindText(3, r.company_number);
      st.BindInt64(4, r.last->type == EventType::kDeleted ? 1 : 0);
      st.BindInt64(5, r.last->timepoint);
      st.BindInt64(6, static_cast<int64_t>(r.last_position));
      st.BindInt64(7, ToMicros(r.last->received_at));
      st.BindInt64(8, static_cast<int64_t>(r.data_position));
      absl::Status s = st.Run();
      st.Reset();
      CHS_RETURN_IF_ERROR(s);
    }
    for (const auto& [stream, p] : progress) {
      if (!p.advanced) continue;
      const Event& last = batch->events[p.last_kept];
      Statement& st = w.upsert_stream_state;
      st.BindText(1, stream);
      st.BindInt64(2, last.timepoint);
      st.BindInt64(3, ToMicros(last.published_at));
      st.BindInt64(4, ToMicros(now));
      absl::Status s = st.Run();
      st.Reset();
      CHS_RETURN_IF_ERROR(s);
    }
    for (const DeadLetter& d : batch->dead_letters) {
      Statement& st = w.insert_dead_letter;
      st.BindText(1, d.stream);
      st.BindInt64(2, ToMicros(d.received_at));
      st.BindText(3, d.reason);
      st.BindBlob(4, d.raw);
      if (d.timepoint.has_value()) {
        st.BindInt64(5, *d.timepoint);
      } else {
        st.BindNull(5);
      }
      absl::Status s = st.Run();
      st.Reset();
      CHS_RETURN_IF_ERROR(s);
    }
    for (const Gap& g : batch->gaps) {
      Statement& st = w.insert_gap;
      st.BindText(1, g.stream);
      st.BindInt64(2, g.last_timepoint);
      st.BindInt64(3, ToMicros(g.recorded_at));
      absl::Status s = st.Run();
      st.Reset();
      CHS_RETURN_IF_ERROR(s);
    }
    absl::Status s = w.commit.Run();
    w.commit.Reset();
    return s;
  };

  absl::Status status = run();
  if (!status.ok()) {
    if (!sqlite3_get_autocommit(w.db.get())) {
      absl::Status rb = w.rollback.Run();
      w.rollback.Reset();
      if (!rb.ok()) {
        log::Error("storage rollback failed", {{"path", path_}, {"error", rb}});
      }
    }
    return status;
  }

  // Committed: update the in-memory mirrors, then publish the new head.
  for (const auto& [stream, p] : progress) {
    if (p.advanced) {
      w.stream_timepoints[std::string(stream)] =
          batch->events[p.last_kept].timepoint;
    }
  }
  std::vector<Event>& in = batch->events;
  if (kept.size() != in.size()) {
    // Compact in place (kept is ascending, so j <= kept[j]).
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
  companies_stored_.fetch_add(new_companies, std::memory_order_relaxed);
  dead_letters_stored_.fetch_add(batch->dead_letters.size(),
                                 std::memory_order_relaxed);
  head_position_.store(head + kept.size(), std::memory_order_release);

  const int64_t wal_bytes = int64_t{w.wal_frames} * w.page_size;
  if (wal_bytes >= options_.wal_limit_bytes) {
    // Let the checkpointer catch up so that the next transaction restarts
    // the WAL from its beginning instead of growing it without bound.
    checkpointer_->RequestAndWait(kWalLimitMaxWait);
  } else if (wal_bytes >= options_.checkpoint_bytes) {
    checkpointer_->Request();
  }
  return result;
}

// --------------------------------------------------------------- Retention

absl::Status Store::OpenPruner() {
  auto p = std::make_unique<Pruner>();
  CHS_ASSIGN_OR_RETURN(p->db, Database::Open(path_, SQLITE_OPEN_READWRITE));
  CHS_RETURN_IF_ERROR(
      SetPragmas(p->db, kReaderCacheKib, options_.busy_timeout));
  // NORMAL whatever --synchronous says: a prune commit then does not wait
  // for an fsync while the writer waits for it (on a busy disk the fsync
  // is most of a transaction: 10-60 ms against 2-8 ms of deleting, see
  // bench/RESULTS.md). Safe: a WAL is replayed in order, so the writer's
  // next synced commit makes the prune durable too, and a power loss before
  // that can only bring pruned events back, never lose or reorder a commit.
  CHS_RETURN_IF_ERROR(p->db.Exec("PRAGMA synchronous = NORMAL"));
  CHS_ASSIGN_OR_RETURN(p->page_size, p->db.QueryInt64("PRAGMA page_size"));
  // As on the writer: no checkpoint inside a commit (it would run under
  // write_mu_); the checkpointer's thread does them.
  sqlite3_wal_hook(
      p->db.get(),
      +[](void* arg, sqlite3*, const char*, int frames) {
        static_cast<Pruner*>(arg)->wal_frames = frames;
        return SQLITE_OK;
      },
      p.get());
  CHS_ASSIGN_OR_RETURN(p->begin, p->db.Prepare("BEGIN IMMEDIATE"));
  CHS_ASSIGN_OR_RETURN(p->commit, p->db.Prepare("COMMIT"));
  CHS_ASSIGN_OR_RETURN(p->rollback, p->db.Prepare("ROLLBACK"));
  CHS_ASSIGN_OR_RETURN(p->oldest,
                       p->db.Prepare("SELECT MIN(position) FROM events"));
  CHS_ASSIGN_OR_RETURN(
      p->first_young,
      p->db.Prepare("SELECT MIN(position) FROM events WHERE position >= ?1 "
                    "AND position <= ?2 AND received_at >= ?3"));
  for (const CurrentStateTable& t : kCurrentStateTables) {
    CHS_ASSIGN_OR_RETURN(p->copy_data.emplace_back(),
                         p->db.Prepare(CopyPrunedDataSql(t)));
  }
  CHS_ASSIGN_OR_RETURN(
      p->delete_events,
      p->db.Prepare(
          "DELETE FROM events WHERE position >= ?1 AND position <= ?2"));
  // Oldest first by id; received_at is not indexed (dead letters are few),
  // so the scan stops after ?2 matches or at the end of the table.
  CHS_ASSIGN_OR_RETURN(
      p->delete_dead_letters,
      p->db.Prepare("DELETE FROM dead_letters WHERE id IN (SELECT id FROM "
                    "dead_letters WHERE received_at < ?1 ORDER BY id "
                    "LIMIT ?2)"));
  CHS_ASSIGN_OR_RETURN(
      p->delete_gaps,
      p->db.Prepare("DELETE FROM gaps WHERE id IN (SELECT id FROM gaps "
                    "WHERE recorded_at < ?1 ORDER BY id LIMIT ?2)"));
  pruner_ = std::move(p);
  return absl::OkStatus();
}

template <typename Body>
absl::Status Store::PruneTransaction(Body body, PruneStepResult* result) {
  Pruner& p = *pruner_;
  absl::MutexLock write_lock(&write_mu_);
  const absl::Time start = Clock::Real()->Now();
  absl::Status status = p.begin.Run();
  p.begin.Reset();
  if (status.ok()) status = body(p);
  if (status.ok()) {
    status = p.commit.Run();
    p.commit.Reset();
  }
  if (!status.ok()) {
    if (!sqlite3_get_autocommit(p.db.get())) {
      p.rollback.Run().IgnoreError();
      p.rollback.Reset();
    }
    return status;
  }
  const absl::Duration took =
      std::max(Clock::Real()->Now() - start, absl::ZeroDuration());
  result->transaction_time += took;
  prune_stats_.RecordTransaction(took);
  if (int64_t{p.wal_frames} * p.page_size >= options_.checkpoint_bytes) {
    checkpointer_->Request();
  }
  return absl::OkStatus();
}

absl::Status Store::PruneEvents(const RetentionPolicy& policy, absl::Time now,
                                PruneStepResult* result) {
  const int64_t chunk = std::max(policy.rows_per_transaction, 1);
  const int64_t cutoff = policy.events_for > absl::ZeroDuration()
                             ? ToMicros(now - policy.events_for)
                             : std::numeric_limits<int64_t>::max();
  Pruner& pruner = *pruner_;
  {
    // Before taking the write lock: read the rows the transaction will
    // delete, so that it finds their pages in the cache instead of waiting
    // for the disk while the writer waits for it (a read, no lock held).
    CHS_ASSIGN_OR_RETURN(
        int64_t oldest,
        pruner.db.QueryInt64("SELECT MIN(position) FROM events"));
    Statement& st = pruner.first_young;
    absl::Cleanup reset = [&st] { st.Reset(); };
    st.BindInt64(1, oldest);
    st.BindInt64(2, oldest + chunk - 1);
    st.BindInt64(3, cutoff);
    CHS_RETURN_IF_ERROR(st.Step().status());
  }
  return PruneTransaction(
      [&](Pruner& p) -> absl::Status {
        // Under write_mu_: the head cannot move during this transaction.
        const int64_t head = static_cast<int64_t>(HeadPosition());
        int64_t oldest = 0;
        {
          absl::Cleanup reset = [&p] { p.oldest.Reset(); };
          CHS_ASSIGN_OR_RETURN(bool row, p.oldest.Step());
          if (row && !p.oldest.ColumnIsNull(0)) {
            oldest = p.oldest.ColumnInt64(0);
          }
        }
        result->oldest_position = static_cast<uint64_t>(oldest);
        // Never the newest event: Init derives the head from it.
        if (oldest == 0 || oldest >= head) return absl::OkStatus();
        const int64_t chunk_end = std::min(oldest + chunk - 1, head - 1);
        int64_t last = oldest - 1;  // the last position to delete
        bool over_size = false;
        if (policy.max_bytes > 0) {
          CHS_ASSIGN_OR_RETURN(int64_t pages,
                               p.db.QueryInt64("PRAGMA page_count"));
          CHS_ASSIGN_OR_RETURN(int64_t free_pages,
                               p.db.QueryInt64("PRAGMA freelist_count"));
          over_size = (pages - free_pages) * p.page_size > policy.max_bytes;
        }
        if (over_size) {
          last = chunk_end;
        } else if (policy.events_for > absl::ZeroDuration()) {
          // Oldest first, up to the first event young enough to keep: by
          // position, not by time, so that positions stay dense.
          Statement& st = p.first_young;
          absl::Cleanup reset = [&st] { st.Reset(); };
          st.BindInt64(1, oldest);
          st.BindInt64(2, chunk_end);
          st.BindInt64(3, cutoff);
          CHS_ASSIGN_OR_RETURN(bool row, st.Step());
          last = row && !st.ColumnIsNull(0) ? st.ColumnInt64(0) - 1 : chunk_end;
        }
        if (last < oldest) return absl::OkStatus();
        for (Statement& copy : p.copy_data) {
          copy.BindInt64(1, oldest);
          copy.BindInt64(2, last);
          absl::Status s = copy.Run();
          copy.Reset();
          CHS_RETURN_IF_ERROR(s);
          result->rows_given_data += sqlite3_changes(p.db.get());
        }
        p.delete_events.BindInt64(1, oldest);
        p.delete_events.BindInt64(2, last);
        absl::Status s = p.delete_events.Run();
        p.delete_events.Reset();
        CHS_RETURN_IF_ERROR(s);
        result->events = static_cast<uint64_t>(last - oldest + 1);
        result->oldest_position = static_cast<uint64_t>(last + 1);
        // A full chunk: there may be more (the next step finds out).
        result->more = last == oldest + chunk - 1;
        return absl::OkStatus();
      },
      result);
}

absl::Status Store::PruneDeadLetters(const RetentionPolicy& policy,
                                     absl::Time now, PruneStepResult* result) {
  const int64_t chunk = std::max(policy.rows_per_transaction, 1);
  const int64_t cutoff = ToMicros(now - policy.dead_letters_for);
  return PruneTransaction(
      [&](Pruner& p) -> absl::Status {
        for (auto [st, count] :
             {std::pair(&p.delete_dead_letters, &result->dead_letters),
              std::pair(&p.delete_gaps, &result->gaps)}) {
          st->BindInt64(1, cutoff);
          st->BindInt64(2, chunk);
          absl::Status s = st->Run();
          st->Reset();
          CHS_RETURN_IF_ERROR(s);
          *count = static_cast<uint64_t>(sqlite3_changes(p.db.get()));
          if (static_cast<int64_t>(*count) == chunk) result->more = true;
        }
        return absl::OkStatus();
      },
      result);
}

absl::StatusOr<PruneStepResult> Store::PruneStep(const RetentionPolicy& policy,
                                                 absl::Time now) {
  PruneStepResult result;
  if (policy.keeps_everything()) {
    CHS_ASSIGN_OR_RETURN(result.oldest_position, OldestPosition());
    return result;
  }
  if (pruner_ == nullptr) CHS_RETURN_IF_ERROR(OpenPruner());
  if (policy.events_for > absl::ZeroDuration() || policy.max_bytes > 0) {
    CHS_RETURN_IF_ERROR(PruneEvents(policy, now, &result));
  } else {
    CHS_ASSIGN_OR_RETURN(result.oldest_position, OldestPosition());
  }
  if (policy.dead_letters_for > absl::ZeroDuration()) {
    CHS_RETURN_IF_ERROR(PruneDeadLetters(policy, now, &result));
  }
  prune_stats_.RecordStep(result);
  dead_letters_stored_.fetch_sub(result.dead_letters,
                                 std::memory_order_relaxed);
  return result;
}

// ------------------------------------------------------------------- Reads

Store::ReaderLease Store::AcquireReader() {
  pool_mu_.LockWhen(absl::Condition(
      +[](std::vector<Reader*>* free) { return !free->empty(); },
      &free_readers_));
  Reader* r = free_readers_.back();
  free_readers_.pop_back();
  pool_mu_.Unlock();
  return ReaderLease(this, r);
}

void Store::ReleaseReader(Reader* reader) {
  absl::MutexLock lock(&pool_mu_);
  free_readers_.push_back(reader);
}

absl::StatusOr<Page> Store::ReadPage(uint64_t after, uint64_t up_to,
                                     const Filter& filter, size_t max_events,
                                     size_t max_scan) {
  if (max_events == 0 || max_scan == 0) {
    return absl::InvalidArgumentError(
        "ReadPage: max_events and max_scan must be positive");
  }
  // Every position up to the head read here is visible to the statement
  // below, whose snapshot starts later.
  const uint64_t head = HeadPosition();
  const uint64_t limit_hi = std::min(up_to, head);
  Page page;
  page.scanned_through = after;
  if (after >= limit_hi) return page;

  ReaderLease r = AcquireReader();
  Statement* st = &r->scan;
  // Positions are dense, so this window holds at most max_scan events: the
  // work is bounded whatever the filter. Filters are applied here, on the
  // column values, before anything is copied, so that one cached statement
  // serves every filter shape.
  const uint64_t window_end =
      max_scan >= limit_hi - after ? limit_hi : after + max_scan;
  absl::Cleanup reset = [st] { st->Reset(); };
  st->BindInt64(1,
                static_cast<int64_t>(std::min<uint64_t>(after, kMaxPosition)));
  st->BindInt64(2, static_cast<int64_t>(window_end));
  st->BindInt64(
      3, static_cast<int64_t>(std::min<uint64_t>(max_scan, kMaxPosition)));

  const FilterMatcher matcher(filter);
  const bool match_all = filter.empty();
  // Unfiltered (a replay), every examined row is returned.
  if (match_all) {
    page.events.reserve(std::min<uint64_t>(max_events, window_end - after));
  }
  size_t examined = 0;
  uint64_t last_examined = after;
  while (true) {
    CHS_ASSIGN_OR_RETURN(bool row, st->Step());
    // Positions are dense and after < limit_hi <= head, so the first row is
    // after + 1 unless retention deleted it (see PruneStep).
    if (examined == 0 && (!row || static_cast<uint64_t>(st->ColumnInt64(
                                      kColPosition)) != after + 1)) {
      st->Reset();
      return PrunedCursorError(r, after, head);
    }
    if (!row) {
      // Ran out of rows: everything up to the window end was examined,
      // unless the scan limit cut the result short.
      page.scanned_through = examined >= max_scan ? last_examined : window_end;
      break;
    }
    ++examined;
    last_examined = static_cast<uint64_t>(st->ColumnInt64(kColPosition));
    if (!match_all &&
        !matcher.Matches(st->ColumnText(kColStream),
                         st->ColumnText(kColResourceKind),
                         st->ColumnText(kColCompanyNumber),
                         static_cast<int>(st->ColumnInt64(kColType)))) {
      continue;
    }
    CHS_RETURN_IF_ERROR(ReadEventRow(*st, &page.events.emplace_back()));
    if (page.events.size() >= max_events) {
      page.scanned_through = last_examined;
      break;
    }
  }
  return page;
}

absl::Status Store::PrunedCursorError(const ReaderLease& r, uint64_t after,
                                      uint64_t head) {
  Statement& st = r->bounds;
  absl::Cleanup reset = [&st] { st.Reset(); };
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  const uint64_t oldest =
      row && !st.ColumnIsNull(0) ? static_cast<uint64_t>(st.ColumnInt64(0)) : 0;
  if (row && !st.ColumnIsNull(1)) {
    head = std::max(head, static_cast<uint64_t>(st.ColumnInt64(1)));
  }
  return storage::PrunedCursorError(after, oldest, head);
}

absl::Status PrunedCursorError(uint64_t after, uint64_t oldest, uint64_t head) {
  const uint64_t floor = oldest == 0 ? head : oldest - 1;
  return absl::OutOfRangeError(absl::StrCat(
      "the events after position ", after,
      " were deleted by retention; the stored events are positions ", oldest,
      " to ", head, ": valid after_position range is [", floor, ", ", head,
      "] (or resume from a timepoint)"));
}

absl::StatusOr<uint64_t> Store::OldestPosition() {
  ReaderLease r = AcquireReader();
  Statement& st = r->bounds;
  absl::Cleanup reset = [&st] { st.Reset(); };
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.ColumnIsNull(0)) return 0;
  return static_cast<uint64_t>(st.ColumnInt64(0));
}

absl::StatusOr<uint64_t> Store::PositionBeforePublishedSince(absl::Time t) {
  const uint64_t head = HeadPosition();
  ReaderLease r = AcquireReader();
  Statement& st = r->published_since;
  absl::Cleanup reset = [&st] { st.Reset(); };
  st.BindInt64(1, ToMicros(t));
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.ColumnIsNull(0)) return head;
  return static_cast<uint64_t>(st.ColumnInt64(0)) - 1;
}

absl::StatusOr<uint64_t> Store::PositionBeforeStreamTimepoint(
    std::string_view stream, int64_t timepoint) {
  const uint64_t head = HeadPosition();
  ReaderLease r = AcquireReader();
  Statement& st = r->stream_timepoint;
  absl::Cleanup reset = [&st] { st.Reset(); };
  st.BindText(1, stream);
  st.BindInt64(2, timepoint);
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return head;
  return static_cast<uint64_t>(st.ColumnInt64(0)) - 1;
}

absl::StatusOr<std::optional<CompanyRecord>> Store::GetCompany(
    std::string_view company_number) {
  ReaderLease r = AcquireReader();
  Statement& st = r->get_company;
  absl::Cleanup reset = [&st] { st.Reset(); };
  st.BindText(1, company_number);
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::nullopt;
  CompanyRecord c;
  int col = 0;
  c.company_number.assign(st.ColumnText(col++));
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
  for (std::string* field : text_fields) field->assign(st.ColumnText(col++));
  CHS_RETURN_IF_ERROR(DecodeListColumn(st.ColumnText(col++),
                                       "companies.sic_codes", &f.sic_codes));
  c.deleted = st.ColumnInt64(col++) != 0;
  c.last_timepoint = st.ColumnInt64(col++);
  c.last_position = static_cast<uint64_t>(st.ColumnInt64(col++));
  c.updated_at = FromMicros(st.ColumnInt64(col++));
  const int64_t data_position = st.ColumnInt64(col++);
  if (data_position != 0 && st.ColumnIsNull(col)) {
    return absl::DataLossError(
        absl::StrCat("company ", Av(company_number), " refers to event ",
                     data_position, " for its data, which is not stored"));
  }
  c.data_json.assign(st.ColumnText(col++));
  c.data_pb.assign(st.ColumnBlob(col++));
  return c;
}

absl::StatusOr<std::optional<ResourceRecord>> Store::GetResource(
    std::string_view resource_uri) {
  ReaderLease r = AcquireReader();
  Statement& st = r->get_resource;
  absl::Cleanup reset = [&st] { st.Reset(); };
  st.BindText(1, resource_uri);
  CHS_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::nullopt;
  ResourceRecord out;
  CHS_RETURN_IF_ERROR(ReadResourceRow(st, &out));
  return out;
}

absl::StatusOr<ResourcePage> Store::ListCompanyResources(
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
  ResourcePage page;
  ReaderLease r = AcquireReader();
  // One read transaction: with several kinds, every query sees one snapshot.
  CHS_RETURN_IF_ERROR(r->begin.Run());
  r->begin.Reset();
  absl::Cleanup end = [&r] {
    r->list_resources.Reset();
    r->list_resources_of_kind.Reset();
    r->commit.Run().IgnoreError();
    r->commit.Reset();
  };
  // Runs `st` (bound but for the row limit) and appends its rows.
  const auto run = [&](Statement& st) -> absl::Status {
    st.BindInt64(4, include_deleted ? 1 : 0);
    st.BindInt64(5, want - static_cast<int64_t>(page.resources.size()));
    while (true) {
      CHS_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      CHS_RETURN_IF_ERROR(ReadResourceRow(st, &page.resources.emplace_back()));
    }
    st.Reset();
    return absl::OkStatus();
  };
  if (kinds.empty()) {
    Statement& st = r->list_resources;
    st.BindText(1, company_number);
    // Views, not temporaries: the statement binds without copying.
    st.BindText(2, after.has_value() ? std::string_view(after->resource_kind)
                                     : std::string_view());
    st.BindText(3, after.has_value() ? std::string_view(after->resource_uri)
                                     : std::string_view());
    CHS_RETURN_IF_ERROR(run(st));
  } else {
    // One index range per kind, in kind order: a company's thousands of
    // filings are never scanned to list its officers.
    std::vector<std::string_view> sorted(kinds.begin(), kinds.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (std::string_view kind : sorted) {
      if (static_cast<int64_t>(page.resources.size()) >= want) break;
      if (after.has_value() && kind < after->resource_kind) continue;
      Statement& st = r->list_resources_of_kind;
      st.BindText(1, company_number);
      st.BindText(2, kind);
      st.BindText(3, after.has_value() && kind == after->resource_kind
                         ? std::string_view(after->resource_uri)
                         : std::string_view());
      CHS_RETURN_IF_ERROR(run(st));
    }
  }
  if (static_cast<int64_t>(page.resources.size()) >= want) {
    page.resources.pop_back();
    const ResourceRecord& last = page.resources.back();
    page.next = ResourceCursor{last.resource_kind, last.resource_uri};
  }
  return page;
}

absl::StatusOr<std::vector<StreamState>> Store::LoadStreamStates() {
  ReaderLease r = AcquireReader();
  // One read transaction: stream_state and gaps from the same snapshot.
  CHS_RETURN_IF_ERROR(r->begin.Run());
  r->begin.Reset();
  absl::Cleanup end = [&r] {
    r->stream_states.Reset();
    r->gaps.Reset();
    r->commit.Run().IgnoreError();
    r->commit.Reset();
  };
  std::map<std::string, StreamState, std::less<>> states;
  while (true) {
    Statement& st = r->stream_states;
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    StreamState& s = states[std::string(st.ColumnText(0))];
    s.last_timepoint = st.ColumnInt64(1);
    s.last_published_at = FromMicros(st.ColumnInt64(2));
    s.updated_at = FromMicros(st.ColumnInt64(3));
  }
  while (true) {
    Statement& st = r->gaps;
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    Gap g;
    g.stream.assign(st.ColumnText(0));
    g.last_timepoint = st.ColumnInt64(1);
    g.recorded_at = FromMicros(st.ColumnInt64(2));
    states[g.stream].gaps.push_back(std::move(g));
  }
  std::vector<StreamState> out;
  out.reserve(states.size());
  for (auto& [name, s] : states) {
    s.stream = name;
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<StoreStats> Store::Stats() {
  StoreStats stats;
  {
    ReaderLease r = AcquireReader();
    Statement& st = r->bounds;
    absl::Cleanup reset = [&st] { st.Reset(); };
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && !st.ColumnIsNull(0)) {
      stats.oldest_position = static_cast<uint64_t>(st.ColumnInt64(0));
      stats.head_position = static_cast<uint64_t>(st.ColumnInt64(1));
      // Positions are dense: nothing is ever deleted from the middle.
      stats.events_stored = stats.head_position - stats.oldest_position + 1;
    } else {
      stats.head_position = HeadPosition();
    }
  }
  stats.companies_stored = companies_stored_.load(std::memory_order_relaxed);
  stats.dead_letters = dead_letters_stored_.load(std::memory_order_relaxed);
  prune_stats_.Fill(&stats);
  stats.db_size_bytes = FileSize(path_) + FileSize(path_ + "-wal");
  return stats;
}

absl::StatusOr<std::vector<DeadLetter>> Store::ReadDeadLetters(size_t limit) {
  std::vector<DeadLetter> out;
  if (limit == 0) return out;
  ReaderLease r = AcquireReader();
  Statement& st = r->dead_letters;
  absl::Cleanup reset = [&st] { st.Reset(); };
  st.BindInt64(1,
               static_cast<int64_t>(std::min<uint64_t>(limit, kMaxPosition)));
  while (true) {
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    DeadLetter& d = out.emplace_back();
    d.stream.assign(st.ColumnText(0));
    d.received_at = FromMicros(st.ColumnInt64(1));
    d.reason.assign(st.ColumnText(2));
    d.raw.assign(st.ColumnBlob(3));
    if (!st.ColumnIsNull(4)) d.timepoint = st.ColumnInt64(4);
  }
  return out;
}

}  // namespace chstream::storage
