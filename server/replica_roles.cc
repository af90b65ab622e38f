#include "server/replica_roles.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::server {
namespace {

// How often the worker looks at the writer's health for a fenced commit.
constexpr absl::Duration kCheckInterval = absl::Milliseconds(200);

bool IsFenced(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition &&
         absl::StartsWith(s.message(), "fenced");
}

}  // namespace

ReplicaRoles::ReplicaRoles(Options options, storage::PostgresStore* store,
                           SubscriptionHub* hub, ReplicaState* replica,
                           StartPipeline start_pipeline, Clock* clock)
    : options_(std::move(options)),
      store_(store),
      hub_(hub),
      replica_(replica),
      start_pipeline_(std::move(start_pipeline)),
      clock_(clock),
      started_at_(clock->Now()),
      table_({.url = options_.url, .replica_id = options_.replica_id}) {
  // The metrics of a writer that has committed nothing (a follower's), with
  // the histograms' buckets.
  storage::EventWriter idle(store_, {}, nullptr, clock_);
  idle_writer_stats_ = idle.GetStats();
  election_ = std::make_unique<cluster::LeaderElection>(
      cluster::LeaderElection::Options{.url = options_.url,
                                       .replica_id = options_.replica_id,
                                       .poll_interval = options_.poll_interval,
                                       .lease = options_.lease},
      cluster::LeaderElection::Callbacks{
          .on_elected =
              [this](int64_t epoch) {
                absl::MutexLock lock(&mu_);
                changes_.push_back(
                    {.elected = true, .epoch = epoch, .why = absl::OkStatus()});
              },
          .on_lost =
              [this](const absl::Status& why) {
                absl::MutexLock lock(&mu_);
                changes_.push_back({.elected = false, .epoch = 0, .why = why});
              }});
}

ReplicaRoles::~ReplicaRoles() { Stop(); }

void ReplicaRoles::Start() {
  if (thread_.joinable()) return;
  // Subscribers read storage up to the store's head; the feed publishes
  // what comes after it.
  hub_through_ = store_->HeadPosition();
  StartFollowing();
  replica_->Following(election_->state().leader_id, election_->state().epoch);
  thread_ = std::thread([this] {
    SetCurrentThreadName("replica-roles");
    Run();
  });
  election_->Start();
}

void ReplicaRoles::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // Ingest first, while the epoch is (probably) still ours: what is queued
  // gets committed. Then release the lock.
  std::shared_ptr<IngestPipeline> pipeline;
  {
    absl::MutexLock lock(&mu_);
    pipeline = pipeline_;
  }
  if (pipeline != nullptr) pipeline->Stop();
  election_->Stop();
  if (listener_ != nullptr) listener_->Stop();
  if (feed_ != nullptr) feed_->Stop();
}

bool ReplicaRoles::leading() const {
  absl::MutexLock lock(&mu_);
  return pipeline_ != nullptr;
}

std::shared_ptr<IngestPipeline> ReplicaRoles::pipeline() const {
  absl::MutexLock lock(&mu_);
  return pipeline_;
}

std::vector<ingest::StreamStatusSnapshot> ReplicaRoles::StreamSnapshots()
    const {
  std::shared_ptr<IngestPipeline> p;
  {
    absl::MutexLock lock(&mu_);
    if (pipeline_ == nullptr) return recorded_;
    p = pipeline_;
  }
  return p->Snapshots();
}

storage::EventWriter::CommitHealth ReplicaRoles::CommitHealth() const {
  std::shared_ptr<IngestPipeline> p = pipeline();
  return p != nullptr ? p->CommitHealth()
                      : storage::EventWriter::CommitHealth{};
}

storage::EventWriter::Stats ReplicaRoles::WriterStats() const {
  std::shared_ptr<IngestPipeline> p = pipeline();
  return p != nullptr ? p->WriterStats() : idle_writer_stats_;
}

std::vector<HealthIssue> ReplicaRoles::ClusterIssues() const {
  const absl::Time now = clock_->Now();
  absl::Duration age;
  bool never;
  {
    absl::MutexLock lock(&mu_);
    if (pipeline_ != nullptr) return {};
    never = loaded_at_ == absl::InfinitePast() || !heartbeat_ago_.has_value();
    age = never ? now - started_at_ : *heartbeat_ago_ + (now - loaded_at_);
  }
  if (age <= options_.leader_stale_after) return {};
  HealthIssue issue;
  issue.rule = "leader";
  issue.severity = HealthState::kFailed;
  issue.message =
      never ? absl::StrCat(
                  "no ingest leader: none seen since this replica "
                  "started ",
                  absl::FormatDuration(absl::Trunc(age, absl::Seconds(1))),
                  " ago")
            : absl::StrCat(
                  "no ingest leader: the last leader heartbeat was ",
                  absl::FormatDuration(absl::Trunc(age, absl::Seconds(1))),
                  " ago (more than ",
                  absl::FormatDuration(options_.leader_stale_after), ")");
  issue.since = now - age;
  issue.value = absl::ToDoubleSeconds(age);
  issue.threshold = absl::ToDoubleSeconds(options_.leader_stale_after);
  return {issue};
}

