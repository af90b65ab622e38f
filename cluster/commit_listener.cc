#include "cluster/commit_listener.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::cluster {

using storage::pg::KeepaliveParams;
using storage::pg::PgConnection;
using storage::pg::PgResult;

CommitListener::CommitListener(Options options,
                               std::function<void(uint64_t head)> on_head)
    : options_(std::move(options)),
      on_head_(std::move(on_head)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

CommitListener::~CommitListener() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

CommitListener::Stats CommitListener::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

int CommitListener::backend_pid() const {
  absl::MutexLock lock(&mu_);
  return backend_pid_;
}

void CommitListener::SetError(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  stats_.last_error = status;
}

void CommitListener::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    SetCurrentThreadName("commit-listen");
    Run();
  });
}

void CommitListener::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

absl::Status CommitListener::Connect() {
  absl::StatusOr<PgConnection> conn = PgConnection::Connect(
      options_.url, absl::StrCat("chstream-listener:", options_.replica_id),
      KeepaliveParams());
  if (!conn.ok()) return conn.status();
  absl::StatusOr<PgResult> listen =
      conn->Exec(absl::StrCat("LISTEN ", kCommitChannel));
  if (!listen.ok()) return listen.status();
  conn_ = std::make_unique<PgConnection>(*std::move(conn));
  absl::MutexLock lock(&mu_);
  ++stats_.connects;
  stats_.connected = true;
  backend_pid_ = conn_->backend_pid();
  return absl::OkStatus();
}

absl::Status CommitListener::ReadHead() {
  absl::StatusOr<PgResult> head =
      conn_->Exec("SELECT head FROM cluster WHERE id = 1");
  if (!head.ok()) return head.status();
  if (head->rows() != 1) {
    return absl::FailedPreconditionError(
        "the cluster table has no row: is the schema created?");
  }
  const uint64_t value = static_cast<uint64_t>(head->GetInt64(0, 0));
  {
    absl::MutexLock lock(&mu_);
    ++stats_.polls;
  }
  on_head_(value);
  return absl::OkStatus();
}

bool CommitListener::WaitReadable(int socket, absl::Duration timeout) {
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {socket, POLLIN, 0}};
  const int n = socket >= 0 ? 2 : 1;
  const int64_t ms =
      std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout) + 1);
  ::poll(fds, n, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
  absl::MutexLock lock(&mu_);
  return !stopping_;
}

void CommitListener::Run() {
  absl::Duration backoff = options_.min_backoff;
  absl::Time next_poll = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    if (conn_ == nullptr) {
      absl::Status status = Connect();
      if (status.ok()) status = ReadHead();
      if (!status.ok()) {
        conn_.reset();
        {
          absl::MutexLock lock(&mu_);
          stats_.connected = false;
          backend_pid_ = 0;
        }
        SetError(status);
        if (!WaitReadable(-1, backoff)) break;
        backoff = std::min(backoff * 2, options_.max_backoff);
        continue;
      }
      backoff = options_.min_backoff;
      next_poll = Clock::Real()->Now() + options_.poll_interval;
    }

    const absl::Duration until_poll = next_poll - Clock::Real()->Now();
    if (!WaitReadable(PQsocket(conn_->get()), until_poll)) break;
    absl::Status status = absl::OkStatus();
    if (PQconsumeInput(conn_->get()) == 0 || !conn_->healthy()) {
      // Unavailable, "connection lost", the password scrubbed.
      status = conn_->Error("LISTEN", nullptr);
    }
    uint64_t notified = 0;
    uint64_t count = 0;
    while (PGnotify* n = PQnotifies(conn_->get())) {
      uint64_t head = 0;
      if (absl::SimpleAtoi(n->extra, &head))
        notified = std::max(notified, head);
      ++count;
      PQfreemem(n);
    }
    if (count > 0) {
      {
        absl::MutexLock lock(&mu_);
        stats_.notifications += count;
      }
      // Several notifications read at once: the newest head covers them.
      if (notified > 0) on_head_(notified);
    }
    if (status.ok() && Clock::Real()->Now() >= next_poll) {
      status = ReadHead();
      next_poll = Clock::Real()->Now() + options_.poll_interval;
    }
    if (!status.ok()) {
      log::Warning("commit listener reconnecting", {{"error", status}});
      SetError(status);
      conn_.reset();
      absl::MutexLock lock(&mu_);
      stats_.connected = false;
      backend_pid_ = 0;
    }
  }
  conn_.reset();
}

}  // namespace chstream::cluster
