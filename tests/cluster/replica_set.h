// File: tests/cluster/replica_set.h
//
// chstreamd replicas as operators run them, for the failover tests and the
// failover benchmark: the real binary as child processes (gRPC and metrics
// on port 0) on one PostgreSQL database, all following one upstream (a
// simulator the caller runs, so that the stored event set can be compared
// with what it published).
//
//   ReplicaSet set({.postgres_url = uri, .upstream_url = sim->url(),
//                   .key = "k", .dir = tmp, .log_dir = tmp}, pg);
//   absl::StatusOr<Replica*> a = set.Start("a");
//   Replica* leader = set.WaitForOneLeader({*a}, absl::Seconds(30));
//   EXPECT_TRUE(set.CheckExactEventSet(*sim).ok());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.pb.h"
#include "ingest/simulator/simulator.h"
#include "tests/testing/child_process.h"
#include "tests/testing/postgres_server.h"

namespace chstream::testing {

// GetStatus of the chstreamd at `address` (3 s deadline).
absl::StatusOr<v1::GetStatusResponse> GetReplicaStatus(
    const std::string& address);
// grpc.health.v1 "ingest" of the chstreamd at `address`: "SERVING",
// "NOT_SERVING"..., or "error".
std::string IngestHealth(const std::string& address);

// One chstreamd replica.
struct Replica {
  std::string id;
  std::unique_ptr<ChildProcess> process;
  std::string address;  // gRPC host:port

  std::string Output() const { return process->Output(); }
  // "leader", "follower", or "" if it does not answer.
  std::string Role() const;
};

class ReplicaSet {
 public:
  struct Options {
    std::string binary = "server/chstreamd";
    std::string postgres_url;
    std::string upstream_url;
    std::string key;  // CH_STREAMING_API_KEY
    std::string dir;  // working directory
    std::string log_dir;
  };

  // `pg` serves options.postgres_url; it must outlive the set.
  ReplicaSet(Options options, PostgresServer* pg);
  ~ReplicaSet();  // SIGKILLs what still runs

  // Starts replica `id` (its log: <log_dir>/<database>-<id>.log) and waits
  // until it serves.
  absl::StatusOr<Replica*> Start(const std::string& id);
  // Waits until every replica in `among` answers, all name the same leader
  // and exactly one of them is it; returns it, or null on timeout.
  Replica* WaitForOneLeader(const std::vector<Replica*>& among,
                            absl::Duration timeout);
  // cluster.head, 0 if unreadable.
  uint64_t SqlHead();
  bool WaitForHead(uint64_t at_least, absl::Duration timeout);
  // The event set is exact: positions 1..head, each once; no (stream,
  // timepoint) twice; the companies timepoints in position order are
  // exactly those `upstream` published between the first stored one (or
  // the oldest it still keeps) and the last stored one; no gap recorded.
  // The first difference otherwise.
  absl::Status CheckExactEventSet(const ingest::sim::Simulator& upstream);
  // SIGTERM to every running replica; the first that does not exit 0
  // within `each` fails.
  absl::Status StopAll(absl::Duration each);

 private:
  const Options options_;
  PostgresServer* const pg_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

}  // namespace chstream::testing
