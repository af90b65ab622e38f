#include "ingest/reconnect_policy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace chstream::ingest {
namespace {

std::string WithDetail(std::string_view what, std::string_view detail) {
  std::string out(what);
  if (!detail.empty()) {
    out.append(": ");
    out.append(detail);
  }
  return out;
}

}  // namespace

std::string_view StreamStateName(StreamState state) {
  switch (state) {
    case StreamState::kConnecting:
      return "CONNECTING";
    case StreamState::kStreaming:
      return "STREAMING";
    case StreamState::kBackingOff:
      return "BACKING_OFF";
    case StreamState::kAuthFailed:
      return "AUTH_FAILED";
    case StreamState::kTimepointExpired:
      return "TIMEPOINT_EXPIRED";
    case StreamState::kCircuitOpen:
      return "CIRCUIT_OPEN";
    case StreamState::kStopped:
      return "STOPPED";
  }
  return "UNKNOWN";
}

Outcome Outcome::Connected() {
  Outcome o;
  o.kind = Kind::kConnected;
  return o;
}

Outcome Outcome::StreamEndedClean(absl::Duration connected_for) {
  Outcome o;
  o.kind = Kind::kStreamEndedClean;
  o.connected_for = connected_for;
  return o;
}

Outcome Outcome::HttpStatus(int code,
                            std::optional<absl::Duration> retry_after) {
  Outcome o;
  o.kind = Kind::kHttpStatus;
  o.http_status = code;
  o.retry_after = retry_after;
  return o;
}

Outcome Outcome::NetworkError(std::string detail) {
  Outcome o;
  o.kind = Kind::kNetworkError;
  o.detail = std::move(detail);
  return o;
}

Outcome Outcome::TlsError(std::string detail) {
  Outcome o;
  o.kind = Kind::kTlsError;
  o.detail = std::move(detail);
  return o;
}

Outcome Outcome::IdleTimeout() {
  Outcome o;
  o.kind = Kind::kIdleTimeout;
  return o;
}

ReconnectPolicy::ReconnectPolicy(Options options, const Clock* clock,
                                 std::function<double()> uniform01)
    : options_(options),
      clock_(clock),
      uniform01_(std::move(uniform01)),
      error_backoff_(options.error_backoff_initial, options.error_backoff_max,
                     uniform01_),
      rate_limit_backoff_(options.rate_limit_min, options.rate_limit_max,
                          uniform01_, 2.0, options.rate_limit_min),
      breaker_(CircuitBreaker::Options{options.breaker_failures,
                                       options.breaker_cooldown, 2.0,
                                       options.breaker_max_cooldown},
               clock) {
  last_.state = StreamState::kConnecting;
  last_.next_attempt_at = absl::InfinitePast();
  last_.reason = "not started";
}

bool ReconnectPolicy::BeginAttempt() {
  if (last_.stop) return false;
  if (clock_->Now() < last_.next_attempt_at) return false;
  if (!breaker_.AllowAttempt()) return false;
  last_.state = StreamState::kConnecting;
  return true;
}

const Decision& ReconnectPolicy::Set(Decision decision) {
  last_ = std::move(decision);
  return last_;
}

absl::Duration ReconnectPolicy::ShortDelay() {
  const double u = std::clamp(uniform01_(), 0.0, 1.0);
  const absl::Duration span =
      std::max(options_.short_delay_max - options_.short_delay_min,
               absl::ZeroDuration());
  return options_.short_delay_min + span * u;
}

Decision ReconnectPolicy::Failure(absl::Time now, absl::Duration delay,
                                  std::string reason, bool drop_timepoint) {
  breaker_.RecordFailure();
  Decision d;
  d.state = StreamState::kBackingOff;
  d.next_attempt_at = now + delay;
  d.drop_timepoint = drop_timepoint;
  if (breaker_.state() == CircuitBreaker::State::kOpen) {
    d.state = StreamState::kCircuitOpen;
    d.next_attempt_at = std::max(d.next_attempt_at, breaker_.open_until());
    absl::StrAppend(&reason, "; circuit open after ",
                    breaker_.consecutive_failures(), " consecutive failures");
  }
  absl::StrAppend(&reason, "; retrying in ",
                  absl::FormatDuration(d.next_attempt_at - now));
  d.reason = std::move(reason);
  return d;
}

