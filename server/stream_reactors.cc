#include "server/stream_reactors.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "server/proto_convert.h"
#include "server/status_conversion.h"

namespace chstream::server {
namespace {

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kDefaultHeartbeatSeconds = 10;
constexpr uint32_t kMaxHeartbeatSeconds = 3600;

// A reactor that only reports an error.
template <typename T>
class ErrorReactor final : public grpc::ServerWriteReactor<T> {
 public:
  explicit ErrorReactor(const absl::Status& status) {
    this->Finish(ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

}  // namespace

// What the two streaming reactors share: a reference count held by gRPC
// (until OnDone) and by pending executor tasks; one write in flight; and a
// Pump() that, under the lock, asks the subclass for the next step (write a
// message, read a page on the executor, finish) and then performs it outside
// the lock (gRPC may run reactions inline).
template <typename Response>
class StreamWriter : public grpc::ServerWriteReactor<Response>,
                     public TickedStream {
 public:
  void Ref() override { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() override {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  void Tick() override { Pump(); }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) broken_ = true;
      wrote_once_ = true;
    }
    Pump();
  }
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    Pump();
  }
  void OnDone() final {
    {
      // After this, call_ is gone: CancelCall() must not touch it.
      absl::MutexLock lock(&call_mu_);
      call_done_ = true;
    }
    bool draining;
    {
      absl::MutexLock lock(&mu_);
      draining = draining_;
    }
    if (draining) registry_->RemoveDraining(this);
    OnCallDone();
    Unref();
  }

 protected:
  enum class Action { kNothing, kWrite, kRead, kFinish };

  StreamWriter(const StreamContext& ctx, SubscriberRegistry* registry,
               grpc::CallbackServerContext* call)
      : executor_(ctx.executor),
        read_executor_(ctx.read_executor != nullptr ? ctx.read_executor
                                                    : ctx.executor),
        clock_(ctx.clock),
        write_timeout_(ctx.write_timeout),
        before_start_write_(ctx.before_start_write),
        registry_(registry),
        store_id_(ctx.store->store_id()),
        call_(call) {}
  virtual ~StreamWriter() = default;

  // The next step. kWrite: msg_ is filled. kFinish: *status is set.
  virtual Action Next(absl::Time now, grpc::Status* status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // After a kWrite: is another message certain to be written right after
  // this one (without waiting for storage or a commit)?
  virtual bool MoreReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty();
  }
  // After a kWrite: read the next page now, while the queued messages are
  // written? Storage and gRPC then run side by side (on two cores) instead
  // of taking turns. At most one read is in flight either way.
  virtual bool ReadAhead() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return false;
  }
  // Reads the next page of storage (on the read executor).
  virtual void ReadPage() = 0;
  // Called once, just before Finish(): release slots and queues here.
  virtual void OnFinishing() {}
  // Called once from OnDone, before the last Unref.
  virtual void OnCallDone() {}
  // Why a stuck write ends the call, and where the client resumes.
  virtual std::string StalledMessage() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  // The decisions every stream makes first; true if one was made.
  bool Settled(Action* action, grpc::Status* status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ && !write_stalled_) {
      *action = Action::kNothing;
    } else if (!error_.ok()) {
      // Before broken_: a stalled write's reason wins over the cancellation
      // it may cause.
      *action = Action::kFinish;
      *status = ToGrpcStatus(error_);
    } else if (broken_) {
      *action = Action::kFinish;
      *status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (!started_) {
      *action = Action::kNothing;  // waiting for the start point
    } else {
      return false;
    }
    return true;
  }

  // Runs `fn` on the live executor, keeping this reactor alive meanwhile.
  void PostTask(std::function<void()> fn) { PostOn(executor_, std::move(fn)); }
  // The same on the read executor (anything that reads storage).
  void PostRead(std::function<void()> fn) {
    PostOn(read_executor_, std::move(fn));
  }

