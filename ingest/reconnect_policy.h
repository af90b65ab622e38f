// File: ingest/reconnect_policy.h
//
// The pure decision logic for one upstream stream connection: given how the
// previous attempt ended, what state the stream is in and when to try again
// (upstream-api.md §5, §9; architecture.md "Errors"). No I/O and no sleeping:
// time comes from an injected Clock and jitter from an injected uniform01,
// so every schedule is exact in tests.
//
// Rules (defaults in Options):
//   - 200 (kConnected): kStreaming. Nothing is reset yet: a server that
//     answers 200 and drops at once must still be backed off.
//   - Health: a connection that stayed up for at least `healthy_after`
//     (30 s) is healthy. When it ends, for whatever reason, the error and
//     rate-limit backoffs are reset and the circuit breaker records a
//     success, before the ending itself is handled. The time up is the
//     outcome's connected_for for kStreamEndedClean, else the clock time
//     since kConnected.
//   - Clean end of stream (24 h expiry, nightly cut): from a healthy
//     connection, reconnect after a short jittered delay, uniform in
//     [short_delay_min, short_delay_max] = [0.5 s, 2 s]; a quicker end is a
//     failure (below), so repeated quick ends back off like errors.
//   - 401: kAuthFailed; next attempt after auth_retry_interval (15 min),
//     no jitter. The upstream answered, so for the breaker it is a success
//     (this also resolves a half-open trial).
//   - 416: kTimepointExpired and record_gap. With kResumeFromHead: reconnect
//     without a timepoint (drop_timepoint) after a short jittered delay;
//     a second 416 before any successful connection is a failure (with
//     drop_timepoint still set), so a server that keeps answering 416 is not
//     hammered. With kStop: stop, no further attempts, the state stays
//     kTimepointExpired. A first 416 is a breaker success, like a 401.
//   - 429: wait uniform in [60 s, min(15 min, 60 s * 2^n)] (full jitter
//     above a 60 s floor), or Retry-After if that is longer (capped at
//     max_retry_after); a breaker failure.
//   - Failure (5xx and any other status, network, TLS, idle timeout, quick
//     clean end): full-jitter exponential backoff, uniform in
//     [0, min(5 min, 1 s * 2^n)]; a breaker failure.
//   - Circuit breaker: after breaker_failures (5) consecutive failures it
//     opens for breaker_cooldown (60 s, doubling per failed trial, capped at
//     breaker_max_cooldown); state kCircuitOpen, next attempt at the later
//     of the backoff delay and the end of the cooldown; then one trial
//     attempt is let through.
//
// Usage (one policy per stream, driven by that stream's connection loop):
//
//   ReconnectPolicy policy({}, clock, uniform01);
//   while (true) {
//     wait until policy.next_attempt_at();
//     if (!policy.BeginAttempt()) continue;   // or stop if policy.stopped()
//     connect (without a timepoint if the last decision said drop_timepoint)
//     Decision d = policy.OnOutcome(Outcome::Connected());   // on 200
//     ... stream ...
//     d = policy.OnOutcome(Outcome::IdleTimeout());          // how it ended
//     if (d.record_gap) record it;  if (d.stop) break;
//   }
//
// Thread-safety: not thread-safe; owned by one connection loop.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "base/clock.h"
#include "ingest/backoff.h"
#include "ingest/circuit_breaker.h"

namespace chstream::ingest {

// Mirrors chstream.v1.StreamState (same numbers).
enum class StreamState {
  kConnecting = 1,
  kStreaming = 2,
  kBackingOff = 3,
  kAuthFailed = 4,
  kTimepointExpired = 5,
  kCircuitOpen = 6,
  kStopped = 7,
};

// "CONNECTING", "STREAMING", ... (the proto names without the prefix).
std::string_view StreamStateName(StreamState state);

enum class TimepointExpiredAction { kResumeFromHead, kStop };

// How a connection attempt, or an established connection, ended.
struct Outcome {
  enum class Kind {
    kConnected,         // a 200 arrived; the body is streaming
    kStreamEndedClean,  // the body ended normally
    kHttpStatus,        // a non-200 response
    kNetworkError,      // connect refused/reset, DNS, ...
    kTlsError,
    kIdleTimeout,  // no byte (not even a heartbeat) for too long
  };