Decision ReconnectPolicy::OnOutcome(const Outcome& outcome) {
  if (last_.stop) return last_;
  const absl::Time now = clock_->Now();

  if (outcome.kind == Outcome::Kind::kConnected ||
      (outcome.kind == Outcome::Kind::kHttpStatus &&
       outcome.http_status == 200)) {
    connected_ = true;
    connected_at_ = now;
    timepoint_expired_in_a_row_ = 0;
    Decision d;
    d.state = StreamState::kStreaming;
    d.next_attempt_at = absl::InfiniteFuture();
    d.reason = "connected";
    return Set(std::move(d));
  }

  // The attempt or connection is over. Was it healthy?
  absl::Duration up = absl::ZeroDuration();
  if (outcome.kind == Outcome::Kind::kStreamEndedClean) {
    up = outcome.connected_for;
  } else if (connected_) {
    up = now - connected_at_;
  }
  connected_ = false;
  const bool healthy = up >= options_.healthy_after;
  if (healthy) {
    error_backoff_.Reset();
    rate_limit_backoff_.Reset();
    breaker_.RecordSuccess();
  }

  switch (outcome.kind) {
    case Outcome::Kind::kConnected:
      break;  // handled above
    case Outcome::Kind::kStreamEndedClean: {
      if (!healthy) {
        return Set(Failure(
            now, error_backoff_.Next(),
            absl::StrCat("stream ended after only ", absl::FormatDuration(up)),
            false));
      }
      Decision d;
      d.state = StreamState::kBackingOff;
      d.next_attempt_at = now + ShortDelay();
      d.reason = absl::StrCat("stream ended cleanly after ",
                              absl::FormatDuration(up), "; reconnecting in ",
                              absl::FormatDuration(d.next_attempt_at - now));
      return Set(std::move(d));
    }
    case Outcome::Kind::kHttpStatus:
      switch (outcome.http_status) {
        case 401: {
          // The upstream answered: not a breaker failure. Resolve a half-open
          // trial, or the breaker would wait for its verdict forever.
          breaker_.RecordSuccess();
          Decision d;
          d.state = StreamState::kAuthFailed;
          d.next_attempt_at = now + options_.auth_retry_interval;
          d.reason =
              absl::StrCat("HTTP 401: stream key rejected; retrying in ",
                           absl::FormatDuration(options_.auth_retry_interval));
          return Set(std::move(d));
        }
        case 416: {
          ++timepoint_expired_in_a_row_;
          if (timepoint_expired_in_a_row_ == 1) breaker_.RecordSuccess();
          if (options_.on_timepoint_expired == TimepointExpiredAction::kStop) {
            Decision d;
            d.state = StreamState::kTimepointExpired;
            d.next_attempt_at = absl::InfiniteFuture();
            d.record_gap = true;
            d.stop = true;
            d.reason = "HTTP 416: timepoint expired; stopping (policy: stop)";
            return Set(std::move(d));
          }
          if (timepoint_expired_in_a_row_ > 1) {
            return Set(Failure(now, error_backoff_.Next(),
                               "HTTP 416 again before any connection", true));
          }
          Decision d;
          d.state = StreamState::kTimepointExpired;
          d.next_attempt_at = now + ShortDelay();
          d.record_gap = true;
          d.drop_timepoint = true;
          d.reason = absl::StrCat(
              "HTTP 416: timepoint expired; resuming from the head in ",
              absl::FormatDuration(d.next_attempt_at - now));
          return Set(std::move(d));
        }
        case 429: {
          absl::Duration delay = rate_limit_backoff_.Next();
          if (outcome.retry_after.has_value()) {
            delay = std::max(delay, std::min(*outcome.retry_after,
                                             options_.max_retry_after));
          }
          return Set(Failure(now, delay, "HTTP 429: rate limited", false));
        }
        default:
          return Set(
              Failure(now, error_backoff_.Next(),
                      WithDetail(absl::StrCat("HTTP ", outcome.http_status),
                                 outcome.detail),
                      false));
      }
    case Outcome::Kind::kNetworkError:
      return Set(Failure(now, error_backoff_.Next(),
                         WithDetail("network error", outcome.detail), false));
    case Outcome::Kind::kTlsError:
      return Set(Failure(now, error_backoff_.Next(),
                         WithDetail("TLS error", outcome.detail), false));
    case Outcome::Kind::kIdleTimeout:
      return Set(Failure(now, error_backoff_.Next(),
                         WithDetail("idle timeout", outcome.detail), false));
  }
  return last_;
}

}  // namespace chstream::ingest
