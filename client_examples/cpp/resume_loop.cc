#include "client_examples/cpp/resume_loop.h"

#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "client_examples/cpp/backoff.h"

namespace chstream::client_examples {
namespace {

std::function<double()> DefaultUniform01() {
  auto engine = std::make_shared<std::mt19937_64>(std::random_device()());
  return [engine] {
    return std::uniform_real_distribution<double>(0.0, 1.0)(*engine);
  };
}

int Millis(absl::Duration d) {
  return static_cast<int>(absl::ToInt64Milliseconds(d));
}

std::shared_ptr<grpc::Channel> MakeChannel(const ResumeLoopOptions& o) {
  grpc::ChannelArguments args;
  // Keepalive: ping after 30 s without traffic, give up on the connection
  // 10 s later. chstreamd accepts pings every 10 s or more. A server-stream
  // client sends no data frames after its request, so the default limit of
  // 2 pings without data would silence keepalive: lift it.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // The channel's own reconnect backoff: no slower than ours, or a server
  // that came back would stay unreachable until the channel's timer fired.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, Millis(o.initial_backoff));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, Millis(o.initial_backoff));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Millis(o.max_backoff));
  return grpc::CreateCustomChannel(o.address,
                                   grpc::InsecureChannelCredentials(), args);
}

// gRPC and absl share the canonical code numbers.
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

ResumeLoop::ResumeLoop(ResumeLoopOptions options, EventProcessor* processor)
    : options_(std::move(options)),
      processor_(processor),
      stall_timeout_(absl::Seconds(options_.heartbeat_seconds) *
                     options_.stall_heartbeats),
      last_(options_.after_position),
      store_id_(options_.expected_store_id) {
  absl::MutexLock lock(&mu_);
  stats_.store_id = store_id_;
  stats_.processed = last_;
  stats_.checkpointed = last_;
}

ResumeLoop::~ResumeLoop() = default;

void ResumeLoop::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  // Safe before the call has started: gRPC cancels it as it starts.
  if (call_ != nullptr) call_->TryCancel();
}

ResumeLoopStats ResumeLoop::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status ResumeLoop::Run() {
  std::shared_ptr<grpc::Channel> channel = MakeChannel(options_);
  std::unique_ptr<v1::CompanyStream::Stub> stub =
      v1::CompanyStream::NewStub(channel);
  Backoff backoff(options_.initial_backoff, options_.max_backoff,
                  options_.uniform01 ? options_.uniform01 : DefaultUniform01());
  last_checkpoint_at_ = options_.clock->Now();
  std::thread watchdog([this] { Watchdog(); });

  absl::Status result;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    CallOutcome call = RunOneCall(stub.get());
    if (!call.fatal.ok()) {
      result = call.fatal;
      break;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      ++stats_.failed_calls;
      stats_.last_error_code = static_cast<int>(call.status.error_code());
      stats_.last_error = call.status.error_message();
    }
    if (call.received_any) backoff.Reset();
    const std::string code = CodeName(call.status.error_code());
    if (call.stalled) {
      log::Warning("stream silent (no event, no heartbeat); reconnecting",
                   {{"silent_for", stall_timeout_}});
    } else if (call.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      log::Error("subscribe request rejected",
                 {{"code", code}, {"error", call.status.error_message()}});
      result = absl::InvalidArgumentError(call.status.error_message());
      break;
    } else if (call.status.error_code() ==
               grpc::StatusCode::FAILED_PRECONDITION) {
      log::Error("the saved position belongs to another store_id",
                 {{"code", code}, {"error", call.status.error_message()}});
      result = absl::FailedPreconditionError(call.status.error_message());
      break;
    } else {
      log::Warning("subscribe call ended",
                   {{"code", code}, {"error", call.status.error_message()}});
    }
    const absl::Duration delay = backoff.Next();
    log::Info("reconnecting", {{"in", delay}, {"attempt", backoff.attempts()}});
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  }

  // Save what was processed, also after a processor failure (everything
  // before the failing event is done). Not after a failed checkpoint.
  if (dirty_ && !checkpoint_failed_) {
    absl::Status s = Checkpoint();
    if (!s.ok() && result.ok()) result = s;
  }
  {
    absl::MutexLock lock(&mu_);
    watchdog_exit_ = true;
  }
  watchdog.join();
  return result;
}

v1::SubscribeRequest ResumeLoop::MakeRequest() const {
  v1::SubscribeRequest req;
  *req.mutable_filter() = options_.filter;
  req.set_heartbeat_seconds(options_.heartbeat_seconds);
  if (last_.has_value()) {
    // A position means something only under its store_id.
    req.set_expected_store_id(store_id_);
    req.mutable_start()->set_after_position(*last_);
  } else if (options_.start == StartFrom::kBeginning) {
    req.mutable_start()->set_beginning(true);
  } else {
    req.mutable_start()->set_now(true);
  }
  return req;
}

