// File: storage/store.h
//
// The chstream event store: one SQLite database (WAL mode) holding every
// committed event, the current state of every company, per-stream progress,
// timepoint gaps and dead letters. See schema.h for the tables.
//
// Writes go through Commit(), called by exactly one thread (EventWriter's).
// One Commit is one transaction: events get dense positions head+1, head+2,
// ...; events at or below their stream's committed timepoint are dropped as
// duplicates; companies are upserted; stream_state advances; dead letters and
// gaps are inserted. Either all of it is committed or none of it.
//
// Reads are thread-safe and run concurrently with the writer on a small pool
// of read-only connections, each with its own cached prepared statements.
// A reader never sees a position above HeadPosition() as of the start of its
// call, and every position up to that head is visible to it.
//
// WAL checkpoints run on a background thread with its own connection (see
// Options), not inside Commit.
//
// Every committed event with a non-empty resource_uri also updates that
// resource's row in the resources table (its current state, GetResource and
// ListCompanyResources), in the same transaction; like a company's, a
// resource's data is stored once, in its event.
//
// Event::company is not stored in the events table: it only feeds the
// companies table. Events read back have `company` unset. An event's data
// is stored once (StoredDataJson in event.h, on both backends): as data_pb
// when it has one (then data_json, the upstream's JSON text, is not kept: it
// reads back empty, here and in GetCompany and GetResource; nothing serves
// it), else as data_json. Rows written before this rule keep both. A
// company's data_json/data_pb is stored once, in the event that carried it
// (the companies row refers to it by position); GetCompany returns it as
// part of the record. Times are stored with microsecond precision.
//
// Thread-safety: Commit() from one thread at a time; everything else from any
// thread. The Store owns one background thread (the checkpointer). The Store
// must outlive its readers and writer.
//
//   CHS_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(path));
//   Batch batch;
//   batch.events.push_back(std::move(event));
//   CHS_ASSIGN_OR_RETURN(CommitResult r, store->Commit(std::move(batch), now));
//   CHS_ASSIGN_OR_RETURN(Page page, store->ReadPage(0, store->HeadPosition(),
//                                                   Filter{}, 1000));
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/event.h"
#include "storage/prune_stats.h"

namespace chstream::storage {

// A timepoint gap: the upstream refused to resume (HTTP 416) after
// `last_timepoint`, so events after it may be missing.
struct Gap {
  std::string stream;
  int64_t last_timepoint = 0;
  absl::Time recorded_at;

  bool operator==(const Gap&) const = default;
};

struct StreamState {
  std::string stream;
  // The last committed timepoint; unset for a stream that only has gaps.
  std::optional<int64_t> last_timepoint;
  absl::Time last_published_at;  // of the event at last_timepoint
  absl::Time updated_at;         // `now` of the commit that advanced it
  std::vector<Gap> gaps;         // oldest first

  bool operator==(const StreamState&) const = default;
};

// Which events a reader wants: AND across fields, OR within one field; an
// empty field matches everything.
struct Filter {
  std::vector<std::string> streams;
  std::vector<std::string> resource_kinds;
  std::vector<std::string> company_numbers;
  std::vector<EventType> types;

  bool Matches(const Event& e) const;
  bool empty() const;
};

class Database;  // storage/sqlite.h

struct StoreStats {
  uint64_t head_position = 0;    // 0 when no event was ever committed
  uint64_t oldest_position = 0;  // 0 when no event is stored
  uint64_t events_stored = 0;
  uint64_t companies_stored = 0;
  uint64_t dead_letters = 0;
  uint64_t db_size_bytes = 0;  // database file + WAL file on disk
  // Retention (Store::PruneStep), since this process opened the store.
  uint64_t events_pruned = 0;
  uint64_t dead_letters_pruned = 0;  // dead letters and gaps
  uint64_t prune_transactions = 0;
  double prune_seconds_total = 0;    // time spent in prune transactions
  double longest_prune_seconds = 0;  // the longest prune transaction
};

// What Store::PruneStep deletes. Zero durations and sizes keep everything.
struct RetentionPolicy {
  // Events received (received_at) longer ago than this.
  absl::Duration events_for = absl::ZeroDuration();
  // The oldest events while the database's used pages (page_count -
  // freelist_count, times page_size) exceed this many bytes; on PostgreSQL,
  // while the stored size of the events (store_counters.event_bytes, see
  // storage/postgres/pg_schema.cc) does.
  int64_t max_bytes = 0;
  // Dead letters (received_at) and gaps (recorded_at) older than this.
  absl::Duration dead_letters_for = absl::ZeroDuration();
  // At most this many rows per transaction: bounds how long one prune
  // transaction holds the write lock (and so delays a Commit).
  int rows_per_transaction = 500;

