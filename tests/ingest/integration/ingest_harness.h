// File: tests/ingest/integration/ingest_harness.h
//
// Shared pieces of the ingest integration tests: the real pipeline as
// chstreamd wires it (Ingester -> WriterSink -> EventWriter -> Store over an
// SQLite file in TEST_TMPDIR), test-speed reconnect policies, an in-process
// Simulator with test defaults, comparison of what was stored against the
// simulator's own log, and a capture of the structured log lines (request
// targets, attempt times, outcomes).
//
// Waiting: commits are waited for on a condition signalled by the writer's
// commit callback; stream status (which has no notification) is polled with
// a 1 ms pause under a deadline. Nothing sleeps for a fixed time to let
// something happen.
//
// Thread-safety: Pipeline's Wait* and Status() may be called from any
// thread; Start/StopIngester and Close from the test thread. LogCapture is
// thread-safe; at most one may exist at a time (it owns the process's log
// sink).
//
//   ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(SimOptions(300)));
//   ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
//   ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {"companies"})));
//   ASSERT_TRUE(RunToCompletion(*sim, *pipeline, "companies"));
//   EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), "companies",
//                               sim->Log("companies")));
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ingest/ingester.h"
#include "ingest/reconnect_policy.h"
#include "ingest/simulator/simulator.h"
#include "ingest/stream_status.h"
#include "ingest/writer_sink.h"
#include "storage/event.h"
#include "storage/event_writer.h"
#include "storage/store.h"

namespace chstream::ingest::testing {

// The simulator key the clients use.
inline constexpr char kKey[] = "it-key";

// Every delay of the reconnect policy shrunk to milliseconds: errors back off
// from 10 ms (cap 100 ms), 429s wait 100-200 ms, clean ends reconnect after
// 5-20 ms, a connection is healthy after 30 s (so short ones count as
// failures), the breaker opens after 1000 failures (effectively never; tests
// of the breaker lower it) with a 100 ms cooldown, and a 401 waits an hour.
ReconnectPolicy::Options FastPolicy();

// A simulator producing only `stream`, with `initial` events pre-generated
// (replayable at once) and live events at `rate` per second up to `total`;
// heartbeats every 25 ms; every event retained; one key, kKey.
sim::Options SimOptions(int64_t total, int64_t initial, double rate = 0,
                        std::string_view stream = "companies");

// Ingester options for `streams` of `sim` with FastPolicy() and kKey, each
// stream starting at its first retained event (so an empty store receives
// the whole log), a 5 s idle timeout and 5 s connect/header timeouts.
IngesterOptions ClientOptions(const sim::Simulator& sim,
                              const std::vector<std::string>& streams);

// A fresh path under TEST_TMPDIR named after the running test and `suffix`.
std::string TestDbPath(std::string_view suffix = "");

// Writes `contents` to a fresh file under TEST_TMPDIR; returns its path.
std::string WriteTestFile(std::string_view name, std::string_view contents);

// Polls `predicate` every millisecond until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout);

// The chstreamd pipeline around one SQLite file.
class Pipeline {
 public:
  static absl::StatusOr<std::unique_ptr<Pipeline>> Open(
      const std::string& path,
      storage::EventWriter::Options writer_options = DefaultWriterOptions());
  ~Pipeline();  // Close()

  static storage::EventWriter::Options DefaultWriterOptions();

  storage::Store* store() { return store_.get(); }
  storage::EventWriter* writer() { return writer_.get(); }
  Ingester* ingester() { return ingester_.get(); }

  // Starts an Ingester from the store's LoadStreamStates(), or from
  // `states`. At most one runs at a time.
  absl::Status StartIngester(IngesterOptions options);
  absl::Status StartIngester(IngesterOptions options,
                             std::vector<storage::StreamState> states);
  // Stops the ingester and waits until everything it handed to the writer is
  // committed. The last snapshot stays available through Status().
  void StopIngester();
  // StopIngester(), then stops the writer and closes the store.
  void Close();