  void Pump() {
    Ref();
    Action action = Action::kNothing;
    grpc::Status status;
    grpc::WriteOptions options;
    bool cancel = false;
    bool drain = false;
    bool read_ahead = false;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = clock_->Now();
      if (finished_) {
        // Finished with a write still pending: once the grace is over, the
        // client is not going to read it; reset the stream.
        cancel = writing_ && !cancel_requested_ &&
                 now - finished_at_ >= kCancelGrace;
        cancel_requested_ |= cancel;
      } else {
        if (writing_ && !write_stalled_ &&
            write_timeout_ > absl::ZeroDuration() &&
            now - write_started_at_ >= write_timeout_) {
          write_stalled_ = true;
          error_ = absl::ResourceExhaustedError(StalledMessage());
        }
        action = Next(now, &status);
      }
      if (action == Action::kFinish && in_start_write_) {
        // Finish must not run concurrently with StartWrite (both send the
        // initial metadata): the thread in StartWrite pumps again after it.
        pump_after_write_call_ = true;
        action = Action::kNothing;
      }
      if (action == Action::kWrite) {
        writing_ = true;
        in_start_write_ = true;
        write_started_at_ = now;
        // While more messages follow at once, let gRPC buffer this one
        // (up to its 64 KiB per-stream write buffer) instead of one
        // sendmsg per message: the write completes as soon as it is
        // buffered, and the last message of a run, sent without the hint,
        // flushes them all. Never on the first write: it also carries the
        // initial metadata, which the hint would hold back.
        if (wrote_once_ && MoreReady()) options.set_buffer_hint();
        // The store_id goes on the first message of the call.
        if (!wrote_once_) msg_.set_store_id(store_id_);
        read_ahead = !reading_ && ReadAhead();
        reading_ |= read_ahead;
      }
      if (action == Action::kRead) reading_ = true;
      if (action == Action::kFinish) {
        finished_ = true;
        finished_at_ = now;
        drain = writing_;
        draining_ = drain;
      }
    }
    switch (action) {
      case Action::kWrite: {
        if (read_ahead) PostRead([this] { ReadPage(); });
        if (before_start_write_) before_start_write_();
        this->StartWrite(&msg_, options);
        bool again;
        {
          absl::MutexLock lock(&mu_);
          in_start_write_ = false;
          again = std::exchange(pump_after_write_call_, false);
        }
        if (again) Pump();
        break;
      }
      case Action::kRead:
        PostRead([this] { ReadPage(); });
        break;
      case Action::kFinish:
        // Before OnFinishing, which takes it out of the subscribers, so that
        // it is never in neither list (GetStatus and tests count both); and
        // before Finish: OnDone (which removes it) can only follow Finish.
        if (drain) registry_->AddDraining(this);
        OnFinishing();
        this->Finish(status);
        break;
      case Action::kNothing:
        break;
    }
    if (cancel) CancelCall();
    Unref();
  }

  Executor* const executor_;
  Executor* const read_executor_;
  Clock* const clock_;
  const absl::Duration write_timeout_;
  const std::function<void()> before_start_write_;
  SubscriberRegistry* const registry_;
  const std::string store_id_;
  Response msg_;  // lent to gRPC until OnWriteDone
  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool wrote_once_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  // Events read from storage, sent before anything else.
  std::deque<storage::Event> pending_ ABSL_GUARDED_BY(mu_);

 private:
  void PostOn(Executor* executor, std::function<void()> fn) {
    Ref();
    executor->Post([this, fn = std::move(fn)] {
      fn();
      Unref();
    });
  }

  // Resets the stream of a finished call whose last write never completed.
  // call_mu_ keeps OnDone (after which the context is freed) from running
  // meanwhile; gRPC runs OnDone on its own threads, never inside TryCancel.
  void CancelCall() {
    absl::MutexLock lock(&call_mu_);
    if (call_done_ || call_ == nullptr) return;
    log::Warning("resetting a finished stream whose client does not read",
                 {{"peer", call_->peer()}});
    call_->TryCancel();
  }

