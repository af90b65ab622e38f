// subscriber: an example downstream service for chstream.
//
// Follows Subscribe with ResumeLoop (resume_loop.h) and "processes" each
// event by appending one JSON line to --output (or printing it). The resume
// cursor lives in --position_file, rewritten atomically (temp + fsync +
// rename) after every --checkpoint_events events, on caught_up and idle
// heartbeats, and on SIGINT/SIGTERM, after the output has been fdatasync'ed,
// so the position file is never ahead of the output.
//
// Exactly once across crashes: with --output, each line carries its
// position, so at start the subscriber resumes after
// max(position file, last line of --output). Events appended after the last
// saved position (a SIGKILL between the two writes) are therefore not
// appended again. Without --output (stdout) the guarantee is at-least-once:
// up to --checkpoint_events events may be printed again after a crash.
//
// Exit codes: 0 after SIGINT/SIGTERM, 1 on a fatal error (output or position
// file unwritable, request rejected as INVALID_ARGUMENT), 2 on bad flags.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "client_examples/cpp/event_log.h"
#include "client_examples/cpp/position_file.h"
#include "client_examples/cpp/resume_loop.h"
#include "client_examples/cpp/subscriber_flags.h"

namespace chstream::client_examples {
namespace {

// Appends events to the output (file or stdout); checkpoints = sync the
// output, then save the position.
class OutputProcessor final : public EventProcessor {
 public:
  // `store_id` tells the store_id the positions belong to (saved beside
  // them).
  OutputProcessor(EventLog* log, std::string position_file,
                  std::function<std::string()> store_id)
      : log_(log),
        position_file_(std::move(position_file)),
        store_id_(std::move(store_id)) {}

  absl::Status Process(const v1::Event& event) override {
    if (log_ != nullptr) return log_->Append(event);
    const std::string line = EventLog::FormatLine(event) + "\n";
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() ||
        std::fflush(stdout) != 0) {
      return absl::UnavailableError("cannot write to standard output");
    }
    return absl::OkStatus();
  }

  absl::Status Checkpoint(uint64_t position) override {
    if (log_ != nullptr) {
      absl::Status s = log_->Sync();
      if (!s.ok()) return s;
    }
    return WriteSavedPosition(position_file_,
                              {.position = position, .store_id = store_id_()});
  }

 private:
  EventLog* const log_;
  const std::string position_file_;
  const std::function<std::string()> store_id_;
};

int Run(int argc, char** argv) {
  // SIGINT/SIGTERM are taken synchronously by one thread (sigwait); block
  // them before any other thread (gRPC's included) starts. SIGUSR1 is how
  // main() wakes that thread when the loop ends on its own.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A closed stdout must be an error, not a silent death.
  signal(SIGPIPE, SIG_IGN);

  bool help = false;
  absl::StatusOr<SubscriberFlags> parsed = ParseSubscriberFlags(
      std::vector<std::string>(argv + 1, argv + argc), &help);
  if (help) {
    std::fputs(SubscriberUsage().c_str(), stdout);
    return 0;
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "subscriber: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  const SubscriberFlags& flags = *parsed;
  log::Level level;
  if (log::ParseLevel(flags.log_level, &level)) log::SetMinLevel(level);

  // Where to resume: the later of the position file and the output's last
  // line (see the file comment).
  std::unique_ptr<EventLog> output;
  if (!flags.output.empty()) {
    absl::StatusOr<std::unique_ptr<EventLog>> opened =
        EventLog::Open(flags.output);
    if (!opened.ok()) {
      log::Error("cannot open the output", {{"error", opened.status()}});
      return 1;
    }
    output = *std::move(opened);
    if (output->truncated_bytes() > 0) {
      log::Warning("cut off a torn last line of the output",
                   {{"bytes", output->truncated_bytes()}});
    }
  }
  absl::StatusOr<std::optional<SavedPosition>> saved =
      ReadSavedPosition(flags.position_file);
  if (!saved.ok()) {
    log::Error("cannot read the position file", {{"error", saved.status()}});
    return 1;
  }
  std::optional<uint64_t> after;
  if (saved->has_value()) after = (*saved)->position;
  if (output != nullptr && output->last_position().has_value() &&
      (!after.has_value() || *output->last_position() > *after)) {
    log::Info("the output is ahead of the position file; resuming after it",
              {{"saved_position", after.has_value() ? *after : 0},
               {"output_position", *output->last_position()}});
    after = output->last_position();
  }

  ResumeLoopOptions options;
  options.address = flags.address;
  for (const std::string& s : flags.streams) options.filter.add_streams(s);
  for (const std::string& c : flags.companies) {
    options.filter.add_company_numbers(c);
  }
  options.start = flags.start;
  options.after_position = after;
  if (saved->has_value()) options.expected_store_id = (*saved)->store_id;
  options.heartbeat_seconds = flags.heartbeat_seconds;
  options.checkpoint_events = flags.checkpoint_events;
  options.checkpoint_interval = flags.checkpoint_interval;
  log::Info("subscriber starting",
            {{"address", flags.address},
             {"position_file", flags.position_file},
             {"output", flags.output.empty() ? "-" : flags.output},
             {"streams", absl::StrJoin(flags.streams, ",")},
             {"company", absl::StrJoin(flags.companies, ",")}});

  ResumeLoop* loop_ptr = nullptr;  // set below; read on Run()'s thread only
  OutputProcessor processor(output.get(), flags.position_file,
                            [&loop_ptr] { return loop_ptr->store_id(); });
  ResumeLoop loop(options, &processor);
  loop_ptr = &loop;
  std::atomic<bool> loop_done{false};
  std::thread signal_thread([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGUSR1) {
        if (loop_done.load()) return;
        continue;  // not ours
      }
      log::Info("signal received; stopping", {{"signal", sig}});
      loop.Stop();
      return;
    }
  });

  const absl::Status status = loop.Run();
  loop_done.store(true);
  // Wakes the signal thread if no signal came (harmless if one did: the
  // signal stays pending, blocked, until exit).
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();

  const ResumeLoopStats stats = loop.stats();
  if (!status.ok()) {
    log::Error("subscriber failed", {{"error", status}});
    if (absl::IsFailedPrecondition(status)) {
      log::Error(
          "the server's store was replaced since the position file was "
          "written: positions may now mean other events. Choose where to "
          "start again: remove the position file (and the --output file, "
          "whose last line is also a resume point) and run with "
          "--start=beginning (or --start=now)",
          {{"position_file", flags.position_file}});
    }
    return 1;
  }
  log::Info(
      "subscriber stopped",
      {{"position", stats.checkpointed.has_value() ? *stats.checkpointed : 0},
       {"events", stats.events},
       {"calls", stats.calls}});
  return 0;
}

}  // namespace
}  // namespace chstream::client_examples

int main(int argc, char** argv) {
  return chstream::client_examples::Run(argc, argv);
}
