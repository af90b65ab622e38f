// File: tests/testing/child_process.h
//
// A child process for tests that run a real binary (chstreamd, the C++
// subscriber example): argv, environment and working directory given, its
// stdout and stderr appended to a file, killed on destruction.
//
//   ChildProcess child("server/chstreamd", {"--db_path=x"},
//                      {"PATH=/usr/bin"}, dir, dir + "/out.log");
//   WaitUntil([&] { return absl::StrContains(child.Output(), "serving"); });
//   EXPECT_EQ(child.SignalAndWait(SIGTERM, absl::Seconds(5)), 0);
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace chstream::testing {

class ChildProcess {
 public:
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::vector<std::string>& env, const std::string& dir,
               const std::string& output_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return started_; }
  pid_t pid() const { return pid_; }
  // True while the process has not exited.
  bool Running();
  // Sends `sig` and waits up to `timeout` for the exit. Returns the exit
  // code (128 + signal if killed by one), or -1 on timeout.
  int SignalAndWait(int sig, absl::Duration timeout);
  // Waits for the exit on its own; same return values.
  int Wait(absl::Duration timeout);
  // Everything the process wrote so far.
  std::string Output() const;

 private:
  const std::string output_path_;
  pid_t pid_ = -1;
  bool started_ = false;
  int exit_code_ = -1;
};

// Polls `done` (yielding) until it returns true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout);

std::string ReadFileOrEmpty(const std::string& path);

// The first string value of `"field":"..."` in a process's JSON log output
// (e.g. the address chstreamd logged), or "".
std::string LoggedField(const std::string& output, const std::string& field);

}  // namespace chstream::testing