  std::atomic<int> refs_{1};
  bool in_start_write_ ABSL_GUARDED_BY(mu_) = false;
  bool pump_after_write_call_ ABSL_GUARDED_BY(mu_) = false;
  bool write_stalled_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time write_started_at_ ABSL_GUARDED_BY(mu_);
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  absl::Mutex call_mu_;
  grpc::CallbackServerContext* const call_ ABSL_GUARDED_BY(call_mu_);
  bool call_done_ ABSL_GUARDED_BY(call_mu_) = false;
};

namespace {

std::string RangeText(uint64_t oldest, uint64_t head) {
  const uint64_t floor = oldest == 0 ? 0 : oldest - 1;
  return absl::StrCat("valid after_position range is [", floor, ", ", head,
                      "]");
}

// ---------------------------------------------------------------------------
// ReplayEvents

class ReplayReactor final : public StreamWriter<v1::Event> {
 public:
  ReplayReactor(const StreamContext& ctx, SubscriberRegistry* registry,
                grpc::CallbackServerContext* call,
                const v1::ReplayEventsRequest& req, storage::Filter filter)
      : StreamWriter(ctx, registry, call),
        ctx_(ctx),
        request_(req),
        filter_(std::move(filter)),
        remaining_(req.limit() == 0 ? kNoLimit : req.limit()) {
    registered_.store(true);
    if (!registry_->AddReplay(this)) {
      registered_.store(false);
      absl::MutexLock lock(&mu_);
      error_ = absl::ResourceExhaustedError(
          absl::StrCat("too many concurrent ReplayEvents calls (--max_replays=",
                       registry_->max_replays(),
                       ") or the server is shutting down; retry later"));
      started_ = true;
    } else {
      PostRead([this] { Start(); });
    }
    Pump();
  }

 private:
  void OnFinishing() override {
    if (registered_.exchange(false)) registry_->RemoveReplay(this);
  }

  std::string StalledMessage() const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::StrCat(
        "no write to this ReplayEvents call completed within "
        "--subscriber_write_timeout=",
        absl::FormatDuration(write_timeout_),
        " (the client stopped reading); last position sent ", last_sent_,
        "; resume with after_position");
  }

  void Start() {
    const uint64_t head = ctx_.store->HeadPosition();
    absl::StatusOr<uint64_t> after =
        ResolveStart(ctx_.store, request_.start(), request_.has_start(),
                     /*allow_now=*/false, head);
    {
      absl::MutexLock lock(&mu_);
      if (!after.ok()) {
        error_ = after.status();
      } else {
        after_ = *after;
        last_sent_ = after_;
        up_to_ = head;
        exhausted_ = after_ >= up_to_ || remaining_ == 0;
      }
      started_ = true;
    }
    Pump();
  }

  void ReadPage() override {
    uint64_t after, up_to, remaining;
    {
      absl::MutexLock lock(&mu_);
      after = after_;
      up_to = up_to_;
      remaining = remaining_;
    }
    if (ctx_.pages_read != nullptr) ctx_.pages_read->fetch_add(1);
    absl::StatusOr<storage::Page> page = ctx_.store->ReadPage(
        after, up_to, filter_,
        static_cast<size_t>(std::min<uint64_t>(ctx_.page_size, remaining)),
        ctx_.max_scan);
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!page.ok()) {
        error_ = page.status();
      } else {
        for (storage::Event& e : page->events) pending_.push_back(std::move(e));
        remaining_ -= page->events.size();
        const bool progressed = page->scanned_through > after_;
        after_ = std::max(after_, page->scanned_through);
        if (!progressed || after_ >= up_to_ || remaining_ == 0) {
          exhausted_ = true;
        }
      }
    }
    Pump();
  }

  Action Next(absl::Time /*now*/, grpc::Status* status) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (Settled(&action, status)) return action;
    if (!pending_.empty()) {
      ToProto(std::move(pending_.front()), &msg_);
      last_sent_ = pending_.front().position;
      pending_.pop_front();
      return Action::kWrite;
    }
    if (exhausted_) {
      *status = grpc::Status::OK;
      return Action::kFinish;
    }
    return reading_ ? Action::kNothing : Action::kRead;
  }

  bool ReadAhead() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !exhausted_ && pending_.size() < ctx_.page_size / 2;
  }

  const StreamContext ctx_;
  const v1::ReplayEventsRequest request_;
  const storage::Filter filter_;
  std::atomic<bool> registered_{false};
  bool exhausted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t after_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t up_to_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t remaining_ ABSL_GUARDED_BY(mu_);
  uint64_t last_sent_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// Subscribe

