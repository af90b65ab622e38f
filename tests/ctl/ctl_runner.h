// File: tests/ctl/ctl_runner.h
//
// Runs the real chstreamctl binary (a data dependency of the test) as a
// separate process, as an operator runs it, and reads its "key: value"
// reports. Shared by the chstreamctl tests.
//
// Thread-safety: RunCtl from one thread at a time (it numbers its logs).
//
//   CtlResult r = RunCtl({"check", "--db_path=" + db});
//   EXPECT_EQ(ReportField(r.output, "store_id"), id);
#pragma once

#include <string>
#include <vector>

namespace chstream::testing {

struct CtlResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs ctl/chstreamctl with `args` in ${TEST_TMPDIR} with only PATH and TZ
// set, waits up to 120 s for it to exit.
CtlResult RunCtl(const std::vector<std::string>& args);

// The value of the line "key: value" in `output`; "" when there is none.
std::string ReportField(const std::string& output, const std::string& key);

}  // namespace chstream::testing
