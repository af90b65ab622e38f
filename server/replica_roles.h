// File: server/replica_roles.h
//
// What a chstreamd replica on PostgreSQL does in each role, and the switch
// between them (docs: scale-out design, "Roles"). Every replica serves
// reads; exactly one, the leader chosen by cluster::LeaderElection, ingests:
//
//   follower: CommitListener (LISTEN chstream_commit) -> FollowerFeed reads
//     the new positions and publishes them to the SubscriptionHub, so live
//     Subscribe is gapless here too; GetStatus streams and health come from
//     the leader's recorded stream_status rows (StreamStatusTable::Load,
//     every status_interval); "ingest" health fails when the cluster's last
//     leader heartbeat is older than leader_stale_after.
//   leader: fenced commits (PostgresStore::SetFencingEpoch), an
//     IngestPipeline started from the stream states stored at the moment of
//     election (each stream resumes from the stored timepoint + 1), and its
//     stream snapshots recorded into stream_status every status_interval.
//
// Becoming the leader (on_elected(epoch)): fence the store with the epoch;
// stop the listener and the feed; read the head (nobody else can commit
// now) and publish every position up to it; load the stream states; start
// the pipeline. Only then do the pipeline's commits reach the hub, so a
// subscriber on this replica sees each position once, in order, across the
// switch. If any step fails the replica asks to step down and follows.
//
// Losing it (on_lost, or a commit refused by the fence: "fenced: ..." in
// the writer's health, which asks the election to step down at once):
// stop the pipeline (its queued batch is committed if the epoch is still
// ours, else given up after a few quick attempts: the next leader reads it
// again from the upstream), then follow from the last position this
// replica's writer published.
//
// The election's callbacks only queue the change; one worker thread of this
// class carries changes out in order and does the periodic status work, so
// the election thread never blocks on a switch and Stop() cannot deadlock
// with a callback.
//
// Thread-safety: Start/Stop from the owning thread; the accessors from any
// thread.
//
//   ReplicaRoles roles(options, store, hub, &replica, start_pipeline, clock);
//   roles.Start();
//   ... roles.StreamSnapshots(), roles.ClusterIssues() ...
//   roles.Stop();
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "cluster/commit_listener.h"
#include "cluster/leader_election.h"
#include "ingest/stream_status.h"
#include "server/follower_feed.h"
#include "server/health_monitor.h"
#include "server/ingest_pipeline.h"
#include "server/replica_state.h"
#include "server/stream_status_table.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/postgres/postgres_store.h"

namespace chstream::server {

class ReplicaRoles {
 public:
  struct Options {
    std::string url;
    std::string replica_id;
    absl::Duration poll_interval = absl::Seconds(2);  // the election's
    absl::Duration lease = absl::Seconds(10);         // LeaderElection's
    // How often the leader records its streams' state and followers read it.
    absl::Duration status_interval = absl::Seconds(2);
    // A follower's "ingest" health fails when the cluster's last leader
    // heartbeat is older than this.
    absl::Duration leader_stale_after = absl::Seconds(15);
  };
  // Starts ingesting from `states` (what the store holds now).
  using StartPipeline =
      std::function<absl::StatusOr<std::unique_ptr<IngestPipeline>>(
          const std::vector<storage::StreamState>& states)>;

  // Everything given must outlive this object.
  ReplicaRoles(Options options, storage::PostgresStore* store,
               SubscriptionHub* hub, ReplicaState* replica,
               StartPipeline start_pipeline, Clock* clock);
  ~ReplicaRoles();  // Stop()
  ReplicaRoles(const ReplicaRoles&) = delete;
  ReplicaRoles& operator=(const ReplicaRoles&) = delete;

  // Follows, and joins the election.
  void Start();
  // Stops ingesting (committing what is queued while the epoch is still
  // ours), then leaves the election (releasing the lock so that another
  // replica takes over at once), then stops following. Returns within
  // seconds. Idempotent.
  void Stop();

  bool leading() const;
  // The running pipeline while leading, else null.
  std::shared_ptr<IngestPipeline> pipeline() const;
  // Leader: its ingester's; follower: as the leader last recorded them.
  std::vector<ingest::StreamStatusSnapshot> StreamSnapshots() const;
  // Leader: its writer's; follower: healthy (it commits nothing).
  storage::EventWriter::CommitHealth CommitHealth() const;
  // Leader: its writer's; follower: zero counters.
  storage::EventWriter::Stats WriterStats() const;
  // Follower: the "leader" issue (failed) while the cluster's last leader
  // heartbeat is older than leader_stale_after; leader: none.
  std::vector<HealthIssue> ClusterIssues() const;

 private:
  struct Change {
    bool elected = false;
    int64_t epoch = 0;
    absl::Status why;
  };

  void Run();
  void BecomeLeader(int64_t epoch);
  void BecomeFollower(const absl::Status& why);
  // Starts the listener and feed, publishing after hub_through_.
  void StartFollowing();
  // Stops them after publishing every committed position.
  absl::Status StopFollowing();
  void RecordOrLoadStatus();

  const Options options_;
  storage::PostgresStore* const store_;
  SubscriptionHub* const hub_;
  ReplicaState* const replica_;
  const StartPipeline start_pipeline_;
  Clock* const clock_;
  const absl::Time started_at_;
  storage::EventWriter::Stats idle_writer_stats_;

  std::unique_ptr<cluster::LeaderElection> election_;

  // The worker thread's.
  std::unique_ptr<FollowerFeed> feed_;
  std::unique_ptr<cluster::CommitListener> listener_;
  StreamStatusTable table_;
  int64_t epoch_ = 0;         // while leading
  uint64_t hub_through_ = 0;  // last position published to the hub
  bool asked_to_step_down_ = false;
  absl::Status last_status_error_;

  mutable absl::Mutex mu_;
  std::deque<Change> changes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<IngestPipeline> pipeline_ ABSL_GUARDED_BY(mu_);
  std::vector<ingest::StreamStatusSnapshot> recorded_ ABSL_GUARDED_BY(mu_);
  // When recorded_ was read (clock_), and the leader heartbeat age then.
  absl::Time loaded_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::optional<absl::Duration> heartbeat_ago_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace chstream::server
