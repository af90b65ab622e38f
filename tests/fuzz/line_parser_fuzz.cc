// File: tests/fuzz/line_parser_fuzz.cc
//
// Fuzzes the upstream body path below HTTP: bytes -> LineFramer -> lines ->
// EventParser -> events or dead letters (ingest/line_framer.h,
// ingest/event_parser.h).
//
// Input: byte 0 picks the line cap (small caps reach the oversized-line
// path), byte 1 seeds how the body is cut into chunks, the rest is the body.
// The body is framed twice, in one Feed() and in chunks, and both framings
// must report the same lines, heartbeats and oversized lines in the same
// order (line_framer.h: "any length, any split"); every line and event is
// checked by LineChecker.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ingest/event_parser.h"
#include "ingest/line_framer.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/line_checker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* event_parser = new chstream::ingest::EventParser();
  if (size < 2) return 0;
  // 255 = the production cap (8 MiB); else 1 byte to ~16 KiB.
  const size_t max_line =
      data[0] == 255 ? size_t{8} << 20 : size_t{1} + data[0] * 64;
  uint32_t seed = data[1];
  const std::string_view body(reinterpret_cast<const char*>(data) + 2,
                              size - 2);

  chstream::ingest::LineFramer whole(max_line);
  chstream::fuzz::LineChecker whole_checker(max_line, *event_parser);
  whole.Feed(body, whole_checker);
  FUZZ_CHECK(whole.buffered() <=
             max_line + chstream::ingest::LineFramer::kOversizedPrefixBytes);
  const size_t whole_dropped = whole.Finish();

  chstream::ingest::LineFramer split(max_line);
  chstream::fuzz::LineChecker split_checker(max_line, *event_parser);
  size_t at = 0;
  while (at < body.size()) {
    seed = seed * 1103515245u + 12345u;
    // Mostly short chunks (a line split many times), sometimes long ones.
    const size_t want =
        (seed >> 16) % 8 == 0 ? 1 + (seed >> 8) % 4096 : 1 + (seed >> 8) % 17;
    const size_t n = std::min(want, body.size() - at);
    split.Feed(body.substr(at, n), split_checker);
    FUZZ_CHECK(split.buffered() <=
               max_line + chstream::ingest::LineFramer::kOversizedPrefixBytes)
        << split.buffered();
    at += n;
  }
  const size_t split_dropped = split.Finish();

  FUZZ_CHECK(whole_dropped == split_dropped)
      << whole_dropped << " vs " << split_dropped;
  FUZZ_CHECK(whole_checker.trace() == split_checker.trace())
      << "one Feed and chunked Feeds framed the body differently ("
      << whole_checker.trace().size() << " vs " << split_checker.trace().size()
      << " callbacks)";
  // After Finish() the framer is reset for a new stream.
  FUZZ_CHECK(whole.buffered() == 0 && split.buffered() == 0);
  return 0;
}