ResumeLoop::CallOutcome ResumeLoop::RunOneCall(v1::CompanyStream::Stub* stub) {
  CallOutcome out;
  grpc::ClientContext ctx;
  const v1::SubscribeRequest req = MakeRequest();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return out;
    call_ = &ctx;
    last_activity_ = options_.clock->Now();
    stalled_ = false;
    ++stats_.calls;
  }
  if (last_.has_value()) {
    log::Info("subscribing", {{"after_position", *last_}});
  } else {
    log::Info("subscribing",
              {{"start", options_.start == StartFrom::kBeginning ? "beginning"
                                                                 : "now"}});
  }
  std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> reader =
      stub->Subscribe(&ctx, req);
  v1::SubscribeResponse msg;
  while (out.fatal.ok() && reader->Read(&msg)) {
    const absl::Time now = options_.clock->Now();
    {
      absl::MutexLock lock(&mu_);
      last_activity_ = now;
    }
    out.received_any = true;
    if (!msg.store_id().empty() && msg.store_id() != store_id_) {
      store_id_ = msg.store_id();  // what the positions that follow mean
      absl::MutexLock lock(&mu_);
      stats_.store_id = store_id_;
    }
    switch (msg.message_case()) {
      case v1::SubscribeResponse::kEvent:
        out.fatal = HandleEvent(msg.event());
        break;
      case v1::SubscribeResponse::kCaughtUp: {
        const uint64_t p = msg.caught_up().position();
        log::Info("caught up; live from here", {{"position", p}});
        AdvanceTo(p);
        // Always saved: a `start = now` subscriber has no other record of
        // where it started.
        out.fatal = Checkpoint();
        absl::MutexLock lock(&mu_);
        ++stats_.caught_up;  // counted once handled
        break;
      }
      case v1::SubscribeResponse::kFellBehind:
        log::Warning(
            "fell behind the live stream; the server replays from storage",
            {{"position", msg.fell_behind().position()},
             {"head_position", msg.fell_behind().head_position()}});
        {
          absl::MutexLock lock(&mu_);
          ++stats_.fell_behind;
        }
        break;
      case v1::SubscribeResponse::kHeartbeat: {
        absl::MutexLock lock(&mu_);
        ++stats_.heartbeats;
      }
        AdvanceTo(msg.heartbeat().last_position());
        // Idle: a good moment to save what is unsaved.
        out.fatal = Checkpoint();
        break;
      case v1::SubscribeResponse::kCheckpoint: {
        // Catching up with a filter: everything matching up to here was
        // sent. Save it, so that a reconnect resumes past what the server
        // already scanned instead of scanning it again.
        {
          absl::MutexLock lock(&mu_);
          ++stats_.server_checkpoints;
        }
        AdvanceTo(msg.checkpoint().position());
        out.fatal = Checkpoint();
        break;
      }
      case v1::SubscribeResponse::MESSAGE_NOT_SET:
        break;  // a newer server's message kind: ignore
    }
    if (out.fatal.ok() && dirty_ &&
        now - last_checkpoint_at_ >= options_.checkpoint_interval) {
      out.fatal = Checkpoint();
    }
  }
  if (!out.fatal.ok()) ctx.TryCancel();
  out.status = reader->Finish();
  absl::MutexLock lock(&mu_);
  call_ = nullptr;
  out.stalled = stalled_;
  return out;
}

absl::Status ResumeLoop::HandleEvent(const v1::Event& event) {
  const uint64_t position = event.position();
  if (last_.has_value() && position <= *last_) {
    absl::MutexLock lock(&mu_);
    ++stats_.duplicates;
    return absl::OkStatus();
  }
  absl::Status s = processor_->Process(event);
  if (!s.ok()) {
    log::Error("cannot process event", {{"position", position}, {"error", s}});
    return s;
  }
  last_ = position;
  dirty_ = true;
  ++pending_events_;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.events;
    stats_.processed = position;
  }
  if (pending_events_ >= options_.checkpoint_events) return Checkpoint();
  return absl::OkStatus();
}

void ResumeLoop::AdvanceTo(uint64_t position) {
  if (last_.has_value() && position <= *last_) return;
  last_ = position;
  dirty_ = true;
  absl::MutexLock lock(&mu_);
  stats_.processed = position;
}

absl::Status ResumeLoop::Checkpoint() {
  if (!dirty_ || !last_.has_value()) return absl::OkStatus();
  absl::Status s = processor_->Checkpoint(*last_);
  if (!s.ok()) {
    log::Error("cannot save the position",
               {{"position", *last_}, {"error", s}});
    checkpoint_failed_ = true;  // Run() does not try again on the way out
    return s;
  }
  dirty_ = false;
  pending_events_ = 0;
  last_checkpoint_at_ = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  ++stats_.checkpoints;
  stats_.checkpointed = last_;
  return absl::OkStatus();
}

void ResumeLoop::Watchdog() {
  absl::MutexLock lock(&mu_);
  while (!watchdog_exit_) {
    if (call_ != nullptr && !stalled_ &&
        options_.clock->Now() - last_activity_ >= stall_timeout_) {
      stalled_ = true;
      ++stats_.stalls;
      call_->TryCancel();
    }
    mu_.AwaitWithTimeout(absl::Condition(&watchdog_exit_),
                         options_.watchdog_tick);
  }
}

}  // namespace chstream::client_examples