class SubscribeReactor final : public StreamWriter<v1::SubscribeResponse> {
 public:
  SubscribeReactor(const StreamContext& ctx, SubscriberRegistry* registry,
                   grpc::CallbackServerContext* call,
                   const v1::SubscribeRequest& req, storage::Filter filter)
      : StreamWriter(ctx, registry, call),
        ctx_(ctx),
        request_(req),
        filter_(filter),
        heartbeat_(absl::Seconds(req.heartbeat_seconds() == 0
                                     ? kDefaultHeartbeatSeconds
                                     : req.heartbeat_seconds())),
        peer_(call->peer()),
        filter_text_(FilterToString(filter)),
        connected_since_(ctx.clock->Now()),
        // 1. Live first: everything committed from here on reaches the
        // queue. Set before the registry can list this reactor.
        sub_(ctx_.hub->Register(std::move(filter), ctx_.subscriber_queue,
                                [this] { ScheduleWake(); })),
        // "now" is the head as of registration: later commits are queued.
        head_at_registration_(ctx_.store->HeadPosition()) {
    {
      absl::MutexLock lock(&mu_);
      last_write_at_ = connected_since_;
    }
    // Visible to GetStatus and the ticker only once fully constructed.
    registered_.store(true);
    if (!registry_->Add(this)) {
      registered_.store(false);
      absl::MutexLock lock(&mu_);
      error_ = absl::ResourceExhaustedError(
          "too many subscribers (--max_subscribers reached) or the server is "
          "shutting down; retry later");
      started_ = true;
    } else {
      PostRead([this] { Start(); });
    }
    Pump();
  }

  void OnCallDone() override {
    Release();
    log::Info("subscriber ended",
              {{"peer", peer_}, {"events_sent", events_sent_.load()}});
  }

  // Frees the live queue and the subscriber slot as soon as the call is
  // finished (OnDone may come much later if a write is stalled).
  void Release() {
    if (released_.exchange(true)) return;
    ctx_.hub->Unregister(sub_->id());
    if (registered_.exchange(false)) registry_->Remove(this);
  }

  void BeginShutdown() {
    {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
    }
    Pump();
  }

  v1::SubscriberStatus Status() const {
    v1::SubscriberStatus s;
    s.set_id(absl::StrCat(sub_->id()));
    s.set_peer(peer_);
    s.set_filter(filter_text_);
    {
      absl::MutexLock lock(&mu_);
      s.set_live(mode_ == Mode::kLive);
      s.set_last_position(last_);
    }
    s.set_queue_depth(sub_->depth());
    s.set_events_sent(events_sent_.load());
    s.set_fell_behind_total(fell_behind_total_.load());
    *s.mutable_connected_since() = ToTimestamp(connected_since_);
    return s;
  }

  using StreamWriter::Ref;
  using StreamWriter::Tick;
  using StreamWriter::Unref;

 private:
  enum class Mode { kCatchUp, kLive };

  void ScheduleWake() {
    // Runs on the publishing thread under the subscription's lock: only
    // post, never write from here.
    if (wake_posted_.exchange(true)) return;
    PostTask([this] {
      wake_posted_.store(false);
      Pump();
    });
  }

