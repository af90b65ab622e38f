// File: server/stream_status_table.h
//
// The ingest leader's view of its upstream streams, shared through
// PostgreSQL so that every replica shows the same picture (GetStatus
// streams, the status page, grpc.health "ingest"): the leader Record()s
// its StreamStatusSnapshots every few seconds into the `stream_status` table
// (PostgreSQL schema v3, storage/postgres/pg_schema.cc), and followers
// Load() them together with the cluster row's leader and the age of its
// last heartbeat.
//
// Record is fenced like a commit: in one transaction it first takes the
// cluster row `FOR SHARE` where leader_epoch is the writer's, and writes
// nothing if it is not (FailedPrecondition "fenced: ..."), so a former
// leader cannot overwrite the new leader's picture. Times come from the
// database (`now()`) so that clock skew between hosts does not age them.
//
// One connection of its own (keepalives, 5 s statement timeout), opened on
// first use and again after a loss.
//
// Thread-safety: none; one thread (ReplicaRoles' worker) uses it.
//
//   StreamStatusTable table({.url = url, .replica_id = "a:50051"});
//   CHS_RETURN_IF_ERROR(table.Record(epoch, ingester.Snapshot()));
//   CHS_ASSIGN_OR_RETURN(StreamStatusTable::View v, table.Load());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ingest/stream_status.h"
#include "storage/postgres/pg_connection.h"

namespace chstream::server {

class StreamStatusTable {
 public:
  struct Options {
    std::string url;
    std::string replica_id;  // recorded with each row; application_name
  };
  // What a follower reads.
  struct View {
    // As the leader recorded them, by stream name.
    std::vector<ingest::StreamStatusSnapshot> streams;
    // How long ago the newest row was recorded (by the database's clock);
    // nullopt when there is none.
    std::optional<absl::Duration> recorded_ago;
    int64_t leader_epoch = 0;
    std::string leader_id;  // "" before the first leader
    // Since the leader's last heartbeat (cluster.heartbeat_at, written by
    // the election and by every fenced commit); nullopt when never.
    std::optional<absl::Duration> heartbeat_ago;
  };

  explicit StreamStatusTable(Options options);
  ~StreamStatusTable();
  StreamStatusTable(const StreamStatusTable&) = delete;
  StreamStatusTable& operator=(const StreamStatusTable&) = delete;

  // Replaces the table's rows with `streams` (rows of other streams are
  // deleted), if `epoch` is still the cluster's leader epoch.
  absl::Status Record(int64_t epoch,
                      const std::vector<ingest::StreamStatusSnapshot>& streams);
  absl::StatusOr<View> Load();

 private:
  absl::Status EnsureConnected();

  const Options options_;
  std::unique_ptr<storage::pg::PgConnection> conn_;
};

}  // namespace chstream::server