  bool keeps_everything() const {
    return events_for <= absl::ZeroDuration() && max_bytes <= 0 &&
           dead_letters_for <= absl::ZeroDuration();
  }
};

struct PruneStepResult {
  uint64_t events = 0;        // events deleted
  uint64_t dead_letters = 0;  // dead letters deleted
  uint64_t gaps = 0;          // gaps deleted
  // Current-state rows (companies, ...) that received a copy of their data
  // because the event holding it was deleted.
  uint64_t rows_given_data = 0;
  // The oldest stored position afterwards (0: no event stored).
  uint64_t oldest_position = 0;
  // Whether the policy still has something to delete: call again (after
  // letting the writer in).
  bool more = false;
  absl::Duration transaction_time;  // time inside the write transaction(s)
};

struct Batch {
  std::vector<Event> events;  // in upstream order; positions are ignored
  std::vector<DeadLetter> dead_letters;
  std::vector<Gap> gaps;

  bool empty() const {
    return events.empty() && dead_letters.empty() && gaps.empty();
  }
};

struct CommitResult {
  // The committed events with their positions, in position order. Never
  // null.
  std::shared_ptr<const std::vector<Event>> events;
  // Per stream: events dropped because their timepoint was at or below the
  // stream's committed timepoint, or at or below an earlier event of the same
  // batch. Streams without duplicates are absent.
  absl::flat_hash_map<std::string, uint64_t> duplicates;
  uint64_t dead_letters = 0;
  uint64_t gaps = 0;
};

// Where a ListCompanyResources page ends: the next page starts after this
// (resource_kind, resource_uri).
struct ResourceCursor {
  std::string resource_kind;
  std::string resource_uri;

  bool operator==(const ResourceCursor&) const = default;
};

struct ResourcePage {
  // Ordered by (resource_kind, resource_uri).
  std::vector<ResourceRecord> resources;
  // Set when more resources may follow: pass it as `after` for the next
  // page.
  std::optional<ResourceCursor> next;
};

struct Page {
  std::vector<Event> events;
  // The last position examined: the next page starts after it. At least the
  // `after` asked for; above it only up to min(`up_to`, head at the call).
  uint64_t scanned_through = 0;
};

// The storage interface the server, the EventWriter, the ingester and the
// status/metrics code use, implemented by the SQLite Store below and by
// PostgresStore (storage/postgres/postgres_store.h). Both pass the same
// conformance suite (tests/storage/event_store_conformance_test.cc).
//
// Contract (every implementation):
// - Commit() is called by one thread at a time. One Commit is one
//   transaction: events get dense positions head+1, head+2, ...; events at or
//   below their stream's committed timepoint (or an earlier event of the same
//   batch) are dropped as duplicates; companies are upserted; stream_state
//   advances; dead letters and gaps are inserted. All of it or none of it.
// - Everything else is thread-safe and runs concurrently with Commit.
// - HeadPosition() is the last position published to readers: every position
//   up to it is visible to ReadPage, and ReadPage never returns one above it.
class EventStore {
 public:
  virtual ~EventStore() = default;

  // The store's identity (32 lowercase hex digits): positions are only
  // comparable under one store_id.
  virtual const std::string& store_id() const = 0;
  // Where the data lives, for logs and GetStatus: the SQLite file path, or
  // the PostgreSQL URL without user info (log::RedactUrl).
  virtual std::string location() const = 0;
  // Whether a returned commit survives a power loss.
  virtual bool synchronous_full() const = 0;

  // ----- Writer API: one thread at a time.

  // Commits `batch` as one transaction (see above). `now` is
  // stream_state.updated_at. On error nothing is committed, `*batch` is left
  // untouched (so that the caller can retry it without a copy) and the error
  // is returned; on success its events have been moved into the result (the
  // rest of `*batch` is unspecified).
  virtual absl::StatusOr<CommitResult> Commit(Batch* batch, absl::Time now) = 0;
  absl::StatusOr<CommitResult> Commit(Batch batch, absl::Time now) {
    return Commit(&batch, now);
  }

  // ----- Reads: thread-safe, concurrent with the writer.

  // The position of the last committed event published to readers (0 if
  // none).
  virtual uint64_t HeadPosition() const = 0;

