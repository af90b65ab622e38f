// chstreamd replicas on one real PostgreSQL 15, as operators run them: the
// real binary as child processes (port 0), all following one shared
// simulator (so that the stored event set can be compared with what the
// upstream published), with the faults that make a leader change:
//   - three replicas elect exactly one leader, and all agree on it;
//   - kill -9 of the leader mid-ingest: a follower takes over within 15 s,
//     and subscribers on the survivors (the new leader and a follower) see
//     every position once, in order, across the switch;
//   - a leader paused (SIGSTOP) past the takeover is fenced when it resumes
//     and follows;
//   - PostgreSQL restarted under a running leader: it reconnects and goes on;
//   - an unreachable server at start: exit 2, the password never printed.
// Afterwards the event set is exact: positions dense and strictly
// increasing, each stored timepoint once, and every timepoint the upstream
// published in the stored range stored.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/cluster/replica_set.h"
#include "tests/testing/child_process.h"
#include "tests/testing/postgres_server.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Replica;
using testing::WaitUntil;

constexpr char kBinary[] = "server/chstreamd";
constexpr char kKey[] = "failover-test-key";
constexpr char kPassword[] = "hunter2-failover-secret";

std::string TempDir() { return std::getenv("TEST_TMPDIR"); }

// Where the replicas' logs go: kept with the test's outputs when Bazel
// provides the directory.
std::string LogDir() {
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  return outputs != nullptr ? outputs : TempDir();
}

// Subscribes from the beginning on one replica and keeps every position.
class Subscriber {
 public:
  explicit Subscriber(const std::string& address)
      : stub_(v1::CompanyStream::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    thread_ = std::thread([this] {
      v1::SubscribeRequest request;
      request.mutable_start()->set_beginning(true);
      request.set_heartbeat_seconds(1);
      std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> reader =
          stub_->Subscribe(&ctx_, request);
      v1::SubscribeResponse r;
      while (reader->Read(&r)) {
        if (!r.has_event()) continue;
        absl::MutexLock lock(&mu_);
        positions_.push_back(r.event().position());
      }
      grpc::Status status = reader->Finish();
      absl::MutexLock lock(&mu_);
      ended_ = true;
      error_ = status.error_message();
    });
  }
  ~Subscriber() {
    ctx_.TryCancel();
    thread_.join();
  }

  uint64_t last() const {
    absl::MutexLock lock(&mu_);
    return positions_.empty() ? 0 : positions_.back();
  }
  std::vector<uint64_t> positions() const {
    absl::MutexLock lock(&mu_);
    return positions_;
  }
  bool ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }

 private:
  std::unique_ptr<v1::CompanyStream::Stub> stub_;
  grpc::ClientContext ctx_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> positions_;
  bool ended_ = false;
  std::string error_;
  std::thread thread_;
};

// Every position from 1 to the last one received, once each, in order.
void ExpectGapless(const std::vector<uint64_t>& positions,
                   const std::string& who) {
  ASSERT_FALSE(positions.empty()) << who;
  for (size_t i = 0; i < positions.size(); ++i) {
    ASSERT_EQ(positions[i], i + 1) << who << ": at index " << i;
  }
}

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::PostgresServer*> pg =
        testing::SharedPostgresServer();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *pg;
    absl::StatusOr<std::string> uri = pg_->CreateDatabase();
    ASSERT_TRUE(uri.ok()) << uri.status();
    uri_ = *uri;
    ingest::sim::Options options;
    options.keys = {kKey};
    options.streams = {"companies"};
    options.companies_rate = 100;
    options.heartbeat_interval = absl::Milliseconds(500);
    options.initial_events_per_stream = 20;
    absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> sim =
        ingest::sim::Simulator::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = *std::move(sim);
    set_ = std::make_unique<testing::ReplicaSet>(
        testing::ReplicaSet::Options{.postgres_url = uri_,
                                     .upstream_url = sim_->url(),
                                     .key = kKey,
                                     .dir = TempDir(),
                                     .log_dir = LogDir()},
        pg_);
  }

  void TearDown() override {
    set_.reset();  // SIGKILLs what is left
    if (sim_ != nullptr) sim_->Stop();
  }

  // Null (and a failure) if it does not serve.
  Replica* StartReplica(const std::string& id) {
    absl::StatusOr<Replica*> r = set_->Start(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : nullptr;
  }
  Replica* WaitForOneLeader(const std::vector<Replica*>& among,
                            absl::Duration timeout) {
    return set_->WaitForOneLeader(among, timeout);
  }
  uint64_t SqlHead() { return set_->SqlHead(); }
  bool WaitForHead(uint64_t at_least, absl::Duration timeout) {
    return set_->WaitForHead(at_least, timeout);
  }
  // SIGTERM: every role stops within seconds, exit 0; then the event set
  // is exact.
  void StopAllAndCheckEventSet() {
    absl::Status stopped = set_->StopAll(absl::Seconds(15));
    EXPECT_TRUE(stopped.ok()) << stopped;
    absl::Status exact = set_->CheckExactEventSet(*sim_);
    EXPECT_TRUE(exact.ok()) << exact;
  }

  testing::PostgresServer* pg_ = nullptr;
  std::string uri_;
  std::unique_ptr<ingest::sim::Simulator> sim_;
  std::unique_ptr<testing::ReplicaSet> set_;
};