  void Start() {
    // 2. Then read storage from the start point.
    const uint64_t head = head_at_registration_;
    const bool has_start =
        request_.has_start() &&
        request_.start().from_case() != v1::StartPoint::FROM_NOT_SET;
    v1::StartPoint start = request_.start();
    if (!has_start) start.set_now(true);
    absl::StatusOr<uint64_t> after =
        ResolveStart(ctx_.store, start, true, /*allow_now=*/true, head);
    {
      absl::MutexLock lock(&mu_);
      if (!after.ok()) {
        error_ = after.status();
      } else {
        last_ = *after;
      }
      started_ = true;
    }
    Pump();
  }

  void ReadPage() override {
    uint64_t after;
    {
      absl::MutexLock lock(&mu_);
      after = last_;
    }
    if (ctx_.pages_read != nullptr) ctx_.pages_read->fetch_add(1);
    absl::StatusOr<storage::Page> page = ctx_.store->ReadPage(
        after, kNoLimit, filter_, ctx_.page_size, ctx_.max_scan);
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!page.ok()) {
        error_ = page.status();
      } else {
        for (storage::Event& e : page->events) pending_.push_back(std::move(e));
        if (page->scanned_through <= last_) {
          caught_up_ = true;  // nothing more is stored
        } else {
          last_ = page->scanned_through;
        }
      }
    }
    Pump();
  }

  void OnFinishing() override { Release(); }

  // Catching up reads ahead as a replay does. last_ moves on with each page
  // read, but a checkpoint or caught_up (which carry it) is only sent with
  // pending_ empty, when everything up to last_ has been written.
  bool ReadAhead() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return mode_ == Mode::kCatchUp && !caught_up_ &&
           pending_.size() < ctx_.page_size / 2;
  }

  std::string StalledMessage() const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::StrCat(
        "no write to this subscriber completed within "
        "--subscriber_write_timeout=",
        absl::FormatDuration(write_timeout_),
        " (the client stopped reading); last position ", last_,
        "; resume with after_position");
  }

  Action Next(absl::Time now, grpc::Status* status) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action = Action::kNothing;
    if (mode_ == Mode::kCatchUp &&
        ctx_.max_subscriber_lag > absl::ZeroDuration() &&
        fell_behind_at_ != absl::InfinitePast() &&
        now - fell_behind_at_ > ctx_.max_subscriber_lag) {
      // Checked even with a write in flight: a consumer that stopped
      // reading must not hold its stream open for ever (Pump defers the
      // Finish while a StartWrite call is running).
      *status = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("subscriber stayed behind the head for longer than "
                       "--max_subscriber_lag; last position ",
                       last_, "; resume with after_position"));
      return Action::kFinish;
    }
    if (Settled(&action, status)) return action;
    if (shutting_down_) {
      *status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "server shutting down; resume with "
                             "after_position");
      return Action::kFinish;
    }
    if (!pending_.empty()) {
      msg_.Clear();
      ToProto(std::move(pending_.front()), msg_.mutable_event());
      pending_.pop_front();
      events_sent_.fetch_add(1, std::memory_order_relaxed);
      return Wrote(now);
    }
    if (mode_ == Mode::kCatchUp) {
      if (!caught_up_) {
        if (now - last_write_at_ >= heartbeat_) {
          // A narrow filter over a long log sends nothing for a long time:
          // say how far storage was scanned (everything matching up to
          // last_ was sent, pending_ being empty) so that the client can
          // resume past it, and that it sees the stream is alive.
          msg_.Clear();
          v1::Checkpoint* cp = msg_.mutable_checkpoint();
          cp->set_position(last_);
          cp->set_head_position(ctx_.store->HeadPosition());
          return Wrote(now);
        }
        return reading_ ? Action::kNothing : Action::kRead;
      }
      if (sub_->overflowed()) {
        // The queue overflowed while we were still reading storage: the
        // client never went live, so no fell_behind; re-arm, read on.
        sub_->Rearm();
        caught_up_ = false;
        return Action::kRead;
      }
      msg_.Clear();
      msg_.mutable_caught_up()->set_position(last_);
      mode_ = Mode::kLive;
      fell_behind_at_ = absl::InfinitePast();
      return Wrote(now);
    }
    // Live.
    if (NextLive()) {
      SetSerializedEvent(next_->event->message, &msg_);
      last_ = next_->event->position;
      next_.reset();
      NextLive();  // the look-ahead that MoreReady() reports
      events_sent_.fetch_add(1, std::memory_order_relaxed);
      return Wrote(now);
    }
    if (sub_->overflowed()) {
      // The queue overflowed: tell the client, re-arm, then read storage
      // from the last position (re-arming first keeps the hand-over
      // gapless).
      sub_->Rearm();
      msg_.Clear();
      msg_.mutable_fell_behind()->set_position(last_);
      msg_.mutable_fell_behind()->set_head_position(ctx_.store->HeadPosition());
      mode_ = Mode::kCatchUp;
      caught_up_ = false;
      fell_behind_at_ = now;
      fell_behind_total_.fetch_add(1, std::memory_order_relaxed);
      return Wrote(now);
    }
    if (now - last_write_at_ >= heartbeat_) {
      // Idle: every published event up to `through` was examined, and the
      // matching ones were sent (queue empty, nothing looked ahead): the
      // heartbeat's last_position is also a checkpoint past the events the
      // filter skipped.
      uint64_t through = 0;
      if (sub_->IdleThrough(&through) && through > last_) last_ = through;
      msg_.Clear();
      v1::Heartbeat* hb = msg_.mutable_heartbeat();
      hb->set_last_position(last_);
      hb->set_head_position(ctx_.store->HeadPosition());
      *hb->mutable_server_time() = ToTimestamp(now);
      return Wrote(now);
    }
    return Action::kNothing;
  }

  // Fills next_ with the next queued live event not yet sent, if any.
  bool NextLive() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Subscription::Item item;
    while (!next_.has_value() && sub_->Pop(&item)) {
      if (item.event->position > last_) next_ = std::move(item);
    }
    return next_.has_value();
  }

  bool MoreReady() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty() || next_.has_value();
  }

  Action Wrote(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    last_write_at_ = now;
    return Action::kWrite;
  }

  const StreamContext ctx_;
  std::atomic<bool> released_{false};
  std::atomic<bool> registered_{false};
  const v1::SubscribeRequest request_;
  const storage::Filter filter_;
  const absl::Duration heartbeat_;
  const std::string peer_;
  const std::string filter_text_;
  const absl::Time connected_since_;
  const std::shared_ptr<Subscription> sub_;
  const uint64_t head_at_registration_;
  std::atomic<bool> wake_posted_{false};
  std::atomic<uint64_t> events_sent_{0};
  std::atomic<uint64_t> fell_behind_total_{0};

  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kCatchUp;
  bool caught_up_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Everything matching the filter at or below this position has been
  // sent (or is in pending_, which goes out first).
  uint64_t last_ ABSL_GUARDED_BY(mu_) = 0;
  // A live event taken from the queue, sent next (kept across an overflow:
  // it precedes everything the overflow lost).
  std::optional<Subscription::Item> next_ ABSL_GUARDED_BY(mu_);
  absl::Time last_write_at_ ABSL_GUARDED_BY(mu_);
  absl::Time fell_behind_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// ---------------------------------------------------------------------------