  // Events with position in (after, up_to], ascending, that match `filter`,
  // at most `max_events` of them. Examines at most `max_scan` positions, so a
  // narrow filter over a huge range returns in bounded time;
  // `scanned_through` says where to continue. `up_to` is clamped to the head.
  // REQUIRES: max_events > 0 and max_scan > 0 (else InvalidArgument).
  virtual absl::StatusOr<Page> ReadPage(uint64_t after, uint64_t up_to,
                                        const Filter& filter, size_t max_events,
                                        size_t max_scan = 10000) = 0;

  // The position just before the first event (by position) with
  // published_at >= t; HeadPosition() if there is none.
  virtual absl::StatusOr<uint64_t> PositionBeforePublishedSince(
      absl::Time t) = 0;

  // The position just before the first event of `stream` with timepoint >=
  // `timepoint`; HeadPosition() if there is none.
  virtual absl::StatusOr<uint64_t> PositionBeforeStreamTimepoint(
      std::string_view stream, int64_t timepoint) = 0;

  // The current state of a company; nullopt if the companies stream never
  // mentioned it. Deleted companies are returned with deleted = true.
  virtual absl::StatusOr<std::optional<CompanyRecord>> GetCompany(
      std::string_view company_number) = 0;

  // The oldest stored position (0 if no event is stored): retention moves
  // it forward.
  virtual absl::StatusOr<uint64_t> OldestPosition() = 0;

  // The current state of one resource, and a company's current resources
  // (see Store for the details).
  virtual absl::StatusOr<std::optional<ResourceRecord>> GetResource(
      std::string_view resource_uri) = 0;
  virtual absl::StatusOr<ResourcePage> ListCompanyResources(
      std::string_view company_number, const std::vector<std::string>& kinds,
      const std::optional<ResourceCursor>& after, size_t limit,
      bool include_deleted) = 0;

  // Every stream that has committed an event or recorded a gap, by name.
  virtual absl::StatusOr<std::vector<StreamState>> LoadStreamStates() = 0;

  // Head and oldest position, counts and size.
  virtual absl::StatusOr<StoreStats> Stats() = 0;

  // The most recent `limit` dead letters, newest first.
  virtual absl::StatusOr<std::vector<DeadLetter>> ReadDeadLetters(
      size_t limit) = 0;

  // Retention: deletes at most `policy.rows_per_transaction` of the oldest
  // events `policy` no longer keeps, and as many expired dead letters and
  // gaps, each in a short transaction that takes turns with Commit; call
  // again while the result says `more` (storage::Retainer does). Events go
  // oldest first and never the newest, so positions stay dense; a
  // current-state row (company, resource) whose data lives in a deleted
  // event gets a copy of it first. One thread at a time, concurrent with
  // Commit and reads. See Store::PruneStep and PostgresStore::PruneStep.
  virtual absl::StatusOr<PruneStepResult> PruneStep(
      const RetentionPolicy& policy, absl::Time now) = 0;
};

// The error of a read whose cursor `after` lies before the oldest stored
// event (deleted by retention): OutOfRange with the valid range. `oldest` is
// 0 when no event is stored.
absl::Status PrunedCursorError(uint64_t after, uint64_t oldest, uint64_t head);

class Store : public EventStore {
 public:
  struct Options {
    // PRAGMA synchronous=FULL (the default: the WAL is fsync'ed at every
    // commit, so a commit returned, and so a position published, survives
    // a power loss) instead of NORMAL (fsync at checkpoints only: faster,
    // and a commit survives a process crash, but after a power loss the
    // last commits may be missing and their positions given to other
    // events). Because a crash cannot be told from a power loss, a store
    // opened after an unclean shutdown under NORMAL gets a new store_id.
    bool synchronous_full = true;
    // Give the store a new store_id at this open (e.g. after restoring a
    // copy of the file, whose positions the original may have reused).
    bool new_store_id = false;
    // Size of the read-only connection pool (>= 1).
    int read_connections = 4;
    // Run PRAGMA quick_check on an existing database before using it; reads
    // the whole file (seconds for a multi-GB database).
    bool check_integrity = true;
    // How long a statement waits for a lock held by another process.
    absl::Duration busy_timeout = absl::Seconds(5);
    // WAL management. Checkpoints (copying the WAL back into the database
    // file) run on a background thread instead of inside commits: one starts
    // once the WAL holds `checkpoint_bytes`. A commit that leaves more than
    // `wal_limit_bytes` in the WAL waits (at most 1 s) for the checkpointer
    // to finish, so that the WAL restarts from its beginning.
    int64_t checkpoint_bytes = 4 << 20;
    int64_t wal_limit_bytes = 64 << 20;
    // For tests of oversized values: the writer connection's
    // SQLITE_LIMIT_LENGTH (a larger string or blob fails with
    // SQLITE_TOOBIG). 0 = SQLite's default (1 GB).
    int max_value_bytes = 0;
  };

