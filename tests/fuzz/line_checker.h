// File: tests/fuzz/line_checker.h
//
// The part of the ingest path shared by the line and HTTP-response fuzz
// targets: a LineFramer::Visitor that parses every line with EventParser
// (as ingest/stream_client.cc does) and checks what line_framer.h and
// event_parser.h promise about each result. It also records what it saw, so
// that a target can compare two framings of the same bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "ingest/event_parser.h"
#include "ingest/line_framer.h"

namespace chstream::fuzz {

class LineChecker : public ingest::LineFramer::Visitor {
 public:
  // `max_line_bytes` must be the framer's. `parser` is reused across inputs
  // (as a connection reuses its parser, and a fresh one per input made the
  // targets several times slower) and must outlive the checker.
  LineChecker(size_t max_line_bytes, ingest::EventParser& parser)
      : max_line_bytes_(max_line_bytes), parser_(parser) {}

  void OnLine(std::string_view line) override;
  void OnHeartbeat() override;
  void OnOversizedLine(std::string_view prefix, size_t total_bytes) override;

  // One entry per callback, in order: "L" + line, "H", or "O" + total + ":"
  // + prefix.
  const std::vector<std::string>& trace() const { return trace_; }
  size_t events() const { return events_; }
  size_t dead_letters() const { return dead_letters_; }

 private:
  const size_t max_line_bytes_;
  ingest::EventParser& parser_;
  std::vector<std::string> trace_;
  size_t events_ = 0;
  size_t dead_letters_ = 0;
};

}  // namespace chstream::fuzz
