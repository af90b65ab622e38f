// File: ingest/writer_sink.h
//
// The EventSink that feeds storage's single writer (its bounded queue).
#pragma once

#include "ingest/event_sink.h"
#include "storage/event_writer.h"

namespace chstream::ingest {

class WriterSink final : public EventSink {
 public:
  // `writer` must outlive the sink.
  explicit WriterSink(storage::EventWriter* writer) : writer_(writer) {}

  absl::Duration Append(storage::Event event) override {
    return Push(std::move(event));
  }
  absl::Duration AppendDeadLetter(storage::DeadLetter dead_letter) override {
    return Push(std::move(dead_letter));
  }
  absl::Duration AppendGap(storage::Gap gap) override {
    return Push(std::move(gap));
  }

 private:
  absl::Duration Push(storage::EventWriter::Item item) {
    absl::Duration waited = absl::ZeroDuration();
    writer_->Push(std::move(item), &waited);
    return waited;
  }

  storage::EventWriter* const writer_;
};

}  // namespace chstream::ingest
