// File: client_examples/cpp/resume_loop.h
//
// The loop a downstream service runs to follow chstream without losing or
// repeating events across disconnects, server restarts and its own crashes:
//
//   1. Subscribe, resuming with `after_position` = the last position it
//      processed (or from the beginning / from now the very first time).
//   2. Hand each event to an EventProcessor, in position order; skip any
//      position at or below the last one processed (defence in depth: the
//      server sends none).
//   3. Checkpoint (EventProcessor::Checkpoint) every `checkpoint_events`
//      events or `checkpoint_interval`, on caught_up, on a heartbeat or a
//      server checkpoint when something is unsaved, and when stopping.
//      caught_up, heartbeats and checkpoints also advance the cursor past
//      events the filter skipped, so that a `start = now` subscriber that
//      has seen no event yet still resumes from where it subscribed, and a
//      narrow filter catching up over a long log resumes past what the
//      server already scanned (it sends a checkpoint at least every
//      heartbeat period while catching up).
//   4. Watch the stream: if nothing arrives, not even a heartbeat, for
//      `stall_heartbeats` x `heartbeat_seconds`, cancel the call and
//      reconnect. fell_behind is logged (the server then serves this
//      subscriber from storage until it is live again; nothing is lost).
//   5. On any error, reconnect after a jittered exponential backoff (reset
//      after a call that delivered at least one message). INVALID_ARGUMENT
//      is fatal: the request (filter, heartbeat) will never be valid. So is
//      FAILED_PRECONDITION: the position belongs to another store_id (the
//      server's store was replaced, positions may have been reassigned),
//      and only the operator can choose where to start again.
//   6. Learn the server's store_id from the first message of each call
//      (stats().store_id, saved beside the position) and send it back as
//      expected_store_id when resuming.
//
// Thread-safety: Run() is called once, from one thread; Stop() and stats()
// may be called from any thread at any time (typically a signal handler
// thread calls Stop()). The EventProcessor is only called from Run()'s
// thread.
//
//   FileProcessor processor(...);
//   ResumeLoopOptions options;
//   options.address = "127.0.0.1:50051";
//   options.after_position = 1234;  // from the position file
//   ResumeLoop loop(options, &processor);
//   std::thread stopper([&] { WaitForSigterm(); loop.Stop(); });
//   absl::Status status = loop.Run();  // OK after Stop()
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "chstream/v1/chstream.grpc.pb.h"

namespace chstream::client_examples {

// Where the first Subscribe starts when no position is known yet.
enum class StartFrom { kBeginning, kNow };

// What the service does with events. Called from Run()'s thread only.
class EventProcessor {
 public:
  virtual ~EventProcessor() = default;

  // Handles one event. Positions are strictly increasing across calls,
  // reconnects included. An error stops the loop (Run() returns it).
  virtual absl::Status Process(const v1::Event& event) = 0;

  // Makes every processed event durable, then records `position` as the
  // resume cursor (everything at or below it is done). An error stops the
  // loop.
  virtual absl::Status Checkpoint(uint64_t position) = 0;
};

struct ResumeLoopOptions {
  std::string address = "127.0.0.1:50051";
  v1::EventFilter filter;
  // Used only while no position is known.
  StartFrom start = StartFrom::kNow;
  // The last position already processed: the exclusive resume cursor.
  std::optional<uint64_t> after_position;
  // The store_id after_position belongs to (sent as expected_store_id);
  // empty: unknown, learnt from the server.
  std::string expected_store_id;
  // Asked of the server; 1..3600.
  uint32_t heartbeat_seconds = 10;
  // The stream is dead after this many heartbeat periods of silence.
  int stall_heartbeats = 3;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  int checkpoint_events = 100;
  absl::Duration checkpoint_interval = absl::Seconds(1);
  // How often the stall watchdog looks at the clock (real time).
  absl::Duration watchdog_tick = absl::Milliseconds(250);
  // Time for checkpoint intervals and the stall watchdog.
  Clock* clock = Clock::Real();
  // Backoff jitter in [0, 1]; default: a random_device-seeded engine.
  std::function<double()> uniform01;
};

struct ResumeLoopStats {
  uint64_t calls = 0;       // Subscribe calls started
  uint64_t events = 0;      // events processed
  uint64_t duplicates = 0;  // events skipped (position already processed)
  uint64_t caught_up = 0;   // counted after the cursor was saved
  uint64_t fell_behind = 0;
  uint64_t heartbeats = 0;
  uint64_t server_checkpoints = 0;  // checkpoint messages received
  uint64_t stalls = 0;              // calls cancelled by the watchdog
  uint64_t failed_calls = 0;        // calls that ended other than by Stop()
  uint64_t checkpoints = 0;
  std::optional<uint64_t> checkpointed;  // the last saved position
  std::optional<uint64_t> processed;     // the last processed position
  std::string store_id;  // the server's, once a call has told it
  int last_error_code = 0;               // grpc::StatusCode of the last failure
  std::string last_error;
};

class ResumeLoop {
 public:
  // `processor` must outlive the loop.
  ResumeLoop(ResumeLoopOptions options, EventProcessor* processor);
  ~ResumeLoop();

  ResumeLoop(const ResumeLoop&) = delete;
  ResumeLoop& operator=(const ResumeLoop&) = delete;

  // Follows the stream until Stop() (returns OK after a final checkpoint)
  // or a fatal error (processor/checkpoint failure, INVALID_ARGUMENT).
  // REQUIRES: called at most once.
  absl::Status Run();

  // Ends Run(): cancels the call in flight or the backoff wait. Idempotent;
  // may come before Run().
  void Stop();

  ResumeLoopStats stats() const;

  // The store_id the cursor belongs to (as in stats().store_id), without a
  // lock. REQUIRES: called from Run()'s thread, i.e. from the
  // EventProcessor's calls (to save it beside the position).
  const std::string& store_id() const { return store_id_; }

 private:
  struct CallOutcome {
    grpc::Status status;
    bool received_any = false;
    bool stalled = false;
    absl::Status fatal;  // processor or checkpoint failure
  };

  CallOutcome RunOneCall(v1::CompanyStream::Stub* stub);
  absl::Status HandleEvent(const v1::Event& event);
  // Moves the cursor to `position` if it is ahead (caught_up, heartbeat).
  void AdvanceTo(uint64_t position);
  absl::Status Checkpoint();
  void Watchdog();
  v1::SubscribeRequest MakeRequest() const;

  const ResumeLoopOptions options_;
  EventProcessor* const processor_;
  const absl::Duration stall_timeout_;

  // Run()'s thread only.
  std::optional<uint64_t> last_;  // the cursor: processed or skipped past
  std::string store_id_;          // the store identity last_ belongs to
  bool dirty_ = false;            // last_ not yet checkpointed
  int pending_events_ = 0;        // processed since the last checkpoint
  absl::Time last_checkpoint_at_;
  bool checkpoint_failed_ = false;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool watchdog_exit_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_);
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;
  ResumeLoopStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::client_examples