// Verifies three replicas elect one leader that all of them name; kill -9
// of it mid-ingest moves leadership to a follower within 15 s (kill to the
// first event the new leader commits); subscribers on both survivors see
// every position once across the failover; followers show the leader's
// stream state and a serving "ingest" health; the event set is exact.
TEST_F(FailoverTest, ThreeReplicasOneLeaderKillNineFailsOverWithoutGap) {
  Replica* a = StartReplica("a");
  ASSERT_NE(a, nullptr);
  Replica* b = StartReplica("b");
  ASSERT_NE(b, nullptr);
  Replica* c = StartReplica("c");
  ASSERT_NE(c, nullptr);
  Replica* leader = WaitForOneLeader({a, b, c}, absl::Seconds(30));
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitForHead(100, absl::Seconds(30)));

  std::vector<Replica*> followers;
  for (Replica* r : {a, b, c}) {
    if (r != leader) followers.push_back(r);
  }
  // A follower shows the leader's stream state (recorded in PostgreSQL).
  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s =
            testing::GetReplicaStatus(followers[0]->address);
        return s.ok() && s->streams_size() == 1 &&
               s->streams(0).stream() == "companies" &&
               s->streams(0).state() == v1::STREAM_STATE_STREAMING &&
               s->streams(0).events_total() > 0;
      },
      absl::Seconds(15)));
  EXPECT_EQ(testing::IngestHealth(followers[0]->address), "SERVING");

  Subscriber on_first(followers[0]->address);
  Subscriber on_second(followers[1]->address);
  ASSERT_TRUE(WaitUntil(
      [&] { return on_first.last() >= 100 && on_second.last() >= 100; },
      absl::Seconds(30)));

  const int64_t old_epoch =
      testing::GetReplicaStatus(leader->address)->replica().leader_epoch();
  ASSERT_EQ(leader->process->SignalAndWait(SIGKILL, absl::Seconds(10)),
            128 + SIGKILL);
  const absl::Time killed_at = absl::Now();
  const uint64_t head_at_kill = SqlHead();
  ASSERT_TRUE(WaitForHead(head_at_kill + 1, absl::Seconds(30)));
  const absl::Duration failover = absl::Now() - killed_at;
  std::cout << "failover: kill -9 to the first event committed by the new "
               "leader: "
            << absl::FormatDuration(failover) << std::endl;
  EXPECT_LE(failover, absl::Seconds(15));

  Replica* new_leader = WaitForOneLeader(followers, absl::Seconds(30));
  ASSERT_NE(new_leader, nullptr);
  EXPECT_GT(
      testing::GetReplicaStatus(new_leader->address)->replica().leader_epoch(),
      old_epoch);

  // Both subscribers go on past the failover, gapless.
  ASSERT_TRUE(WaitForHead(head_at_kill + 100, absl::Seconds(30)));
  const uint64_t target = SqlHead();
  EXPECT_TRUE(WaitUntil(
      [&] { return on_first.last() >= target && on_second.last() >= target; },
      absl::Seconds(30)))
      << on_first.last() << " " << on_second.last() << " of " << target;
  EXPECT_FALSE(on_first.ended());
  EXPECT_FALSE(on_second.ended());
  ExpectGapless(on_first.positions(), "subscriber on " + followers[0]->id);
  ExpectGapless(on_second.positions(), "subscriber on " + followers[1]->id);

  StopAllAndCheckEventSet();
}

