#include "server/subscription_hub.h"

#include <algorithm>

#include "server/proto_convert.h"

namespace chstream::server {
namespace {

// The copy a queue shares: what serving sends.
SharedEvent ServingCopy(const storage::Event& e) {
  return std::make_shared<const QueuedEvent>(
      QueuedEvent{e.position, SerializeEvent(e)});
}

}  // namespace

FilterMatcher::FilterMatcher(const storage::Filter& f)
    : streams_(f.streams.begin(), f.streams.end()),
      kinds_(f.resource_kinds.begin(), f.resource_kinds.end()),
      companies_(f.company_numbers.begin(), f.company_numbers.end()) {
  for (storage::EventType t : f.types) types_.insert(static_cast<int>(t));
}

bool FilterMatcher::Matches(const storage::Event& e) const {
  return (streams_.empty() || streams_.contains(e.stream)) &&
         (kinds_.empty() || kinds_.contains(e.resource_kind)) &&
         (companies_.empty() || companies_.contains(e.company_number)) &&
         (types_.empty() || types_.contains(static_cast<int>(e.type)));
}

size_t ApproximateBytes(const QueuedEvent& e) {
  return sizeof(QueuedEvent) + e.message.capacity();
}

Subscription::Subscription(
    uint64_t id, storage::Filter filter, QueueLimits limits,
    std::function<void()> wake,
    std::shared_ptr<const std::atomic<uint64_t>> published_through,
    uint64_t registered_at)
    : id_(id),
      matcher_(filter),
      limits_{limits.events == 0 ? 1 : limits.events,
              limits.bytes == 0 ? 1 : limits.bytes},
      published_through_(std::move(published_through)),
      registered_at_(registered_at),
      wake_(std::move(wake)) {}

bool Subscription::Pop(Item* item) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return false;
  *item = std::move(queue_.front());
  queue_.pop_front();
  bytes_ -= ApproximateBytes(*item->event);
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

size_t Subscription::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

bool Subscription::IdleThrough(uint64_t* position) const {
  absl::MutexLock lock(&mu_);
  if (!queue_.empty() || overflowed_) return false;
  // Every batch up to this position has been offered to every subscription
  // that matched it (Publish), and an offer takes mu_: had one been made to
  // this subscription, its events would be queued or popped by now.
  const uint64_t through = published_through_->load(std::memory_order_acquire);
  *position = through > registered_at_ ? through : 0;
  return true;
}

void Subscription::Detach() {
  absl::MutexLock lock(&mu_);
  wake_ = nullptr;
  queue_.clear();
  bytes_ = 0;
}

bool Subscription::Offer(const std::vector<storage::Event>& batch,
                         std::vector<SharedEvent>* shared) {
  absl::MutexLock lock(&mu_);
  if (overflowed_ || !wake_) return false;
  const bool was_empty = queue_.empty();
  bool added = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    const storage::Event& e = batch[i];
    if (!matcher_.Matches(e)) continue;
    SharedEvent& copy = (*shared)[i];
    if (copy == nullptr) copy = ServingCopy(e);
    const size_t size = ApproximateBytes(*copy);
    if (queue_.size() >= limits_.events || bytes_ + size > limits_.bytes) {
      // Lost events will be re-read from storage: release the memory now.
      queue_.clear();
      bytes_ = 0;
      overflowed_ = true;
      return true;
    }
    queue_.push_back(Item{copy});
    bytes_ += size;
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
    storage::Filter filter, QueueLimits limits, std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  // Batches picked before now are not offered to it; those picked after
  // are (Publish).
  auto sub = std::make_shared<Subscription>(
      next_id_++, std::move(filter), limits, std::move(wake),
      published_through_, picked_through_);
  subs_.emplace(sub->id(), sub);
  const auto& companies = sub->matcher().companies();
  if (companies.empty()) {
    unindexed_.emplace(sub->id(), sub);
  } else {
    for (const std::string& number : companies) {
      by_company_[number].emplace(sub->id(), sub);
    }
  }
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
    unindexed_.erase(id);
    for (const std::string& number : sub->matcher().companies()) {
      auto company = by_company_.find(number);
      if (company == by_company_.end()) continue;
      company->second.erase(id);
      if (company->second.empty()) by_company_.erase(company);
    }
  }
  sub->Detach();
}

void SubscriptionHub::Publish(const EventBatch& batch) {
  if (batch == nullptr || batch->empty()) return;
  // Only the picking is done under the hub's lock: filtering is per
  // subscription, under its own lock, so that a subscriber with a large
  // filter never holds up Register/Unregister or the others.
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    absl::MutexLock lock(&mu_);
    subs.reserve(unindexed_.size());
    for (auto& [id, sub] : unindexed_) subs.push_back(sub);
    const size_t unindexed = subs.size();
    for (size_t i = 0; i < batch->size() && !by_company_.empty(); ++i) {
      auto company = by_company_.find((*batch)[i].company_number);
      if (company == by_company_.end()) continue;
      for (auto& [id, sub] : company->second) subs.push_back(sub);
    }
    // A subscription naming several of the batch's companies: offer once.
    const auto by_id = [](const std::shared_ptr<Subscription>& a,
                          const std::shared_ptr<Subscription>& b) {
      return a->id() < b->id();
    };
    std::sort(subs.begin() + unindexed, subs.end(), by_id);
    subs.erase(std::unique(subs.begin() + unindexed, subs.end(),
                           [](const auto& a, const auto& b) {
                             return a->id() == b->id();
                           }),
               subs.end());
    picked_through_ = batch->back().position;
    offers_ += subs.size();
  }
  // With nobody to offer it to (ingest without subscribers: every commit),
  // nothing to allocate.
  if (!subs.empty()) {
    std::vector<SharedEvent> shared(batch->size());
    for (const std::shared_ptr<Subscription>& sub : subs) {
      if (sub->Offer(*batch, &shared)) sub->Wake();
    }
  }
  published_through_->store(batch->back().position, std::memory_order_release);
}

size_t SubscriptionHub::size() const {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

uint64_t SubscriptionHub::offers() const {
  absl::MutexLock lock(&mu_);
  return offers_;
}

}  // namespace chstream::server
