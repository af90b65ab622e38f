#include "server/executor.h"

#include "base/thread_name.h"

namespace chstream::server {

Executor::Executor(int threads, std::function<void()> before_task)
    : before_task_(std::move(before_task)) {
  for (int i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      SetCurrentThreadName("chs-exec");
      Run();
    });
}

Executor::~Executor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void Executor::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void Executor::Run() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Executor::Ready));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    if (before_task_) before_task_();
    task();
  }
}

}  // namespace chstream::server
