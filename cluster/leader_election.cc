#include "cluster/leader_election.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::cluster {

using storage::pg::KeepaliveParams;
using storage::pg::PgConnection;
using storage::pg::PgParam;
using storage::pg::PgParams;
using storage::pg::PgResult;

LeaderElection::LeaderElection(Options options, Callbacks callbacks)
    : options_(std::move(options)), callbacks_(std::move(callbacks)) {}

LeaderElection::~LeaderElection() { Stop(); }

LeaderElection::State LeaderElection::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

int LeaderElection::backend_pid() const {
  return conn_ != nullptr && conn_->healthy() ? conn_->backend_pid() : 0;
}

void LeaderElection::ReleaseLock() {
  // Closing the session releases the advisory lock, if the server still
  // holds it for us, but the server notices the close asynchronously:
  // unlock first (best effort) so that a follower can take over at once.
  if (conn_ != nullptr && conn_->healthy()) {
    conn_->Exec("SELECT pg_advisory_unlock_all()").IgnoreError();
  }
  conn_.reset();
}

void LeaderElection::StepDown(const absl::Status& why) {
  ReleaseLock();
  bool was_leader;
  {
    absl::MutexLock lock(&mu_);
    was_leader = state_.leader;
    state_.leader = false;
  }
  if (was_leader) {
    log::Warning("no longer the ingest leader", {{"reason", why}});
    if (callbacks_.on_lost) callbacks_.on_lost(why);
  }
}

absl::Status LeaderElection::Poll() {
  absl::Status status = PollOnce();
  absl::MutexLock lock(&mu_);
  state_.last_error = status;
  return status;
}

void LeaderElection::RequestStepDown(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (state_.leader) step_down_ = why.ok() ? absl::AbortedError("asked") : why;
}

absl::Status LeaderElection::PollOnce() {
  absl::Status requested;
  {
    absl::MutexLock lock(&mu_);
    requested = std::exchange(step_down_, absl::OkStatus());
  }
  if (!requested.ok()) {
    StepDown(requested);
    return requested;
  }
  if (conn_ != nullptr && !conn_->healthy()) {
    StepDown(absl::UnavailableError("leader election connection lost"));
  }
  if (conn_ == nullptr) {
    PgParams params = KeepaliveParams();
    if (options_.lease > absl::ZeroDuration()) {
      for (auto& [key, value] : params) {
        if (key == "options") {
          absl::StrAppend(&value, " -c idle_session_timeout=",
                          absl::ToInt64Milliseconds(options_.lease));
        }
      }
    }
    absl::StatusOr<PgConnection> conn = PgConnection::Connect(
        options_.url, absl::StrCat("chstream-election:", options_.replica_id),
        params);
    if (!conn.ok()) return conn.status();
    conn_ = std::make_unique<PgConnection>(*std::move(conn));
  }

  int64_t epoch;
  bool leader;
  {
    absl::MutexLock lock(&mu_);
    epoch = state_.epoch;
    leader = state_.leader;
  }
  if (leader) {
    // Heartbeat, and check that nobody took over since.
    absl::StatusOr<PgResult> beat = conn_->Query(
        "UPDATE cluster SET heartbeat_at = now() "
        "WHERE id = 1 AND leader_epoch = $1",
        {PgParam::Int(epoch)});
    if (!beat.ok()) {
      StepDown(beat.status());
      return beat.status();
    }
    if (beat->AffectedRows() == 0) {
      const absl::Status fenced = absl::FailedPreconditionError(absl::StrCat(
          "fenced: leader epoch ", epoch, " is no longer the cluster's"));
      StepDown(fenced);
      return fenced;
    }
    return absl::OkStatus();
  }

  // Try the lock, and read who leads now in the same round trip.
  absl::StatusOr<PgResult> tried = conn_->Query(
      "SELECT pg_try_advisory_lock($1), leader_epoch, "
      "coalesce(leader_id, '') FROM cluster WHERE id = 1",
      {PgParam::Int(kAdvisoryLockKey)});
  if (!tried.ok()) {
    conn_.reset();
    return tried.status();
  }
  if (tried->rows() != 1) {
    conn_.reset();
    return absl::FailedPreconditionError(
        "the cluster table has no row: is the schema created?");
  }
  const bool acquired = tried->GetBool(0, 0);
  {
    absl::MutexLock lock(&mu_);
    state_.epoch = tried->GetInt64(0, 1);
    state_.leader_id = std::string(tried->Get(0, 2));
  }
  if (!acquired) return absl::OkStatus();

  static constexpr char kTakeOver[] =
      "UPDATE cluster SET leader_epoch = leader_epoch + 1, leader_id = $1, "
      "heartbeat_at = now() WHERE id = 1 RETURNING leader_epoch";
  absl::StatusOr<PgResult> took =
      conn_->Query(kTakeOver, {PgParam::Text(options_.replica_id)});
  // SQLSTATE 55P03 lock_not_available: lock_timeout (KeepaliveParams) ran
  // out.
  if (!took.ok() && conn_->healthy() &&
      absl::StrContains(took.status().message(), "SQLSTATE 55P03")) {
    // We hold the lock, so the former leader lost it, but one of its
    // sessions still holds the cluster row: a commit or status transaction
    // it was running when it was paused (SIGSTOP, a hang) in the middle of
    // a statement, e.g. a COPY waiting for its data, which no idle timeout
    // ends. Its commits are about to be fenced anyway: end those sessions
    // (same role, or pg_signal_backend) and take over.
    absl::StatusOr<PgResult> ended = conn_->Exec(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE "
        "relation = 'cluster'::regclass AND granted AND mode IN "
        "('RowExclusiveLock', 'RowShareLock') AND pid <> pg_backend_pid()");
    if (ended.ok()) {
      log::Warning(
          "ended the sessions of a former leader that held the "
          "cluster row",
          {{"sessions", ended->GetInt64(0, 0)}});
      took = conn_->Query(kTakeOver, {PgParam::Text(options_.replica_id)});
    }
  }
  if (!took.ok() || took->rows() != 1 || took->GetInt64(0, 0) <= 0) {
    // Drop the lock: leading without an epoch would be unfenced.
    ReleaseLock();
    return took.ok() ? absl::InternalError("takeover UPDATE returned no epoch")
                     : took.status();
  }
  epoch = took->GetInt64(0, 0);
  {
    absl::MutexLock lock(&mu_);
    state_.leader = true;
    state_.epoch = epoch;
    state_.leader_id = options_.replica_id;
    ++state_.takeovers;
  }
  log::Info("became the ingest leader",
            {{"replica_id", options_.replica_id}, {"leader_epoch", epoch}});
  if (callbacks_.on_elected) callbacks_.on_elected(epoch);
  return absl::OkStatus();
}

void LeaderElection::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    SetCurrentThreadName("leader-elect");
    absl::Status last = absl::OkStatus();
    while (true) {
      absl::Status status = Poll();
      // Log changes only: a database that is down for minutes would
      // otherwise log every poll.
      if (!status.ok() && status.ToString() != last.ToString()) {
        log::Warning("leader election", {{"error", status}});
      }
      last = status;
      absl::MutexLock lock(&mu_);
      const auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !step_down_.ok();
      };
      mu_.AwaitWithTimeout(absl::Condition(&wake), options_.poll_interval);
      if (stopping_) return;
    }
  });
}

void LeaderElection::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  ReleaseLock();
  absl::MutexLock lock(&mu_);
  state_.leader = false;
}

}  // namespace chstream::cluster
