#include "client_examples/cpp/position_file.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::client_examples {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::Optional;

class PositionFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        std::getenv("TEST_TMPDIR"), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
    path_ = dir_ + "/app.position";
  }

  std::vector<std::string> DirEntries() const {
    std::vector<std::string> out;
    DIR* d = opendir(dir_.c_str());
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") out.push_back(name);
    }
    closedir(d);
    return out;
  }

  // The stored position; a failed read fails the test.
  std::optional<uint64_t> Read() const {
    absl::StatusOr<std::optional<uint64_t>> r = ReadPositionFile(path_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::nullopt;
  }

  void WriteRaw(const std::string& text) const {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << text;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(PositionFileTest, MissingFileIsNoPosition) {
  ASSERT_OK_AND_ASSIGN(std::optional<uint64_t> p, ReadPositionFile(path_));
  EXPECT_FALSE(p.has_value());
}

TEST_F(PositionFileTest, WriteThenReadAndOverwrite) {
  ASSERT_THAT(WritePositionFile(path_, 42), IsOk());
  EXPECT_THAT(Read(), Optional(42u));
  ASSERT_THAT(WritePositionFile(path_, 0), IsOk());
  EXPECT_THAT(Read(), Optional(0u));
  ASSERT_THAT(WritePositionFile(path_, UINT64_MAX), IsOk());
  EXPECT_THAT(Read(), Optional(UINT64_MAX));
  std::ifstream in(path_);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "18446744073709551615\n");
}

// Verifies that the temporary file is renamed away, not left behind.
TEST_F(PositionFileTest, LeavesNoTemporaryFiles) {
  for (uint64_t p = 1; p <= 5; ++p)
    ASSERT_THAT(WritePositionFile(path_, p), IsOk());
  EXPECT_THAT(DirEntries(), ElementsAre("app.position"));
}

TEST_F(PositionFileTest, ToleratesSurroundingWhitespace) {
  WriteRaw("  17 \n\n");
  EXPECT_THAT(Read(), Optional(17u));
}

TEST_F(PositionFileTest, RejectsContentThatIsNotOnePosition) {
  for (const char* bad : {"", "\n", "abc", "12 13", "-4", "0x10", "1.5",
                          "99999999999999999999999"}) {
    WriteRaw(bad);
    EXPECT_THAT(ReadPositionFile(path_),
                StatusIs(absl::StatusCode::kDataLoss, _))
        << "content: '" << bad << "'";
  }
}

TEST_F(PositionFileTest, WriteIntoMissingDirectoryFails) {
  EXPECT_THAT(WritePositionFile(dir_ + "/no/such/dir/p", 1),
              StatusIs(absl::StatusCode::kNotFound, _));
}

// Verifies the store_id is kept beside the position (one line:
// "<position> <store_id>"), and that a file from before store ids still reads.
TEST_F(PositionFileTest, StoreIdIsKeptBesideThePosition) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  ASSERT_THAT(WriteSavedPosition(path_, {.position = 42, .store_id = id}),
              IsOk());
  std::string text;
  std::getline(std::ifstream(path_), text);
  EXPECT_EQ(text, "42 " + id);
  absl::StatusOr<std::optional<SavedPosition>> saved = ReadSavedPosition(path_);
  ASSERT_THAT(saved, IsOk());
  ASSERT_TRUE(saved->has_value());
  EXPECT_EQ((*saved)->position, 42u);
  EXPECT_EQ((*saved)->store_id, id);
  EXPECT_THAT(Read(), Optional(42u));  // the position alone

  WriteRaw("17\n");  // written before store ids
  saved = ReadSavedPosition(path_);
  ASSERT_THAT(saved, IsOk());
  ASSERT_TRUE(saved->has_value());
  EXPECT_EQ((*saved)->position, 17u);
  EXPECT_EQ((*saved)->store_id, "");

  for (const char* bad : {"17 xyz", "17 0123456789abcdef 1", "17 0123"}) {
    WriteRaw(bad);
    EXPECT_THAT(ReadSavedPosition(path_),
                StatusIs(absl::StatusCode::kDataLoss, _))
        << "content: '" << bad << "'";
  }
}

}  // namespace
}  // namespace chstream::client_examples