// SubscriberRegistry

bool SubscriberRegistry::Add(SubscribeReactor* reactor) {
  absl::MutexLock lock(&mu_);
  if (shutdown_ || reactors_.size() >= static_cast<size_t>(max_subscribers_)) {
    return false;
  }
  reactors_.push_back(reactor);
  return true;
}

namespace {
template <typename T>
void Erase(std::vector<T*>* list, T* item) {
  list->erase(std::remove(list->begin(), list->end(), item), list->end());
}
}  // namespace

void SubscriberRegistry::Remove(SubscribeReactor* reactor) {
  absl::MutexLock lock(&mu_);
  Erase(&reactors_, reactor);
}

bool SubscriberRegistry::AddReplay(TickedStream* replay) {
  absl::MutexLock lock(&mu_);
  if (shutdown_ || (max_replays_ > 0 &&
                    replays_.size() >= static_cast<size_t>(max_replays_))) {
    return false;
  }
  replays_.push_back(replay);
  return true;
}

void SubscriberRegistry::RemoveReplay(TickedStream* replay) {
  absl::MutexLock lock(&mu_);
  Erase(&replays_, replay);
}

void SubscriberRegistry::AddDraining(TickedStream* stream) {
  absl::MutexLock lock(&mu_);
  draining_.push_back(stream);
}