void ReplicaRoles::Run() {
  absl::Time next_status = absl::InfinitePast();
  while (true) {
    std::optional<Change> change;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !changes_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), kCheckInterval);
      if (stopping_) return;
      if (!changes_.empty()) {
        change = std::move(changes_.front());
        changes_.pop_front();
      }
    }
    if (change.has_value()) {
      if (change->elected) {
        BecomeLeader(change->epoch);
      } else {
        BecomeFollower(change->why);
      }
      next_status = absl::InfinitePast();  // record or read at once
      continue;
    }
    // A commit refused by the fence: a newer leader exists. Stop ingesting
    // now rather than at the election's next heartbeat.
    if (std::shared_ptr<IngestPipeline> p = pipeline();
        p != nullptr && !asked_to_step_down_) {
      const storage::EventWriter::CommitHealth h = p->CommitHealth();
      if (h.consecutive_failures > 0 && IsFenced(h.last_error)) {
        asked_to_step_down_ = true;
        election_->RequestStepDown(h.last_error);
      }
    }
    if (absl::Now() >= next_status) {
      RecordOrLoadStatus();
      next_status = absl::Now() + options_.status_interval;
    }
  }
}

void ReplicaRoles::BecomeLeader(int64_t epoch) {
  if (pipeline() != nullptr) return;  // already leading
  // From now on every commit checks the epoch; the former leader's can no
  // longer succeed, so the head read below is final until ours commit.
  store_->SetFencingEpoch(epoch);
  epoch_ = epoch;
  asked_to_step_down_ = false;
  absl::Status status = StopFollowing();
  absl::StatusOr<std::vector<storage::StreamState>> states =
      status.ok() ? store_->LoadStreamStates()
                  : absl::StatusOr<std::vector<storage::StreamState>>(status);
  absl::StatusOr<std::unique_ptr<IngestPipeline>> pipeline =
      states.ok()
          ? start_pipeline_(*states)
          : absl::StatusOr<std::unique_ptr<IngestPipeline>>(states.status());
  if (!pipeline.ok()) {
    log::Error("elected, but cannot start ingesting: stepping down",
               {{"leader_epoch", epoch}, {"error", pipeline.status()}});
    asked_to_step_down_ = true;
    election_->RequestStepDown(pipeline.status());
    if (feed_ == nullptr) StartFollowing();
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    pipeline_ = std::shared_ptr<IngestPipeline>(std::move(*pipeline));
  }
  replica_->BecameLeader(epoch);
  log::Info(
      "ingesting as the leader",
      {{"leader_epoch", epoch}, {"head_position", store_->HeadPosition()}});
}

void ReplicaRoles::BecomeFollower(const absl::Status& why) {
  std::shared_ptr<IngestPipeline> pipeline = this->pipeline();
  if (pipeline != nullptr) {
    pipeline->Stop();
    absl::MutexLock lock(&mu_);
    pipeline_.reset();
  }
  if (feed_ == nullptr) {
    // Every commit of ours was published by the writer's callback (which
    // also moved the store's head); the feed goes on from there.
    hub_through_ = store_->HeadPosition();
    StartFollowing();
  }
  const cluster::LeaderElection::State state = election_->state();
  replica_->Following(
      state.leader_id == options_.replica_id ? std::string() : state.leader_id,
      state.epoch);
  log::Info("following",
            {{"reason", why}, {"head_position", store_->HeadPosition()}});
}

void ReplicaRoles::StartFollowing() {
  feed_ = std::make_unique<FollowerFeed>(
      [store = store_](uint64_t after, uint64_t up_to,
                       size_t n) -> absl::StatusOr<storage::Page> {
        // The head published to readers moves before the rows are
        // published to live subscribers: they are committed.
        if (store->HeadPosition() < up_to) {
          absl::StatusOr<uint64_t> head = store->RefreshHeadPosition();
          if (!head.ok()) return head.status();
        }
        return store->ReadPage(after, up_to, storage::Filter{}, n, n);
      },
      hub_, hub_through_, FollowerFeed::Options{});
  feed_->Start();
  FollowerFeed* feed = feed_.get();
  listener_ = std::make_unique<cluster::CommitListener>(
      cluster::CommitListener::Options{.url = options_.url,
                                       .replica_id = options_.replica_id},
      [feed](uint64_t head) { feed->NotifyHead(head); });
  listener_->Start();
}

absl::Status ReplicaRoles::StopFollowing() {
  if (listener_ != nullptr) listener_->Stop();
  listener_.reset();
  if (feed_ == nullptr) return absl::OkStatus();
  feed_->Stop();
  absl::Status status = absl::OkStatus();
  absl::StatusOr<uint64_t> head = store_->RefreshHeadPosition();
  if (!head.ok()) {
    status = head.status();
  } else {
    status = feed_->CatchUpTo(*head);
    if (status.ok() && feed_->stats().published_through < *head) {
      status = absl::UnavailableError(absl::StrCat(
          "committed positions up to ", *head, " are not readable yet"));
    }
  }
  hub_through_ = feed_->stats().published_through;
  if (!status.ok()) {
    // Go on following from where the feed got to.
    StartFollowing();
    return status;
  }
  feed_.reset();
  return absl::OkStatus();
}

void ReplicaRoles::RecordOrLoadStatus() {
  absl::Status status;
  if (std::shared_ptr<IngestPipeline> p = pipeline(); p != nullptr) {
    status = table_.Record(epoch_, p->Snapshots());
    if (IsFenced(status) && !asked_to_step_down_) {
      asked_to_step_down_ = true;
      election_->RequestStepDown(status);
    }
  } else {
    absl::StatusOr<StreamStatusTable::View> view = table_.Load();
    status = view.status();
    if (view.ok()) {
      {
        absl::MutexLock lock(&mu_);
        recorded_ = std::move(view->streams);
        loaded_at_ = clock_->Now();
        heartbeat_ago_ = view->heartbeat_ago;
      }
      replica_->Following(view->leader_id, view->leader_epoch);
    }
  }
  // Log changes only: a database that is down would log every round.
  if (!status.ok() && status.ToString() != last_status_error_.ToString()) {
    log::Warning("cannot share stream status through PostgreSQL",
                 {{"error", status}});
  }
  last_status_error_ = status;
}

}  // namespace chstream::server