  Kind kind = Kind::kNetworkError;
  absl::Duration connected_for = absl::ZeroDuration();  // kStreamEndedClean
  int http_status = 0;                                  // kHttpStatus
  std::optional<absl::Duration> retry_after;            // kHttpStatus
  std::string detail;  // free text for the decision's reason

  static Outcome Connected();
  static Outcome StreamEndedClean(absl::Duration connected_for);
  static Outcome HttpStatus(
      int code, std::optional<absl::Duration> retry_after = std::nullopt);
  static Outcome NetworkError(std::string detail);
  static Outcome TlsError(std::string detail);
  static Outcome IdleTimeout();
};

struct Decision {
  StreamState state = StreamState::kConnecting;
  // When to attempt again; InfiniteFuture while streaming or once stopped.
  absl::Time next_attempt_at = absl::InfinitePast();
  bool record_gap = false;  // 416: events between the old timepoint and
                            // the head are lost
  // The stored timepoint is too old (416): connect without ?timepoint=,
  // from the head, until a new event has been received.
  bool drop_timepoint = false;
  bool stop = false;   // no further attempts
  std::string reason;  // for logs and GetStatus
};

class ReconnectPolicy {
 public:
  struct Options {
    absl::Duration auth_retry_interval = absl::Minutes(15);
    TimepointExpiredAction on_timepoint_expired =
        TimepointExpiredAction::kResumeFromHead;
    absl::Duration error_backoff_initial = absl::Seconds(1);
    absl::Duration error_backoff_max = absl::Minutes(5);
    absl::Duration rate_limit_min = absl::Seconds(60);
    absl::Duration rate_limit_max = absl::Minutes(15);
    absl::Duration max_retry_after = absl::Hours(1);
    absl::Duration short_delay_min = absl::Milliseconds(500);
    absl::Duration short_delay_max = absl::Seconds(2);
    absl::Duration healthy_after = absl::Seconds(30);
    int breaker_failures = 5;
    absl::Duration breaker_cooldown = absl::Seconds(60);
    absl::Duration breaker_max_cooldown = absl::Minutes(15);
  };

  // `clock` must outlive the policy; uniform01 returns values in [0, 1].
  ReconnectPolicy(Options options, const Clock* clock,
                  std::function<double()> uniform01);

  ReconnectPolicy(const ReconnectPolicy&) = delete;
  ReconnectPolicy& operator=(const ReconnectPolicy&) = delete;

  // Call right before connecting. Returns true (state kConnecting) if an
  // attempt may start now; false if it is too early (before
  // next_attempt_at(), or the breaker's cooldown is still running) or the
  // policy has stopped.
  bool BeginAttempt();

  // Records how the attempt or connection went; returns what to do next.
  // After a stop every call returns the same stopping decision.
  Decision OnOutcome(const Outcome& outcome);

  StreamState state() const { return last_.state; }
  absl::Time next_attempt_at() const { return last_.next_attempt_at; }
  bool stopped() const { return last_.stop; }
  const Decision& last_decision() const { return last_; }
  const CircuitBreaker& breaker() const { return breaker_; }

 private:
  Decision Failure(absl::Time now, absl::Duration delay, std::string reason,
                   bool drop_timepoint);
  absl::Duration ShortDelay();
  const Decision& Set(Decision decision);

  const Options options_;
  const Clock* const clock_;
  const std::function<double()> uniform01_;
  Backoff error_backoff_;
  Backoff rate_limit_backoff_;
  CircuitBreaker breaker_;
  Decision last_;
  bool connected_ = false;
  absl::Time connected_at_ = absl::InfinitePast();
  int timepoint_expired_in_a_row_ = 0;  // 416s since the last 200
};

}  // namespace chstream::ingest
