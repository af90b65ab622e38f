// File: cluster/leader_election.h
//
// Chooses the one chstreamd replica that ingests, through PostgreSQL
// (docs: scale-out design, "Roles" and "Fencing"):
//
//   - A dedicated connection (TCP keepalives on both sides, see
//     storage::pg::KeepaliveParams: a vanished peer is noticed within
//     ~11 s) polls
//     `pg_try_advisory_lock(kAdvisoryLockKey)` every `poll_interval`. The
//     lock is session-level: the server releases it when the session ends
//     (the process died, the backend was terminated, keepalives gave up).
//     The session also has idle_session_timeout = Options::lease, so a
//     leader that is paused or hung (its kernel still answers keepalives)
//     loses the lock too.
//     If a former leader's session still holds the cluster row (it was
//     paused inside a commit), the takeover ends that session after the
//     lock timeout (pg_terminate_backend: the same role, or
//     pg_signal_backend).
//   - On acquiring it: `UPDATE cluster SET leader_epoch = leader_epoch + 1,
//     leader_id = $me ... RETURNING leader_epoch`, then on_elected(epoch).
//     The caller fences its commits with that epoch
//     (PostgresStore::SetFencingEpoch): every commit transaction checks that
//     cluster.leader_epoch still equals it, so a former leader that lost the
//     lock (a pause, a partition) can never commit again.
//   - While leading, each poll heartbeats with `UPDATE cluster SET
//     heartbeat_at = now() WHERE leader_epoch = $mine`: a lost connection
//     or 0 rows (someone took over) calls on_lost(why) and drops the
//     connection (and so the lock). The next poll reconnects and competes
//     again as a follower.
//
// The cluster table (created by the store's migrations):
//   CREATE TABLE cluster (id int PRIMARY KEY CHECK (id = 1),
//     store_id text NOT NULL, schema_version int NOT NULL,
//     leader_epoch bigint NOT NULL DEFAULT 0, leader_id text,
//     head bigint NOT NULL DEFAULT 0, heartbeat_at timestamptz)
//
// Thread-safety: Poll() from one thread at a time (the election thread
// after Start(), or a test); state() from any thread. Callbacks run on the
// polling thread and must not call Stop().
//
//   LeaderElection election({.url = url, .replica_id = "a:50051"},
//       {.on_elected = [&](int64_t epoch) { store->SetFencingEpoch(epoch); },
//        .on_lost = [&](absl::Status why) { StopIngesting(why); }});
//   election.Start();
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/postgres/pg_connection.h"

namespace chstream::cluster {

// pg_advisory_lock key of the chstream leader ("chstream" in ASCII).
inline constexpr int64_t kAdvisoryLockKey = 0x63687374'7265616dLL;

class LeaderElection {
 public:
  struct Options {
    std::string url;         // libpq URI of the shared database
    std::string replica_id;  // this replica's name (cluster.leader_id)
    absl::Duration poll_interval = absl::Seconds(2);
    // The server ends the election session (and so releases the lock) when
    // it stays idle this long (idle_session_timeout): a leader that stops
    // polling (SIGSTOP, a hang) while its host still answers TCP keepalives
    // loses the lock, so a follower can take over and fence it. Must be well
    // above poll_interval; zero: off.
    absl::Duration lease = absl::Seconds(10);
  };
  struct Callbacks {
    // This replica now leads with `epoch` (> every earlier epoch).
    std::function<void(int64_t epoch)> on_elected;
    // It no longer does (connection lost, or fenced by a newer leader).
    std::function<void(const absl::Status& why)> on_lost;
  };
  struct State {
    bool leader = false;
    // This replica's epoch while it leads; otherwise the newest epoch seen
    // in the cluster row (0 before the first successful poll).
    int64_t epoch = 0;
    std::string leader_id;    // as last seen ("" if none yet)
    uint64_t takeovers = 0;   // times this replica became leader
    absl::Status last_error;  // of the last poll
  };

  LeaderElection(Options options, Callbacks callbacks);
  ~LeaderElection();  // Stop()
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // One round: connect if needed, then heartbeat (leader) or try the lock
  // (follower). Returns the round's error (the next round retries).
  absl::Status Poll();

  // Asks the leader to step down at the next poll (at once when the
  // election thread runs): on_lost(why) is called and the lock released.
  // For a commit refused by the fence ("fenced: ..."), reported by the
  // writer's thread: a leader that was paused past a takeover must stop
  // ingesting even before its own heartbeat notices. No effect when not
  // leading. Any thread.
  void RequestStepDown(const absl::Status& why);

  // Polls every poll_interval on a thread of its own until Stop().
  void Start();
  // Ends the thread and closes the connection, which releases the lock.
  // on_lost is not called. Idempotent.
  void Stop();

  State state() const;
  // The backend pid of the election connection (0 when not connected), so
  // tests can pg_terminate_backend it. Call from the polling thread or
  // while no thread polls.
  int backend_pid() const;

 private:
  void ReleaseLock();
  void StepDown(const absl::Status& why);
  absl::Status PollOnce();

  const Options options_;
  const Callbacks callbacks_;
  std::unique_ptr<storage::pg::PgConnection> conn_;  // the polling thread's

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by RequestStepDown, consumed by the next poll.
  absl::Status step_down_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace chstream::cluster
