// File: bench/bench_util.h
//
// What the serving benchmarks share: finding and running the real chstreamd
// as a child process, reading its CPU time and memory from /proc, gRPC
// channels that each get their own TCP connection, and percentiles.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace chstream::bench {

// If `arg` is "--<name>=<value>", sets *value and returns true.
bool FlagValue(const std::string& arg, const char* name, std::string* value);

// --chstreamd, else the data dependency in the runfiles, else bazel-bin.
// Empty if none is executable.
std::string FindChstreamd(const std::string& flag, const char* argv0);

// kB from a "Key:   1234 kB" line of /proc/PID/status; -1 if absent.
int64_t ProcStatusKb(pid_t pid, const std::string& key);

// utime + stime, in seconds, from a /proc/.../stat file (a process's or one
// of its threads' /proc/self/task/TID/stat); -1 if unreadable.
double StatCpuSeconds(const std::string& stat_path);

// utime + stime of a process, in seconds, from /proc/PID/stat.
double ProcCpuSeconds(pid_t pid);

// utime + stime of this process, in seconds.
double SelfCpuSeconds();

// The q-quantile (0..1) of an ascending vector; 0 if empty.
double Percentile(const std::vector<float>& sorted, double q);

// An insecure channel with no receive size limit; distinct `index` values
// get distinct TCP connections.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           int index = 0);

// chstreamd as a child process (killed if the benchmark dies).
class Daemon {
 public:
  // Starts `binary` with `args` (and `env` added), its stdout and stderr
  // going to `log_path`, and waits until it logs "chstreamd serving".
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::vector<std::pair<std::string, std::string>>& env,
      const std::string& log_path, absl::Duration timeout);

  ~Daemon() { Stop(); }

  pid_t pid() const { return pid_; }
  const std::string& grpc_address() const { return grpc_address_; }

  // SIGTERM, then SIGKILL after 15 s. Returns the exit status (-1 if
  // killed or already stopped).
  int Stop();

 private:
  Daemon(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_;
  std::string log_path_;
  std::string grpc_address_;
};

}  // namespace chstream::bench
