#include "storage/retainer.h"

#include <algorithm>
#include <utility>

#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::storage {

Retainer::Retainer(EventStore* store, Options options, Clock* clock)
    : store_(store),
      options_(std::move(options)),
      rows_(std::max(options_.policy.rows_per_transaction, 1)),
      clock_(clock) {}

Retainer::~Retainer() { Stop(); }

void Retainer::Start() {
  if (options_.policy.keeps_everything() || thread_.joinable()) return;
  thread_ = std::thread([this] {
    SetCurrentThreadName("chs-retention");
    Run();
  });
}

void Retainer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool Retainer::Wait(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stop_), d);
  return !stop_;
}

absl::StatusOr<PruneStepResult> Retainer::RunPass() {
  PruneStepResult total;
  RetentionPolicy policy = options_.policy;
  const int max_rows = std::max(policy.rows_per_transaction, 1);
  const absl::Duration target = options_.target_transaction_time;
  while (true) {
    policy.rows_per_transaction = rows_;
    absl::StatusOr<PruneStepResult> step =
        store_->PruneStep(policy, clock_->Now());
    if (!step.ok()) return step.status();
    // PruneStep runs up to two transactions (events, then dead letters).
    const absl::Duration took = step->transaction_time;
    if (target > absl::ZeroDuration() && step->events > 0) {
      if (took > target) {
        rows_ = std::max(std::min(kMinRows, max_rows), rows_ / 2);
      } else if (took < target / 2) {
        rows_ = std::min(max_rows, rows_ + std::max(rows_ / 4, 1));
      }
    }
    total.events += step->events;
    total.dead_letters += step->dead_letters;
    total.gaps += step->gaps;
    total.rows_given_data += step->rows_given_data;
    total.oldest_position = step->oldest_position;
    total.transaction_time += step->transaction_time;
    if (!step->more) return total;
    const absl::Duration pause = std::max(options_.pause, took);
    if (pause > absl::ZeroDuration() && !Wait(pause)) {
      total.more = true;
      return total;
    }
  }
}

void Retainer::Run() {
  log::Info("retention running",
            {{"retain_for", absl::FormatDuration(options_.policy.events_for)},
             {"retain_bytes", options_.policy.max_bytes},
             {"retain_dead_letters_for",
              absl::FormatDuration(options_.policy.dead_letters_for)}});
  do {
    absl::StatusOr<PruneStepResult> pass = RunPass();
    if (!pass.ok()) {
      // Storage trouble shows in the writer's health too; retry next pass.
      log::Warning("retention pass failed", {{"error", pass.status()}});
    } else if (pass->events + pass->dead_letters + pass->gaps > 0) {
      log::Debug("retention pass",
                 {{"events", pass->events},
                  {"dead_letters", pass->dead_letters},
                  {"gaps", pass->gaps},
                  {"companies_given_data", pass->rows_given_data},
                  {"oldest_position", pass->oldest_position}});
    }
  } while (Wait(options_.interval));
}

}  // namespace chstream::storage