  // Opens or creates the database at `path` (a filesystem path; ":memory:"
  // is not supported because readers need their own connections).
  // A missing or 0-byte file becomes a new database. An existing file that is
  // not a chstream database (FailedPrecondition), is corrupt (DataLoss) or
  // has a newer schema than this binary (FailedPrecondition) is refused
  // without being modified. Older schemas are migrated forward.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                                     const Options& options);
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path) {
    return Open(path, Options());
  }

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store() override;

  const std::string& path() const { return path_; }

  // The store's identity: 32 random lowercase hex digits, created with the
  // database and replaced whenever positions could have been handed out
  // twice (see Options). Positions are only comparable under one store_id.
  const std::string& store_id() const override { return store_id_; }
  std::string location() const override { return path_; }
  bool synchronous_full() const override { return options_.synchronous_full; }

  // ----- Writer API: one thread only.

  // Commits `batch` as one transaction (see the file comment). `now` is
  // stream_state.updated_at. On error nothing is committed and the Store is
  // unchanged; the error is returned.
  using EventStore::Commit;  // Commit(Batch, Time)
  // The same, but leaves `*batch` untouched on error so that the caller can
  // retry it without a copy; on success its events have been moved into the
  // result (the rest of `*batch` is unspecified).
  absl::StatusOr<CommitResult> Commit(Batch* batch, absl::Time now) override;

  // For tests of a full disk: from the next Commit on, the database may
  // grow to at most `pages` pages (PRAGMA max_page_count on the writer
  // connection; a commit that needs more fails with SQLITE_FULL, like a full
  // filesystem). 0 = no limit again. Thread-safe.
  void SetMaxPageCountForTest(int64_t pages);

  // ----- Reads: thread-safe, concurrent with the writer.

  // The position of the last committed event (0 if none). Updated after each
  // commit, once the events are visible to readers.
  uint64_t HeadPosition() const override {
    return head_position_.load(std::memory_order_acquire);
  }

  // Events with position in (after, up_to], ascending, that match `filter`,
  // at most `max_events` of them. Examines at most `max_scan` positions, so a
  // narrow filter over a huge range returns in bounded time;
  // `scanned_through` says where to continue. `up_to` is clamped to the head.
  // OutOfRange, with the stored range in the message, when the event after
  // `after` was pruned (retention) before or during the read: the caller
  // would otherwise skip events silently. To read from the oldest stored
  // event, pass OldestPosition() - 1.
  // REQUIRES: max_events > 0 and max_scan > 0 (else InvalidArgument).
  absl::StatusOr<Page> ReadPage(uint64_t after, uint64_t up_to,
                                const Filter& filter, size_t max_events,
                                size_t max_scan = 10000) override;

  // The oldest stored position (0 if no event is stored): retention moves it
  // forward. Cheap (a b-tree lookup).
  absl::StatusOr<uint64_t> OldestPosition() override;

  // The position just before the first event (by position) with
  // published_at >= t; HeadPosition() if there is none.
  absl::StatusOr<uint64_t> PositionBeforePublishedSince(absl::Time t) override;

  // The position just before the first event of `stream` with timepoint >=
  // `timepoint`; HeadPosition() if there is none.
  absl::StatusOr<uint64_t> PositionBeforeStreamTimepoint(
      std::string_view stream, int64_t timepoint) override;

  // The current state of a company; nullopt if the companies stream never
  // mentioned it. Deleted companies are returned with deleted = true.
  absl::StatusOr<std::optional<CompanyRecord>> GetCompany(
      std::string_view company_number) override;

  // The current state of the resource with exactly this resource_uri (as
  // the upstream sent it); nullopt if no stored event had it. Deleted
  // resources are returned with deleted = true and their last data.
  absl::StatusOr<std::optional<ResourceRecord>> GetResource(
      std::string_view resource_uri) override;

