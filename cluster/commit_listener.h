// File: cluster/commit_listener.h
//
// Tells a follower that the leader committed: LISTEN chstream_commit on a
// connection of its own (the leader sends `NOTIFY chstream_commit, '<head>'`
// inside each commit transaction, so it arrives only on commit and in commit
// order) and calls `on_head(head)` with the notified head.
//
// Notifications sent while the listener is disconnected are lost, so it
// also reads `SELECT head FROM cluster` after every (re)connect and every
// `poll_interval` (the safety net): a follower is never more than a second
// behind, whatever happened to the connection. It reconnects with
// exponential backoff (min_backoff doubling up to max_backoff).
//
// on_head may be called with the same head more than once, and (safety net
// racing a notification) with a head lower than an earlier one: the
// receiver keeps the maximum (FollowerFeed does).
//
// Thread-safety: Start and Stop from the owning thread; on_head runs on the
// listener's thread and must not block for long or call Stop.
//
//   CommitListener listener({.url = url},
//                           [&](uint64_t head) { feed.NotifyHead(head); });
//   listener.Start();
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

inline constexpr char kCommitChannel[] = "chstream_commit";

class CommitListener {
 public:
  struct Options {
    std::string url;
    std::string replica_id;  // for application_name
    absl::Duration poll_interval = absl::Seconds(1);
    absl::Duration min_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(5);
  };
  struct Stats {
    uint64_t notifications = 0;  // NOTIFY messages received
    uint64_t polls = 0;          // safety-net reads of cluster.head
    uint64_t connects = 0;       // successful (re)connects
    bool connected = false;
    absl::Status last_error;
  };

  CommitListener(Options options, std::function<void(uint64_t head)> on_head);
  ~CommitListener();  // Stop()
  CommitListener(const CommitListener&) = delete;
  CommitListener& operator=(const CommitListener&) = delete;

  void Start();
  void Stop();  // Idempotent.

  Stats stats() const;
  // The backend pid of the LISTEN session (0 when disconnected): tests
  // terminate it.
  int backend_pid() const;

 private:
  void Run();
  // Connects, LISTENs and reads the head.
  absl::Status Connect();
  absl::Status ReadHead();
  // Waits until the socket is readable, `timeout` passes or Stop() is
  // called. Returns false on stop.
  bool WaitReadable(int socket, absl::Duration timeout);
  void SetError(const absl::Status& status);

  const Options options_;
  const std::function<void(uint64_t)> on_head_;
  std::unique_ptr<storage::pg::PgConnection> conn_;  // the listener thread's
  int wake_fd_ = -1;  // eventfd: Stop() wakes poll()

  mutable absl::Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  int backend_pid_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace chstream::cluster
