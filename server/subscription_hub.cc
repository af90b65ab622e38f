#include "server/subscription_hub.h"

namespace chstream::server {

Subscription::Subscription(uint64_t id, storage::Filter filter,
                           size_t capacity, std::function<void()> wake)
    : id_(id),
      filter_(std::move(filter)),
      capacity_(capacity == 0 ? 1 : capacity),
      wake_(std::move(wake)) {}

bool Subscription::Pop(Item* item) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return false;
  *item = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

bool Subscription::overflowed() const {
  absl::MutexLock lock(&mu_);
  return overflowed_;
}

void Subscription::Rearm() {
  absl::MutexLock lock(&mu_);
  overflowed_ = false;
}

size_t Subscription::depth() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Subscription::Detach() {
  absl::MutexLock lock(&mu_);
  wake_ = nullptr;
  queue_.clear();
}

bool Subscription::Offer(const EventBatch& batch) {
  absl::MutexLock lock(&mu_);
  if (overflowed_ || !wake_) return false;
  const bool was_empty = queue_.empty();
  bool added = false;
  for (const storage::Event& e : *batch) {
    if (!filter_.Matches(e)) continue;
    if (queue_.size() >= capacity_) {
      // Lost events will be re-read from storage: release the memory now.
      queue_.clear();
      overflowed_ = true;
      return true;
    }
    queue_.push_back(Item{batch, &e});
    added = true;
  }
  return added && was_empty;
}

void Subscription::Wake() {
  // Called under the lock so that Detach() returning means no wake-up is
  // running or will run: the subscriber may then be destroyed.
  absl::MutexLock lock(&mu_);
  if (wake_) wake_();
}

std::shared_ptr<Subscription> SubscriptionHub::Register(
    storage::Filter filter, size_t capacity, std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  auto sub = std::make_shared<Subscription>(next_id_++, std::move(filter),
                                            capacity, std::move(wake));
  subs_.emplace(sub->id(), sub);
  return sub;
}

void SubscriptionHub::Unregister(uint64_t id) {
  std::shared_ptr<Subscription> sub;
  {
    absl::MutexLock lock(&mu_);
    auto it = subs_.find(id);
    if (it == subs_.end()) return;
    sub = std::move(it->second);
    subs_.erase(it);
  }
  sub->Detach();
}

void SubscriptionHub::Publish(const EventBatch& batch) {
  if (batch == nullptr || batch->empty()) return;
  std::vector<std::shared_ptr<Subscription>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, sub] : subs_) {
      if (sub->Offer(batch)) to_wake.push_back(sub);
    }
  }
  for (const std::shared_ptr<Subscription>& sub : to_wake) sub->Wake();
}

size_t SubscriptionHub::size() const {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

}  // namespace chstream::server
