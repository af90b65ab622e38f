// File: storage/postgres/postgres_store.h
//
// The chstream event store on PostgreSQL (libpq): the same EventStore
// contract as the SQLite Store (storage/store.h), so that several chstreamd
// processes can share one database. Schema: storage/postgres/pg_schema.h.
//
// Writes: one writer connection. A Commit is one transaction:
//   1. lock the cluster row: `SELECT head ... FOR UPDATE`, or, when fenced
//      (SetFencingEpoch), `UPDATE cluster SET heartbeat_at = now() WHERE
//      leader_epoch = <epoch> RETURNING head`; no row = fenced, nothing is
//      committed (FailedPrecondition "fenced: leader epoch N is no longer
//      current");
//   2. read the committed timepoint of every stream (so that a process that
//      took over from another writer drops what that writer committed);
//   3. COPY the kept events with positions head+1..., COPY the companies
//      (merged per company) into a temp table and upsert them in one
//      statement, upsert stream_state, COPY dead letters, insert gaps,
//      update store_counters;
//   4. `UPDATE cluster SET head` and `pg_notify('chstream_commit', head)`
//      (delivered to listeners on commit, in commit order).
// A fixed number of round trips per commit, whatever the batch size. Because
// step 2 reads the stream state inside the transaction, a retried batch
// whose first COMMIT did reach the server is dropped as duplicates.
//
// Reads run on a small pool of connections with prepared statements. Filters
// are applied in SQL. HeadPosition() is the head published by this process
// (its own commits, or RefreshHeadPosition() on a follower): every position
// up to it is committed and so visible to the reads, and ReadPage never
// returns a position above it.
//
// Every committed event with a resource_uri also upserts that resource's
// row (GetResource, ListCompanyResources), merged per resource and staged
// by COPY like the companies, with the SQLite store's rules.
//
// Retention (PruneStep) runs on its own connection: see there.
//
// Lost connections (server restart, network) are re-established on the next
// call; the call that saw the loss fails with Unavailable.
//
// The URL's password never reaches a log, a status or an error message.
//
// Thread-safety: Commit() from one thread at a time; everything else from
// any thread.
//
//   CHS_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStore> store,
//                        PostgresStore::Open("postgresql://db/chstream"));
//   CHS_ASSIGN_OR_RETURN(CommitResult r, store->Commit(std::move(batch), now));
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "storage/store.h"

namespace chstream::storage {

namespace pg {
class PgConnection;
class PgResult;
struct PgParam;
}  // namespace pg

class PostgresStore : public EventStore {
 public:
  struct Options {
    // Size of the read connection pool (>= 1).
    int read_connections = 4;
    // Shown in pg_stat_activity.
    std::string application_name = "chstreamd";
  };

  // Connects to `url` (a libpq URI: postgresql://user@host:port/dbname?...;
  // PGPASSWORD, ~/.pgpass, PGSSLMODE and the other libpq variables apply),
  // creates or migrates the schema, or refuses a foreign or newer one
  // (FailedPrecondition, nothing changed). Connection failures:
  // Unavailable; authentication: PermissionDenied; missing database:
  // NotFound.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const std::string& url, const Options& options);
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const std::string& url) {
    return Open(url, Options());
  }

  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;
  ~PostgresStore() override;

  int schema_version() const { return schema_version_; }

  // Fencing for leader election: from the next Commit on, every commit
  // transaction first checks that cluster.leader_epoch equals `epoch`, and
  // commits nothing otherwise. 0 = unfenced (a standalone process).
  // Thread-safe.
  void SetFencingEpoch(int64_t epoch) {
    fencing_epoch_.store(epoch, std::memory_order_relaxed);
  }
  int64_t fencing_epoch() const {
    return fencing_epoch_.load(std::memory_order_relaxed);
  }

  // Reads cluster.head (what any writer has committed) and advances
  // HeadPosition() to it: for followers, whose head otherwise only moves
  // with their own commits. Returns the new HeadPosition(). Thread-safe.
  absl::StatusOr<uint64_t> RefreshHeadPosition();

  // ----- EventStore (see storage/store.h).
  const std::string& store_id() const override { return store_id_; }
  // The URL without user info, path or query.
  std::string location() const override { return location_; }
  // PostgreSQL's synchronous_commit is not off.
  bool synchronous_full() const override { return synchronous_full_; }

