// File: bench/bench_util.h
//
// What the benchmarks share: flag parsing, finding and running the real
// chstreamd as a child process, reading CPU time and memory from /proc, gRPC
// channels that each get their own TCP connection, a Subscribe client that
// decodes only what it measures, realistic company-profile events, and
// percentiles.
#pragma once

#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.pb.h"
#include "storage/event.h"

namespace chstream::bench {

// If `arg` is "--<name>=<value>", sets *value and returns true.
bool FlagValue(const std::string& arg, const char* name, std::string* value);

// The flags of the live fan-out benchmarks (fanout_bench,
// follower_fanout_bench).
struct FanoutFlags {
  int subscribers = 100;
  int channels = 4;
  int seconds = 30;
  int warmup_seconds = 3;
  double rate = 200;  // events/s
};
// If `arg` is one of FanoutFlags' flags, parses it into *flags, sets *ok
// (false: a bad value) and returns true.
bool ParseFanoutFlag(const std::string& arg, FanoutFlags* flags, bool* ok);

// --chstreamd, else the data dependency in the runfiles, else bazel-bin.
// Empty if none is executable.
std::string FindChstreamd(const std::string& flag, const char* argv0);

// What a benchmark that runs its own chstreamd needs first: the binary
// (FindChstreamd) and a new private directory "<parent>/chstream-<name>-XXXXXX"
// for its database and logs.
struct ChstreamdBench {
  std::string binary;
  std::string dir;
};
// On failure prints why and sets *exit_code (2: no chstreamd, 1: no
// directory).
std::optional<ChstreamdBench> SetUpChstreamdBench(
    const std::string& chstreamd_flag, const char* argv0,
    const std::string& parent, const std::string& name, int* exit_code);

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

// A loopback TCP port below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range) that could be bound just now. A benchmark
// that restarts chstreamd on the same port needs one: on an ephemeral port,
// a client reconnecting while nothing listens can be given that same port
// as its own source port (TCP self-connect) and then holds it, so the
// restart fails with "Address already in use" (seen in a 30-minute soak).
absl::StatusOr<int> PortBelowEphemeralRange();

// An insecure channel with no receive size limit; distinct `index` values
// get distinct TCP connections.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           int index = 0);

// What one Subscribe call of a benchmark saw (the reactors derive from it).
// Callbacks of one reactor are serialised by gRPC; the driver reads the samples
// only after WaitDone().
class BenchSubscriber {
 public:
  // Latencies are kept for events received in [measure_from, measure_until).
  BenchSubscriber(absl::Time measure_from, absl::Time measure_until)
      : measure_from_(measure_from), measure_until_(measure_until) {}
  virtual ~BenchSubscriber() = default;

  virtual void Cancel() = 0;
  bool caught_up() const { return caught_up_.load(std::memory_order_acquire); }
  bool WaitDone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
  }

  // Valid after WaitDone() returned true.
  const std::vector<float>& latencies_ms() const { return latencies_ms_; }
  // Any time (events delivered so far).
  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  uint64_t fell_behind() const { return fell_behind_; }
  uint64_t out_of_order() const { return out_of_order_; }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 protected:
  // An event, with the time chstreamd read it (Event.received_at).
  void RecordEvent(uint64_t position, absl::Time received_at) {
    const absl::Time now = absl::Now();
    if (position <= last_position_) ++out_of_order_;
    last_position_ = position;
    events_.fetch_add(1, std::memory_order_relaxed);
    if (now >= measure_from_ && now < measure_until_) {
      latencies_ms_.push_back(
          static_cast<float>(absl::ToDoubleMilliseconds(now - received_at)));
    }
  }
  void RecordCaughtUp() { caught_up_.store(true, std::memory_order_release); }
  // Records an event, caught_up or fell_behind; ignores the rest.
  void RecordResponse(const v1::SubscribeResponse& response);
  void RecordFellBehind() { ++fell_behind_; }
  void RecordDone(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  const absl::Time measure_from_;
  const absl::Time measure_until_;
  std::atomic<bool> caught_up_{false};
  uint64_t last_position_ = 0;
  std::atomic<uint64_t> events_{0};
  uint64_t fell_behind_ = 0;
  uint64_t out_of_order_ = 0;
  std::vector<float> latencies_ms_;
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// A google.protobuf.Timestamp's fields as an absl::Time.
inline absl::Time FromTimestamp(int64_t seconds, int32_t nanos) {
  return absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
}

// A company number for event i: a scrambled walk over `companies` numbers
// (8 digits).
std::string CompanyNumber(int64_t i, int64_t companies);

// A realistic ~1.2 KB company-profile data object for `number`.
std::string CompanyDataJson(const std::string& number, int64_t i);

// Event i of the companies stream (timepoint 47,000,000 + i): a
// company-profile of CompanyNumber(i, companies) with CompanyDataJson, a
// ~1.3 KB stand-in for its Struct encoding, the typed company fields, and
// published_at = received_at = `now`.
storage::Event CompanyProfileEvent(int64_t i, int64_t companies,
                                   absl::Time now);

// A Subscribe call (start: now, no filter) made with the generic
// (ByteBuffer) API that decodes only the fields it measures
// (SubscribeResponse.event.position and .received_at, and which oneof case
// arrived), so that the figure is the server's, not the cost of building
// google.protobuf.Struct objects in the benchmark.
class RawSubscriber final
    : public BenchSubscriber,
      public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawSubscriber(grpc::GenericStub* stub, absl::Time measure_from,
                absl::Time measure_until);

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override { RecordDone(status); }
  void Cancel() override { ctx_.TryCancel(); }

 private:
  using Input = google::protobuf::io::CodedInputStream;
  void Decode(const std::string& bytes);
  void DecodeEvent(Input* in);

  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::string bytes_;
};

// What the subscribers of a fan-out run saw, after each one's WaitDone.
struct FanoutTally {
  std::vector<float> latencies_ms;  // all subscribers', ascending
  uint64_t min_events = 0;
  uint64_t max_events = 0;
  uint64_t fell_behind = 0;
  uint64_t out_of_order = 0;
  uint64_t errors = 0;  // calls that ended other than CANCELLED
};
FanoutTally TallySubscribers(
    const std::vector<std::unique_ptr<BenchSubscriber>>& subs);
// "<what> latency over N deliveries in W s: p50 ..., p90, p99, p99.9, max".
void PrintLatencies(const char* what, const FanoutTally& tally,
                    double window_seconds);

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
