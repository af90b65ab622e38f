// File: storage/retainer.h
//
// Runs retention (EventStore::PruneStep, SQLite or PostgreSQL) on its own
// thread: every `interval` a pass deletes what the policy no longer keeps,
// one small transaction at a time, pausing `pause` between transactions so
// that the writer's commits (which take turns with them: on the Store's
// write lock, or on PostgreSQL's cluster row) are never held up for more
// than one of them.
//
// Thread-safety: Start/Stop from one thread; stats() from any thread. The
// Store and the Clock must outlive the Retainer.
//
//   storage::Retainer retainer(store, {.policy = {.events_for = 90 days}},
//                              Clock::Real());
//   retainer.Start();
//   ...
//   retainer.Stop();
#pragma once

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/store.h"

namespace chstream::storage {

class Retainer {
 public:
  struct Options {
    RetentionPolicy policy;
    // Time between passes (the first runs at Start).
    absl::Duration interval = absl::Seconds(10);
    // Time between two transactions of one pass: the writer's turn. At
    // least as long as the last transaction, so that retention holds the
    // write lock at most half of the time.
    absl::Duration pause = absl::Milliseconds(5);
    // The rows per transaction adapt to the store and machine: halved
    // (down to kMinRows) after a transaction longer than this, grown by a
    // quarter (up to policy.rows_per_transaction) after one shorter than
    // half of it. Zero: always policy.rows_per_transaction.
    absl::Duration target_transaction_time = absl::Milliseconds(5);
  };
  static constexpr int kMinRows = 20;

  Retainer(EventStore* store, Options options, Clock* clock);
  Retainer(const Retainer&) = delete;
  Retainer& operator=(const Retainer&) = delete;
  ~Retainer();  // Stop()

  void Start();
  // Ends the current transaction's pass and joins the thread. Idempotent.
  void Stop();

  // One whole pass on the caller's thread (what the thread runs every
  // `interval`): PruneStep until nothing is left, pausing in between (see
  // Options). Returns the totals.
  absl::StatusOr<PruneStepResult> RunPass();

 private:
  void Run();
  // Waits `d` or until Stop(); returns false once stopping.
  bool Wait(absl::Duration d);

  EventStore* const store_;
  const Options options_;
  // The rows per transaction now (RunPass's caller's thread only).
  int rows_;
  Clock* const clock_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace chstream::storage
