#include "server/follower_feed.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::server {

FollowerFeed::FollowerFeed(PageReader read, SubscriptionHub* hub,
                           uint64_t published_through, Options options)
    : read_(std::move(read)), hub_(hub), options_(options) {
  stats_.published_through = published_through;
  stats_.head = published_through;
}

FollowerFeed::~FollowerFeed() { Stop(); }

FollowerFeed::Stats FollowerFeed::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void FollowerFeed::NotifyHead(uint64_t head) {
  absl::MutexLock lock(&mu_);
  stats_.head = std::max(stats_.head, head);
}

absl::Status FollowerFeed::CatchUpTo(uint64_t head) {
  uint64_t through;
  {
    absl::MutexLock lock(&mu_);
    through = stats_.published_through;
  }
  while (through < head) {
    absl::StatusOr<storage::Page> page =
        read_(through, head, options_.page_events);
    if (!page.ok()) {
      absl::MutexLock lock(&mu_);
      ++stats_.read_errors;
      return page.status();
    }
    auto batch = std::make_shared<std::vector<storage::Event>>();
    batch->reserve(page->events.size());
    for (storage::Event& e : page->events) {
      // Never twice, never backwards, whatever the reader returns.
      if (e.position <= through) continue;
      through = e.position;
      batch->push_back(std::move(e));
    }
    const bool progressed = !batch->empty() || page->scanned_through > through;
    through = std::max(through, std::min(page->scanned_through, head));
    const size_t published = batch->size();
    if (published > 0) hub_->Publish(std::move(batch));
    {
      absl::MutexLock lock(&mu_);
      ++stats_.pages_read;
      stats_.events_published += published;
      stats_.published_through = through;
    }
    // The head was notified but its rows are not visible to this reader
    // yet: the next notification or poll comes back for them.
    if (!progressed) break;
  }
  return absl::OkStatus();
}

void FollowerFeed::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    SetCurrentThreadName("follower-feed");
    Run();
  });
}

void FollowerFeed::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void FollowerFeed::Run() {
  absl::Status last = absl::OkStatus();
  while (true) {
    uint64_t head;
    {
      absl::MutexLock lock(&mu_);
      // Wait for a head past what was published, or Stop().
      const auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || stats_.head > stats_.published_through;
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      head = stats_.head;
    }
    absl::Status status = CatchUpTo(head);
    if (!status.ok()) {
      if (status.ToString() != last.ToString()) {
        log::Warning("follower feed: cannot read new events",
                     {{"error", status}});
      }
      last = status;
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry);
      if (stopping_) return;
      continue;
    }
    last = status;
    absl::MutexLock lock(&mu_);
    if (stats_.published_through < head) {
      // Nothing visible yet up to `head`: retry after a while, or sooner
      // when a newer head arrives.
      const auto newer = [this, head]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || stats_.head > head;
      };
      mu_.AwaitWithTimeout(absl::Condition(&newer), options_.retry);
      if (stopping_) return;
    }
  }
}

}  // namespace chstream::server
