// SubscriptionHub without gRPC: per-subscription filtering through hash
// sets, queues bounded in events and in bytes, and queued events that share
// per-event storage instead of pinning the commit batch they came in.
#include "server/subscription_hub.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chstream/v1/chstream.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_convert.h"

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
  // What is kept is the message served: without data_json (not served), and
  // made once for both.
  v1::Event expected;
  storage::Event e = MakeEvent(500, "00000001", 1000);
  e.data_json.clear();
  ToProto(e, &expected);
  EXPECT_EQ(ia.event->message, expected.SerializeAsString());
  EXPECT_LT(ApproximateBytes(*ia.event), 1200u);
}

// Verifies that the message a queue holds is the event's chstream.v1.Event,
// and that a SubscribeResponse carrying it parses as that event.
TEST(SubscriptionHubTest, QueuedMessageIsTheServedEvent) {
  SubscriptionHub hub;
  auto sub = hub.Register({}, QueueLimits{}, [] {});
  storage::Event e = MakeEvent(7, "01234567");
  e.stream = "filings";
  e.timepoint = 42;
  e.resource_uri = "/company/01234567/filing-history/x";
  e.fields_changed = {"a", "b"};
  e.published_at = absl::FromUnixMicros(1'700'000'000'123'456);
  e.data_pb.clear();  // 'x' bytes are not a Struct; parsed below
  hub.Publish(Batch({e}));
  Subscription::Item item;
  ASSERT_TRUE(sub->Pop(&item));

  v1::SubscribeResponse response;
  response.set_store_id("stale");
  SetSerializedEvent(item.event->message, &response);
  v1::SubscribeResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(response.SerializeAsString()));
  ASSERT_TRUE(parsed.has_event());
  EXPECT_TRUE(parsed.store_id().empty());  // cleared first
  v1::Event expected;
  ToProto(e, &expected);
  EXPECT_EQ(parsed.event().SerializeAsString(), expected.SerializeAsString());
  EXPECT_EQ(parsed.event().stream(), "filings");
  EXPECT_EQ(parsed.event().timepoint(), 42);
  EXPECT_EQ(parsed.event().fields_changed_size(), 2);
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

// Verifies that a subscription no event of a batch is offered to (its
// company numbers are not in it) still counts the batch as examined, and
// that one registered after a batch does not claim it.
TEST(SubscriptionHubTest, IdleThroughCoversBatchesNotOfferedAndNotBefore) {
  SubscriptionHub hub;
  hub.Publish(Batch({MakeEvent(1, "00000001"), MakeEvent(2, "00000002")}));
  storage::Filter f;
  f.company_numbers = {"00000001"};
  auto sub = hub.Register(f, QueueLimits{}, [] {});
  uint64_t through = 99;
  ASSERT_TRUE(sub->IdleThrough(&through));
  EXPECT_EQ(through, 0u);  // 1 and 2 were published before it registered
  const uint64_t offers = hub.offers();
  hub.Publish(Batch({MakeEvent(3, "00000002"), MakeEvent(4, "00000003")}));
  EXPECT_EQ(hub.offers(), offers);  // not offered
  ASSERT_TRUE(sub->IdleThrough(&through));
  EXPECT_EQ(through, 4u);
}

// Verifies that Publish offers a batch only to the subscriptions naming one
// of its company numbers (and to those naming none), each once, however
// many of its events it names.
TEST(SubscriptionHubTest, BatchIsOfferedOnlyToSubscriptionsItCanMatch) {
  SubscriptionHub hub;
  std::vector<std::shared_ptr<Subscription>> narrow;
  for (int i = 0; i < 1000; ++i) {
    storage::Filter f;
    f.company_numbers = {absl::StrCat("C", i)};
    narrow.push_back(hub.Register(f, QueueLimits{}, [] {}));
  }
  storage::Filter two;
  two.company_numbers = {"C1", "C2"};
  auto both = hub.Register(two, QueueLimits{}, [] {});
  storage::Filter profiles;
  profiles.resource_kinds = {"company-profile"};
  auto any = hub.Register(profiles, QueueLimits{}, [] {});

  hub.Publish(Batch({MakeEvent(1, "C1"), MakeEvent(2, "C2"), MakeEvent(3, "C1"),
                     MakeEvent(4, "NOBODY")}));
  // C1's, C2's, `both` and `any`: 4 of the 1,002.
  EXPECT_EQ(hub.offers(), 4u);
  EXPECT_THAT(Drain(*narrow[1]), ::testing::ElementsAre(1, 3));
  EXPECT_THAT(Drain(*narrow[2]), ::testing::ElementsAre(2));
  EXPECT_THAT(Drain(*both), ::testing::ElementsAre(1, 2, 3));
  EXPECT_THAT(Drain(*any), ::testing::ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(narrow[0]->depth(), 0u);

  // Unregistered: no longer offered anything.
  hub.Unregister(narrow[1]->id());
  hub.Unregister(both->id());
  hub.Publish(Batch({MakeEvent(5, "C1")}));
  EXPECT_EQ(hub.offers(), 5u);  // `any` only
  EXPECT_EQ(narrow[1]->depth(), 0u);
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