  using EventStore::Commit;
  absl::StatusOr<CommitResult> Commit(Batch* batch, absl::Time now) override;

  uint64_t HeadPosition() const override {
    return head_position_.load(std::memory_order_acquire);
  }
  absl::StatusOr<Page> ReadPage(uint64_t after, uint64_t up_to,
                                const Filter& filter, size_t max_events,
                                size_t max_scan = 10000) override;
  absl::StatusOr<uint64_t> PositionBeforePublishedSince(absl::Time t) override;
  absl::StatusOr<uint64_t> PositionBeforeStreamTimepoint(
      std::string_view stream, int64_t timepoint) override;
  absl::StatusOr<std::optional<CompanyRecord>> GetCompany(
      std::string_view company_number) override;
  absl::StatusOr<std::vector<StreamState>> LoadStreamStates() override;
  // db_size_bytes: pg_database_size of the database.
  absl::StatusOr<StoreStats> Stats() override;
  absl::StatusOr<std::vector<DeadLetter>> ReadDeadLetters(
      size_t limit) override;
  absl::StatusOr<uint64_t> OldestPosition() override;
  absl::StatusOr<std::optional<ResourceRecord>> GetResource(
      std::string_view resource_uri) override;
  absl::StatusOr<ResourcePage> ListCompanyResources(
      std::string_view company_number, const std::vector<std::string>& kinds,
      const std::optional<ResourceCursor>& after, size_t limit,
      bool include_deleted) override;

  // Retention, on its own connection. Each events transaction first locks
  // the cluster row (as every Commit does), so commits, from this process
  // or another, wait for at most one prune transaction and never deadlock
  // with it on company or resource rows. max_bytes is compared with
  // store_counters.event_bytes (the stored size of the events, kept by
  // Commit and PruneStep). Deleted rows' space is reused by later inserts
  // once autovacuum has processed the table; the tables do not shrink.
  absl::StatusOr<PruneStepResult> PruneStep(const RetentionPolicy& policy,
                                            absl::Time now) override;

 private:
  class ReaderLease;

  PostgresStore(std::string url, Options options);
  absl::Status Init();
  absl::Status PrepareWriter(pg::PgConnection& c);
  absl::Status PrepareReader(pg::PgConnection& c);
  // Runs a prepared read on a pooled connection (reconnecting once if its
  // session was lost).
  absl::StatusOr<pg::PgResult> ReadQuery(
      const std::string& name, const std::vector<pg::PgParam>& params);
  ReaderLease AcquireReader();
  void ReleaseReader(pg::PgConnection* c);
  void AdvanceHead(uint64_t head);
  // PruneStep's parts, each one transaction on the pruner's connection.
  absl::Status PruneEvents(pg::PgConnection& p, const RetentionPolicy& policy,
                           absl::Time now, PruneStepResult* result);
  absl::Status PruneDeadLetters(pg::PgConnection& p,
                                const RetentionPolicy& policy, absl::Time now,
                                PruneStepResult* result);
  template <typename Body>
  absl::Status PruneTransaction(pg::PgConnection& p, Body body,
                                PruneStepResult* result);

  const std::string url_;  // with the password, if any: never printed
  const std::string location_;
  const Options options_;
  std::string store_id_;
  int schema_version_ = 0;
  bool synchronous_full_ = true;

  absl::Mutex writer_mu_;  // Commit is single-threaded; this guards misuse
  std::unique_ptr<pg::PgConnection> writer_ ABSL_GUARDED_BY(writer_mu_);

  std::vector<std::unique_ptr<pg::PgConnection>> readers_;
  absl::Mutex pool_mu_;
  std::vector<pg::PgConnection*> free_readers_ ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex prune_mu_;  // PruneStep is single-threaded; this guards misuse
  // Opened by the first PruneStep.
  std::unique_ptr<pg::PgConnection> pruner_ ABSL_GUARDED_BY(prune_mu_);

  std::atomic<uint64_t> head_position_{0};
  std::atomic<int64_t> fencing_epoch_{0};
  // Retention counters (StoreStats), since this process opened the store.
  PruneStats prune_stats_;
};

}  // namespace chstream::storage