void SubscriberRegistry::RemoveDraining(TickedStream* stream) {
  absl::MutexLock lock(&mu_);
  Erase(&draining_, stream);
}

std::vector<v1::SubscriberStatus> SubscriberRegistry::Snapshot() const {
  std::vector<v1::SubscriberStatus> out;
  absl::MutexLock lock(&mu_);
  for (SubscribeReactor* r : reactors_) out.push_back(r->Status());
  return out;
}

namespace {
// Calls `fn` on each stream of the lists outside the lock, holding a
// reference (a stream may leave the lists meanwhile).
template <typename T, typename Fn>
void ForEachRef(absl::Mutex* mu,
                std::initializer_list<const std::vector<T*>*> lists, Fn fn) {
  std::vector<T*> refs;
  {
    absl::MutexLock lock(mu);
    for (const std::vector<T*>* list : lists) {
      for (T* r : *list) {
        r->Ref();
        refs.push_back(r);
      }
    }
  }
  for (T* r : refs) {
    fn(r);
    r->Unref();
  }
}
}  // namespace

void SubscriberRegistry::Tick() {
  ForEachRef<SubscribeReactor>(&mu_, {&reactors_},
                               [](SubscribeReactor* r) { r->Tick(); });
  ForEachRef<TickedStream>(&mu_, {&replays_, &draining_},
                           [](TickedStream* r) { r->Tick(); });
}

void SubscriberRegistry::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  ForEachRef<SubscribeReactor>(&mu_, {&reactors_},
                               [](SubscribeReactor* r) { r->BeginShutdown(); });
}

size_t SubscriberRegistry::replays() const {
  absl::MutexLock lock(&mu_);
  return replays_.size();
}

size_t SubscriberRegistry::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_.size();
}

size_t SubscriberRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return reactors_.size();
}

// ---------------------------------------------------------------------------

