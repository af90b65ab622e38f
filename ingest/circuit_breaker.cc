#include "ingest/circuit_breaker.h"

#include <algorithm>

namespace chstream::ingest {

CircuitBreaker::CircuitBreaker(Options options, const Clock* clock)
    : options_(options), clock_(clock), cooldown_(options.cooldown) {}

bool CircuitBreaker::AllowAttempt() {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (clock_->Now() < open_until_) return false;
      state_ = State::kHalfOpen;
      trial_in_flight_ = true;
      return true;
    case State::kHalfOpen:
      if (trial_in_flight_) return false;
      trial_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  state_ = State::kClosed;
  consecutive_failures_ = 0;
  cooldown_ = options_.cooldown;
  trial_in_flight_ = false;
}

void CircuitBreaker::RecordFailure() {
  switch (state_) {
    case State::kClosed:
      if (++consecutive_failures_ >= std::max(options_.failure_threshold, 1)) {
        Open();
      }
      return;
    case State::kHalfOpen:
      ++consecutive_failures_;
      cooldown_ =
          std::min(cooldown_ * std::max(options_.cooldown_multiplier, 1.0),
                   std::max(options_.max_cooldown, options_.cooldown));
      Open();
      return;
    case State::kOpen:
      return;
  }
}

void CircuitBreaker::Open() {
  state_ = State::kOpen;
  trial_in_flight_ = false;
  open_until_ = clock_->Now() + cooldown_;
}

CircuitBreaker::State CircuitBreaker::state() const {
  if (state_ == State::kOpen && clock_->Now() >= open_until_) {
    return State::kHalfOpen;
  }
  return state_;
}

}  // namespace chstream::ingest
