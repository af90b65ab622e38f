// File: server/replica_state.h
//
// This chstreamd's place among the replicas sharing one database, for
// GetStatus (`replica`), the status page and /metrics:
//   - role: "standalone" (SQLite), "leader" or "follower" (PostgreSQL,
//     chosen by cluster::LeaderElection);
//   - the leader's id and epoch as last seen; takeovers by this replica.
// Metrics: chstream_replica_role{role} (1 for the current role),
// chstream_leader_epoch, chstream_leader_takeovers_total.
//
// Thread-safety: all methods are thread-safe.
//
//   ReplicaState replica(DefaultReplicaId(grpc_port));
//   replica.BecameLeader(epoch);  // from LeaderElection::on_elected
//   replica.Fill(response.mutable_replica());
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "chstream/v1/chstream.pb.h"
#include "server/metrics.h"

namespace chstream::server {

enum class ReplicaRole { kStandalone, kLeader, kFollower };

// "standalone", "leader", "follower".
std::string_view ReplicaRoleName(ReplicaRole role);

// The default --replica_id: "<hostname>:<grpc_port>".
std::string DefaultReplicaId(int grpc_port);

class ReplicaState {
 public:
  explicit ReplicaState(std::string id = "");

  void SetId(std::string id);
  std::string id() const;
  ReplicaRole role() const;

  // This replica now leads with `epoch` (counts a takeover).
  void BecameLeader(int64_t epoch);
  // This replica follows `leader_id` (may be "" when unknown) at `epoch`.
  void Following(std::string leader_id, int64_t epoch);

  void Fill(v1::ReplicaStatus* out) const;
  void RegisterMetrics(MetricsRegistry& registry);

 private:
  mutable absl::Mutex mu_;
  std::string id_ ABSL_GUARDED_BY(mu_);
  ReplicaRole role_ ABSL_GUARDED_BY(mu_) = ReplicaRole::kStandalone;
  std::string leader_id_ ABSL_GUARDED_BY(mu_);
  int64_t leader_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t takeovers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace chstream::server
