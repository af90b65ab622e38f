#include "base/thread_name.h"

#include <pthread.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace chstream {
namespace {

std::string NameOf(pthread_t thread) {
  char name[16] = {};
  pthread_getname_np(thread, name, sizeof(name));
  return name;
}

TEST(SetCurrentThreadNameTest, NamesTheCallingThreadKeepingFifteenChars) {
  std::string short_name, long_name;
  std::thread([&] {
    SetCurrentThreadName("chs-writer");
    short_name = NameOf(pthread_self());
    SetCurrentThreadName("chs-a-very-long-name");
    long_name = NameOf(pthread_self());
  }).join();
  EXPECT_EQ(short_name, "chs-writer");
  EXPECT_EQ(long_name, "chs-a-very-long");
}

}  // namespace
}  // namespace chstream