// Verifies a leader paused past the takeover (SIGSTOP; the kernel still
// answers its keepalives, so only its idle election session times out) is
// fenced when it resumes (SIGCONT): it stops ingesting and follows the new
// leader, and the event set stays exact.
TEST_F(FailoverTest, PausedLeaderIsFencedAndFollows) {
  Replica* a = StartReplica("a");
  ASSERT_NE(a, nullptr);
  Replica* b = StartReplica("b");
  ASSERT_NE(b, nullptr);
  Replica* leader = WaitForOneLeader({a, b}, absl::Seconds(30));
  ASSERT_NE(leader, nullptr);
  Replica* other = leader == a ? b : a;
  ASSERT_TRUE(WaitForHead(50, absl::Seconds(30)));

  ASSERT_EQ(::kill(leader->process->pid(), SIGSTOP), 0);
  EXPECT_TRUE(
      WaitUntil([&] { return other->Role() == "leader"; }, absl::Seconds(40)));
  const uint64_t head = SqlHead();
  ASSERT_TRUE(WaitForHead(head + 50, absl::Seconds(30)));
  ASSERT_EQ(::kill(leader->process->pid(), SIGCONT), 0);

  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s =
            testing::GetReplicaStatus(leader->address);
        return s.ok() && s->replica().role() == "follower" &&
               s->replica().leader_id() == other->id;
      },
      absl::Seconds(30)))
      << leader->Output();
  EXPECT_THAT(leader->Output(), HasSubstr("no longer the ingest leader"));
  EXPECT_EQ(pg_->QueryValue(uri_, "SELECT leader_id FROM cluster").value_or(""),
            other->id);
  const uint64_t after = SqlHead();
  ASSERT_TRUE(WaitForHead(after + 50, absl::Seconds(30)));
  EXPECT_EQ(other->Role(), "leader");
  StopAllAndCheckEventSet();
}

// Verifies a leader whose PostgreSQL restarts under it reconnects, leads
// again and loses nothing.
TEST_F(FailoverTest, PostgresRestartUnderRunningLeader) {
  Replica* a = StartReplica("a");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(WaitForOneLeader({a}, absl::Seconds(30)), nullptr);
  ASSERT_TRUE(WaitForHead(50, absl::Seconds(30)));
  ASSERT_TRUE(pg_->Restart().ok());
  const uint64_t head = SqlHead();
  ASSERT_TRUE(WaitForHead(head + 100, absl::Seconds(60))) << a->Output();
  EXPECT_TRUE(
      WaitUntil([&] { return a->Role() == "leader"; }, absl::Seconds(30)));
  StopAllAndCheckEventSet();
}

// Verifies an unreachable PostgreSQL at start exits 2 with a line that
// names the server, never the password.
TEST_F(FailoverTest, UnreachableServerExitsTwoWithoutThePassword) {
  const std::string dir = TempDir();
  ChildProcess child(
      kBinary,
      {absl::StrCat("--postgres_url=postgresql://chstream:", kPassword,
                    "@127.0.0.1:1/chstream"),
       "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0"},
      {"PATH=/usr/bin:/bin", "TZ=UTC"}, dir, dir + "/unreachable.log");
  EXPECT_EQ(child.Wait(absl::Seconds(30)), 2);
  EXPECT_THAT(child.Output(), HasSubstr("cannot open the PostgreSQL store"));
  EXPECT_THAT(child.Output(), HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(child.Output(), Not(HasSubstr(kPassword)));
}

}  // namespace
}  // namespace chstream