  // The current resources of a company (by ResourceRecord::company_number),
  // ordered by (resource_kind, resource_uri), starting after `after` (none:
  // from the first), at most `limit` of them; only the kinds in `kinds`
  // (empty: every kind); deleted ones only with `include_deleted`. All
  // from one read snapshot. REQUIRES: limit > 0 (else InvalidArgument).
  absl::StatusOr<ResourcePage> ListCompanyResources(
      std::string_view company_number, const std::vector<std::string>& kinds,
      const std::optional<ResourceCursor>& after, size_t limit,
      bool include_deleted) override;

  // Every stream that has committed an event or recorded a gap, by name.
  absl::StatusOr<std::vector<StreamState>> LoadStreamStates() override;

  absl::StatusOr<StoreStats> Stats() override;

  // The most recent `limit` dead letters, newest first.
  absl::StatusOr<std::vector<DeadLetter>> ReadDeadLetters(
      size_t limit) override;

  // ----- Retention: one thread at a time (storage::Retainer's), concurrent
  // with Commit and reads.

  // Deletes at most `policy.rows_per_transaction` of the oldest events that
  // `policy` no longer keeps, in one transaction on the pruner's own
  // connection; then, in a second transaction, as many expired dead letters
  // and gaps. `now` is compared with received_at/recorded_at.
  //
  // Never deletes the newest event (the head position is derived from it at
  // open, so positions are never handed out twice), and never loses current
  // state: a current-state row (a company) whose data lives in a deleted
  // event gets a copy of that data first (see kCurrentStateTables in
  // store.cc). Events are deleted oldest first, so positions stay dense:
  // the stored events are exactly [oldest_position, head].
  //
  // Each transaction runs under the same in-process lock as Commit: a commit
  // waits at most for one prune transaction (measured: see RESULTS), never
  // for SQLite's busy-handler back-off.
  absl::StatusOr<PruneStepResult> PruneStep(const RetentionPolicy& policy,
                                            absl::Time now) override;

 private:
  struct Writer;
  struct Reader;
  struct Checkpointer;
  struct Pruner;
  class ReaderLease;

  Store(std::string path, Options options);

  absl::Status Init(bool is_new);
  // Reads (or replaces) the store_id and durably records whether this
  // process runs with synchronous=normal. On the writer connection.
  absl::Status InitIdentity(Database& db);
  // At a clean close under synchronous=normal: makes every commit durable
  // and clears the marker, so that the next open keeps the store_id.
  void MarkCleanShutdown();
  ReaderLease AcquireReader();
  void ReleaseReader(Reader* reader);
  // ReadPage's OutOfRange for a cursor whose next event was pruned.
  absl::Status PrunedCursorError(const ReaderLease& r, uint64_t after,
                                 uint64_t head);
  // PruneStep's parts, each one transaction on the pruner's connection.
  absl::Status OpenPruner();
  absl::Status PruneEvents(const RetentionPolicy& policy, absl::Time now,
                           PruneStepResult* result);
  absl::Status PruneDeadLetters(const RetentionPolicy& policy, absl::Time now,
                                PruneStepResult* result);
  // Runs `body` in a write transaction on the pruner's connection, under
  // write_mu_, and records its duration.
  template <typename Body>
  absl::Status PruneTransaction(Body body, PruneStepResult* result);

  const std::string path_;
  const Options options_;
  std::string store_id_;            // set by Init, constant afterwards
  std::unique_ptr<Writer> writer_;  // used by the Commit() thread only
  std::vector<std::unique_ptr<Reader>> readers_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Pruner> pruner_;  // opened by the first PruneStep

  // Held by Commit and by each prune transaction: the two writers of the
  // store take turns here instead of in SQLite's busy handler, whose
  // sleep-and-retry back-off would add milliseconds to a waiting commit.
  absl::Mutex write_mu_;

  absl::Mutex pool_mu_;
  std::vector<Reader*> free_readers_ ABSL_GUARDED_BY(pool_mu_);

  std::atomic<uint64_t> head_position_{0};
  std::atomic<uint64_t> companies_stored_{0};
  std::atomic<uint64_t> dead_letters_stored_{0};
  // SetMaxPageCountForTest's value for the next Commit (-1: none pending).
  std::atomic<int64_t> pending_max_page_count_{-1};
  // Retention counters (StoreStats).
  PruneStats prune_stats_;
};

// Gives the database open on `db` (read-write, schema version >= 3) a new
// random store_id, recording `reason` and the time. Used when positions may
// have been handed out twice: at Store::Open (see Options) and by
// `chstreamctl restore`. Runs in the caller's transaction if one is open.
absl::Status ReplaceStoreId(Database& db, std::string_view reason);

}  // namespace chstream::storage
