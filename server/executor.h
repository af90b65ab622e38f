// File: server/executor.h
//
// A fixed pool of threads running posted closures in FIFO order. gRPC
// reactions must not block, so storage reads for replay and catch-up run
// here instead of on gRPC's threads.
//
// Thread-safety: Post may be called from any thread. The destructor runs
// every task already posted, then joins.
//
//   Executor executor(2);
//   executor.Post([] { ReadAPage(); });
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace chstream::server {

class Executor {
 public:
  // `before_task`, if set, runs on the executor's thread before each task
  // (tests use it to make each storage read take time on a FakeClock).
  explicit Executor(int threads, std::function<void()> before_task = nullptr);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The queue is bounded by its users: each reactor has at most one task
  // pending at a time.
  void Post(std::function<void()> task);

 private:
  void Run();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !tasks_.empty();
  }

  const std::function<void()> before_task_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace chstream::server
