// The real chstreamd binary (built-in simulator, 127.0.0.1:0): the store_id
// in GetStatus survives a clean restart, survives kill -9 with
// --synchronous=full (every published position was durable), and is replaced
// after kill -9 with --synchronous=normal (the last commits may be lost and
// their positions given to other events) and with --new_store_id.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using ::testing::MatchesRegex;
using testing::WaitUntil;

constexpr char kBinary[] = "server/chstreamd";  // in runfiles

class ChstreamdStoreIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        std::getenv("TEST_TMPDIR"), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }

  // Starts chstreamd on the test's database; waits until it serves.
  std::unique_ptr<ChildProcess> Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--grpc_address=127.0.0.1:0",
                                     "--metrics_address=127.0.0.1:0",
                                     "--db_path=chstream.db"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = std::make_unique<ChildProcess>(
        kBinary, args, std::vector<std::string>{"PATH=/usr/bin:/bin"}, dir_,
        absl::StrCat(dir_, "/out", ++runs_, ".log"));
    EXPECT_TRUE(child->started());
    EXPECT_TRUE(WaitUntil(
        [&] { return absl::StrContains(child->Output(), "chstreamd serving"); },
        absl::Seconds(30)))
        << child->Output();
    return child;
  }

  // GetStatus's store: store_id and synchronous.
  v1::StoreStatus Status(const ChildProcess& child) {
    const std::string address =
        testing::LoggedField(child.Output(), "grpc_address");
    auto stub = v1::CompanyStream::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    v1::GetStatusResponse status;
    // Wait for a committed event, so that the kill below interrupts a store
    // that has been written to.
    EXPECT_TRUE(WaitUntil(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(10));
          return stub->GetStatus(&ctx, {}, &status).ok() &&
                 status.store().head_position() > 0;
        },
        absl::Seconds(30)));
    return status.store();
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(ChstreamdStoreIdentityTest, KeptOverCleanRestartAndKillWithFull) {
  auto first = Start({"--simulator_rate=50"});
  const v1::StoreStatus before = Status(*first);
  EXPECT_THAT(before.store_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(before.synchronous(), "full");
  EXPECT_EQ(first->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);

  auto second = Start({"--simulator_rate=50"});
  EXPECT_EQ(Status(*second).store_id(), before.store_id());
  EXPECT_EQ(second->SignalAndWait(SIGKILL, absl::Seconds(10)), 128 + SIGKILL);

  auto third = Start({"--simulator_rate=50"});
  EXPECT_EQ(Status(*third).store_id(), before.store_id());
  EXPECT_EQ(third->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

TEST_F(ChstreamdStoreIdentityTest, ReplacedAfterKillWithNormalOrOnRequest) {
  auto first = Start({"--simulator_rate=50", "--synchronous=normal"});
  const v1::StoreStatus before = Status(*first);
  EXPECT_EQ(before.synchronous(), "normal");
  EXPECT_EQ(first->SignalAndWait(SIGKILL, absl::Seconds(10)), 128 + SIGKILL);

  auto second = Start({"--simulator_rate=50", "--synchronous=normal"});
  const std::string after_kill = Status(*second).store_id();
  EXPECT_THAT(after_kill, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(after_kill, before.store_id());
  EXPECT_THAT(second->Output(), ::testing::HasSubstr("new store_id"));
  EXPECT_EQ(second->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);

  // A clean stop under normal keeps it.
  auto third = Start({"--simulator_rate=50", "--synchronous=normal"});
  EXPECT_EQ(Status(*third).store_id(), after_kill);
  EXPECT_EQ(third->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);

  auto fourth = Start({"--simulator_rate=50", "--new_store_id"});
  EXPECT_NE(Status(*fourth).store_id(), after_kill);
  EXPECT_EQ(fourth->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
