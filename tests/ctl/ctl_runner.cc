#include "tests/ctl/ctl_runner.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace chstream::testing {

CtlResult RunCtl(const std::vector<std::string>& args) {
  static int run = 0;
  const std::string dir = std::getenv("TEST_TMPDIR");
  const std::string log =
      absl::StrCat(dir, "/ctl.", ::getpid(), ".", ++run, ".log");
  ChildProcess child("ctl/chstreamctl", args, {"PATH=/usr/bin:/bin", "TZ=UTC"},
                     dir, log);
  EXPECT_TRUE(child.started());
  CtlResult r;
  r.exit_code = child.Wait(absl::Seconds(120));
  r.output = child.Output();
  return r;
}

std::string ReportField(const std::string& output, const std::string& key) {
  const std::string prefix = "\n" + key + ": ";
  const std::string text = "\n" + output;
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return "";
  const size_t from = at + prefix.size();
  return text.substr(from, text.find('\n', from) - from);
}

}  // namespace chstream::testing
