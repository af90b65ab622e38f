// SubscriptionHub without gRPC: per-subscription filtering through hash
// sets, queues bounded in events and in bytes, and queued events that share
// per-event storage instead of pinning the commit batch they came in.
#include "server/subscription_hub.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::server {
namespace {

storage::Event MakeEvent(uint64_t position, const std::string& company,
                         size_t data_bytes = 10) {
  storage::Event e;
  e.position = position;
  e.stream = "companies";
  e.resource_kind = "company-profile";
  e.company_number = company;
  e.data_pb = std::string(data_bytes, 'x');
  e.data_json = std::string(data_bytes, 'j');
  return e;
}

EventBatch Batch(std::vector<storage::Event> events) {
  return std::make_shared<const std::vector<storage::Event>>(std::move(events));
}

std::vector<uint64_t> Drain(Subscription& sub) {
  std::vector<uint64_t> out;
  Subscription::Item item;
  while (sub.Pop(&item)) out.push_back(item.event->position);
  return out;
}

TEST(FilterMatcherTest, AndAcrossFieldsOrWithin) {
  storage::Filter f;
  f.streams = {"companies", "filings"};
  f.company_numbers = {"00000001", "00000002"};
  FilterMatcher m(f);
  EXPECT_TRUE(m.Matches(MakeEvent(1, "00000002")));
  EXPECT_FALSE(m.Matches(MakeEvent(1, "00000003")));
  storage::Event officers = MakeEvent(1, "00000001");
  officers.stream = "officers";
  EXPECT_FALSE(m.Matches(officers));
  EXPECT_TRUE(FilterMatcher(storage::Filter()).Matches(officers));
}

// Verifies that a queued event does not keep its commit batch alive: a
// subscriber that stops reading pins only the events it matched, one
// shared copy each, without the fields serving does not use.
TEST(SubscriptionHubTest, QueuedEventsDoNotPinTheBatch) {
  SubscriptionHub hub;
  storage::Filter f;
  f.company_numbers = {"00000001"};
  auto a = hub.Register(f, QueueLimits{}, [] {});
  auto b = hub.Register(f, QueueLimits{}, [] {});
  std::vector<storage::Event> events;
  for (uint64_t p = 1; p <= 1000; ++p) {
    events.push_back(MakeEvent(p, p == 500 ? "00000001" : "00000009", 1000));
  }
  EventBatch batch = Batch(std::move(events));
  std::weak_ptr<const std::vector<storage::Event>> weak = batch;
  hub.Publish(batch);
  batch.reset();
  EXPECT_TRUE(weak.expired()) << "a queue item keeps the whole batch alive";
  Subscription::Item ia, ib;
  ASSERT_TRUE(a->Pop(&ia));
  ASSERT_TRUE(b->Pop(&ib));
  EXPECT_EQ(ia.event.get(), ib.event.get());  // one copy for both
  EXPECT_EQ(ia.event->position, 500u);
  EXPECT_EQ(ia.event->data_pb.size(), 1000u);
  EXPECT_TRUE(ia.event->data_json.empty());  // not served: not kept
}

TEST(SubscriptionHubTest, QueueOverflowsInBytes) {
  SubscriptionHub hub;
  int wakes = 0;
  auto sub = hub.Register(storage::Filter(),
                          QueueLimits{.events = 1000, .bytes = 100'000},
                          [&] { ++wakes; });
  std::vector<storage::Event> events;
  for (uint64_t p = 1; p <= 10; ++p) {
    events.push_back(MakeEvent(p, "00000001", 30'000));
  }
  hub.Publish(Batch(std::move(events)));
  EXPECT_TRUE(sub->overflowed());
  EXPECT_EQ(sub->depth(), 0u);  // emptied: re-read from storage
  EXPECT_EQ(sub->bytes(), 0u);
  EXPECT_EQ(wakes, 1);
  sub->Rearm();
  hub.Publish(Batch(
      {MakeEvent(11, "00000001", 30'000), MakeEvent(12, "00000001", 30'000)}));
  EXPECT_FALSE(sub->overflowed());
  EXPECT_GT(sub->bytes(), 60'000u);
  EXPECT_LE(sub->bytes(), 100'000u);
  EXPECT_THAT(Drain(*sub), ::testing::ElementsAre(11, 12));
  EXPECT_EQ(sub->bytes(), 0u);
}

TEST(SubscriptionHubTest, QueueOverflowsInEvents) {
  SubscriptionHub hub;
  auto sub = hub.Register(storage::Filter(), QueueLimits{.events = 3}, [] {});
  hub.Publish(Batch({MakeEvent(1, "a"), MakeEvent(2, "a"), MakeEvent(3, "a")}));
  EXPECT_FALSE(sub->overflowed());
  hub.Publish(Batch({MakeEvent(4, "a")}));
  EXPECT_TRUE(sub->overflowed());
}

// Verifies IdleThrough, the basis of live checkpoints: only with nothing
// queued, and then the last published position whether or not it matched.
TEST(SubscriptionHubTest, IdleThroughCoversSkippedEvents) {
  SubscriptionHub hub;
  storage::Filter f;
  f.company_numbers = {"00000001"};
  auto sub = hub.Register(f, QueueLimits{}, [] {});
  uint64_t through = 99;
  ASSERT_TRUE(sub->IdleThrough(&through));
  EXPECT_EQ(through, 0u);
  hub.Publish(Batch({MakeEvent(1, "00000001"), MakeEvent(2, "00000002")}));
  EXPECT_FALSE(sub->IdleThrough(&through));  // event 1 not yet taken
  EXPECT_THAT(Drain(*sub), ::testing::ElementsAre(1));
  ASSERT_TRUE(sub->IdleThrough(&through));
  EXPECT_EQ(through, 2u);
}

TEST(SubscriptionHubTest, UnregisterStopsDelivery) {
  SubscriptionHub hub;
  int wakes = 0;
  auto sub = hub.Register(storage::Filter(), QueueLimits{}, [&] { ++wakes; });
  EXPECT_EQ(hub.size(), 1u);
  hub.Unregister(sub->id());
  hub.Publish(Batch({MakeEvent(1, "a")}));
  EXPECT_EQ(wakes, 0);
  EXPECT_EQ(sub->depth(), 0u);
  EXPECT_EQ(hub.size(), 0u);
}

}  // namespace
}  // namespace chstream::server
