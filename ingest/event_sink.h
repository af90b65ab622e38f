// File: ingest/event_sink.h
//
// Where ingest hands what it read: parsed events, dead letters and timepoint
// gaps, in the order they happened on each stream. The implementation (the
// storage writer's queue) is bounded: calls block while it is full and
// return how long they waited, so that the wait can be measured and shown.
//
// Thread-safety: implementations must accept calls from any thread.
#pragma once

#include "absl/time/time.h"
#include "storage/event.h"
#include "storage/store.h"

namespace chstream::ingest {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Each returns how long the caller waited for room (zero if none).
  virtual absl::Duration Append(storage::Event event) = 0;
  virtual absl::Duration AppendDeadLetter(storage::DeadLetter dead_letter) = 0;
  virtual absl::Duration AppendGap(storage::Gap gap) = 0;
};

}  // namespace chstream::ingest