  // The ingester's snapshot of `stream` (the last one taken at
  // StopIngester() once stopped).
  StreamStatusSnapshot Status(std::string_view stream) const;
  // Polls Status(stream) until `predicate` holds.
  bool WaitForStatus(
      std::string_view stream,
      const std::function<bool(const StreamStatusSnapshot&)>& predicate,
      absl::Duration timeout) const;
  // Blocks until `stream`'s committed timepoint is >= `timepoint`.
  bool WaitForTimepoint(std::string_view stream, int64_t timepoint,
                        absl::Duration timeout) const;
  // Blocks until at least `events` events were committed through this
  // pipeline.
  bool WaitForCommittedEvents(uint64_t events, absl::Duration timeout) const;

  uint64_t committed_events() const;

 private:
  Pipeline() = default;
  void OnCommit(const storage::CommitResult& result);

  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::EventWriter> writer_;
  std::unique_ptr<WriterSink> sink_;
  std::unique_ptr<Ingester> ingester_;

  mutable absl::Mutex mu_;
  Ingester* live_ingester_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, int64_t, std::less<>> committed_timepoints_
      ABSL_GUARDED_BY(mu_);
  uint64_t committed_events_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<StreamStatusSnapshot> final_status_ ABSL_GUARDED_BY(mu_);
};

// Waits until `sim` has generated all `total` events of `stream`, then until
// the pipeline has committed the last of them and the stream has counted a
// heartbeat. Returns false (with a gtest failure naming what was missing) on
// a timeout.
bool RunToCompletion(const sim::Simulator& sim, const Pipeline& pipeline,
                     std::string_view stream, int64_t total,
                     absl::Duration timeout = absl::Seconds(20));

// Every stored event, in position order (reads the whole store).
absl::StatusOr<std::vector<storage::Event>> ReadAllEvents(
    storage::Store& store);

// The events of `stream` among `all`, in order.
std::vector<storage::Event> EventsOf(const std::vector<storage::Event>& all,
                                     std::string_view stream);

// Success if `stored` (one stream's events, position order) is exactly `log`:
// same length, and event by event the same timepoint and the fields the
// EventParser makes of the simulator's line (type, resource kind/id/uri,
// company number, published_at, fields_changed, data_json, data_pb), with
// data_json also found verbatim as the line's "data" object. Reports the
// first few differences.
::testing::AssertionResult EventsMatchLog(
    const std::vector<storage::Event>& stored, std::string_view stream,
    const std::vector<sim::Simulator::LogEntry>& log);

// Success if the positions of `all` are exactly 1..all.size() in order.
::testing::AssertionResult PositionsAreDense(
    const std::vector<storage::Event>& all);

// Reads the store and checks that it holds exactly `log` for `stream` and
// nothing else, at positions 1..N.
::testing::AssertionResult StoreMatchesLog(
    storage::Store& store, std::string_view stream,
    const std::vector<sim::Simulator::LogEntry>& log);

// Captures the process's structured log lines while it exists (and still
// copies them to stderr).
class LogCapture {
 public:
  struct Line {
    absl::Time at;     // when it was written (real clock)
    std::string json;  // the whole line
  };

  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<Line> Lines() const;
  // Lines whose "msg" is `msg` and whose "stream" field is `stream`.
  std::vector<Line> Find(std::string_view msg, std::string_view stream) const;
  // The request targets of `stream`'s connection attempts, in order
  // ("/companies?timepoint=82000123").
  std::vector<std::string> Targets(std::string_view stream) const;
  // When each connection attempt of `stream` started.
  std::vector<absl::Time> AttemptTimes(std::string_view stream) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Line> lines_ ABSL_GUARDED_BY(mu_);
};

// The value of a top-level string field of a JSON log line ("" if absent).
std::string JsonStringField(std::string_view line, std::string_view key);
// The value of a top-level number field (nullopt if absent).
std::optional<double> JsonNumberField(std::string_view line,
                                      std::string_view key);

}  // namespace chstream::ingest::testing