absl::StatusOr<uint64_t> ResolveStart(storage::EventStore* store,
                                      const v1::StartPoint& start,
                                      bool has_start, bool allow_now,
                                      uint64_t head) {
  // The beginning is the oldest stored event: retention moves it (and a
  // read after a pruned position is OUT_OF_RANGE, see Store::ReadPage).
  auto beginning = [store]() -> absl::StatusOr<uint64_t> {
    absl::StatusOr<uint64_t> oldest = store->OldestPosition();
    if (!oldest.ok()) return oldest.status();
    return *oldest == 0 ? 0 : *oldest - 1;
  };
  if (!has_start) return beginning();
  switch (start.from_case()) {
    case v1::StartPoint::FROM_NOT_SET:
    case v1::StartPoint::kBeginning:
      return beginning();
    case v1::StartPoint::kNow:
      if (!allow_now) {
        return absl::InvalidArgumentError(
            "start.now is only valid for Subscribe; ReplayEvents takes "
            "beginning, after_position, published_since or stream_timepoint");
      }
      return head;
    case v1::StartPoint::kAfterPosition: {
      const uint64_t p = start.after_position();
      absl::StatusOr<storage::StoreStats> stats = store->Stats();
      if (!stats.ok()) return stats.status();
      const uint64_t oldest = stats->oldest_position;
      const uint64_t floor = oldest == 0 ? 0 : oldest - 1;
      if (p > head || p < floor) {
        return absl::OutOfRangeError(
            absl::StrCat("after_position ", p,
                         p > head ? " is beyond the head"
                                  : " is older than the oldest stored event",
                         "; ", RangeText(oldest, head)));
      }
      return p;
    }
    case v1::StartPoint::kPublishedSince: {
      const google::protobuf::Timestamp& ts = start.published_since();
      if (ts.nanos() < 0 || ts.nanos() > 999'999'999) {
        return absl::InvalidArgumentError(
            "start.published_since: nanos must be in [0, 999999999]");
      }
      return store->PositionBeforePublishedSince(FromTimestamp(ts));
    }
    case v1::StartPoint::kStreamTimepoint: {
      const v1::StreamTimepoint& st = start.stream_timepoint();
      bool known = false;
      for (const char* name : storage::kStreamNames) {
        known |= st.stream() == name;
      }
      if (!known) {
        std::string allowed;
        for (const char* name : storage::kStreamNames) {
          absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", name);
        }
        return absl::InvalidArgumentError(
            absl::StrCat("start.stream_timepoint.stream '", st.stream(),
                         "' is not a stream; allowed: ", allowed));
      }
      return store->PositionBeforeStreamTimepoint(st.stream(), st.timepoint());
    }
  }
  return absl::InvalidArgumentError("unknown start point");
}

absl::Status CheckExpectedStoreId(const std::string& expected,
                                  const std::string& store_id) {
  if (expected.empty() || expected == store_id) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "expected_store_id ", expected, " is not this server's store_id ",
      store_id,
      ": the store was replaced or recreated (e.g. after an unclean shutdown "
      "with synchronous=normal, a restored backup or a new database file), "
      "so positions may have been reassigned to other events. Resume from "
      "a timepoint (start.published_since or start.stream_timepoint) or from "
      "the beginning, and store the new store_id with your position"));
}

grpc::ServerWriteReactor<v1::Event>* NewReplayReactor(
    const StreamContext& ctx, SubscriberRegistry* registry,
    grpc::CallbackServerContext* call, const v1::ReplayEventsRequest& request) {
  if (absl::Status s = CheckExpectedStoreId(request.expected_store_id(),
                                            ctx.store->store_id());
      !s.ok()) {
    return new ErrorReactor<v1::Event>(s);
  }
  absl::StatusOr<storage::Filter> filter = FromProto(request.filter());
  if (!filter.ok()) return new ErrorReactor<v1::Event>(filter.status());
  return new ReplayReactor(ctx, registry, call, request, *std::move(filter));
}

grpc::ServerWriteReactor<v1::SubscribeResponse>* NewSubscribeReactor(
    const StreamContext& ctx, SubscriberRegistry* registry,
    grpc::CallbackServerContext* call, const v1::SubscribeRequest& request) {
  if (absl::Status s = CheckExpectedStoreId(request.expected_store_id(),
                                            ctx.store->store_id());
      !s.ok()) {
    return new ErrorReactor<v1::SubscribeResponse>(s);
  }
  absl::StatusOr<storage::Filter> filter = FromProto(request.filter());
  if (!filter.ok()) {
    return new ErrorReactor<v1::SubscribeResponse>(filter.status());
  }
  if (request.heartbeat_seconds() > kMaxHeartbeatSeconds) {
    return new ErrorReactor<v1::SubscribeResponse>(
        absl::InvalidArgumentError(absl::StrCat(
            "heartbeat_seconds must be from 1 to ", kMaxHeartbeatSeconds,
            " (0 = default ", kDefaultHeartbeatSeconds, ")")));
  }
  return new SubscribeReactor(ctx, registry, call, request, *std::move(filter));
}

}  // namespace chstream::server
