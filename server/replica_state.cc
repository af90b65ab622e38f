#include "server/replica_state.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace chstream::server {

std::string_view ReplicaRoleName(ReplicaRole role) {
  switch (role) {
    case ReplicaRole::kStandalone:
      return "standalone";
    case ReplicaRole::kLeader:
      return "leader";
    case ReplicaRole::kFollower:
      return "follower";
  }
  return "standalone";
}

std::string DefaultReplicaId(int grpc_port) {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return absl::StrCat("localhost:", grpc_port);
  }
  return absl::StrCat(host, ":", grpc_port);
}

ReplicaState::ReplicaState(std::string id) : id_(std::move(id)) {}

void ReplicaState::SetId(std::string id) {
  absl::MutexLock lock(&mu_);
  id_ = std::move(id);
}

std::string ReplicaState::id() const {
  absl::MutexLock lock(&mu_);
  return id_;
}

ReplicaRole ReplicaState::role() const {
  absl::MutexLock lock(&mu_);
  return role_;
}

void ReplicaState::BecameLeader(int64_t epoch) {
  absl::MutexLock lock(&mu_);
  role_ = ReplicaRole::kLeader;
  leader_id_ = id_;
  leader_epoch_ = epoch;
  ++takeovers_;
}

void ReplicaState::Following(std::string leader_id, int64_t epoch) {
  absl::MutexLock lock(&mu_);
  role_ = ReplicaRole::kFollower;
  leader_id_ = std::move(leader_id);
  leader_epoch_ = epoch;
}

void ReplicaState::Fill(v1::ReplicaStatus* out) const {
  absl::MutexLock lock(&mu_);
  out->set_id(id_);
  out->set_role(std::string(ReplicaRoleName(role_)));
  out->set_leader_id(leader_id_);
  out->set_leader_epoch(leader_epoch_);
}

void ReplicaState::RegisterMetrics(MetricsRegistry& registry) {
  registry.AddCollector([this](Collection& out) {
    ReplicaRole role;
    int64_t epoch;
    uint64_t takeovers;
    {
      absl::MutexLock lock(&mu_);
      role = role_;
      epoch = leader_epoch_;
      takeovers = takeovers_;
    }
    for (ReplicaRole r : {ReplicaRole::kStandalone, ReplicaRole::kLeader,
                          ReplicaRole::kFollower}) {
      out.AddGauge("chstream_replica_role",
                   "This replica's role (1 for the current one): standalone "
                   "(SQLite), leader (ingests) or follower.",
                   {{"role", std::string(ReplicaRoleName(r))}},
                   r == role ? 1 : 0);
    }
    out.AddGauge("chstream_leader_epoch",
                 "The cluster's leader epoch as this replica last saw it "
                 "(0 when standalone).",
                 {}, static_cast<double>(epoch));
    out.AddCounter("chstream_leader_takeovers_total",
                   "Times this replica became the ingest leader.", {},
                   static_cast<double>(takeovers));
  });
}

}  // namespace chstream::server
