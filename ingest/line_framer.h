// File: ingest/line_framer.h
//
// Splits the upstream's chunked NDJSON body into lines. Chunks do not line
// up with events (upstream-api.md §4.1): a line, and even a multi-byte UTF-8
// character, can be split across any number of chunks, and one chunk can hold
// many lines. The framer works on raw bytes and splits on '\n' only; it never
// decodes UTF-8, so a character split across chunks is reassembled intact.
//
// For every '\n' it reports exactly one of:
//   - OnLine(line): the bytes before the '\n', minus one trailing '\r';
//   - OnHeartbeat(): the line was empty or only spaces, tabs and '\r's (the
//     upstream writes a bare "\n" about every 30 s, §4.2);
//   - OnOversizedLine(prefix, total_bytes): the line was longer than
//     max_line_bytes. It is reported once, when its '\n' arrives; only its
//     first 64 KiB are kept (for the dead-letter record) and the rest is
//     discarded as it arrives. Line length counts every byte before the '\n',
//     including a trailing '\r'.
// Bytes after the last '\n' are held until more bytes arrive; Finish() at end
// of stream drops them (a truncated line is never parsed) and reports how
// many there were.
//
// Zero copies where possible: when a line lies entirely inside the chunk
// passed to Feed(), OnLine() gets a view into that chunk; otherwise a view
// into the framer's buffer. Either way the view is valid only during the
// call. Memory held never exceeds max_line_bytes + 64 KiB.
//
// Thread-safety: not thread-safe; one framer belongs to one connection.
// Visitors must not call back into the framer.
//
//   LineFramer framer;                 // 8 MiB line cap
//   framer.Feed(chunk, visitor);       // for every chunk read
//   size_t dropped = framer.Finish();  // at end of stream
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chstream::ingest {

class LineFramer {
 public:
  // How much of an oversized line is kept for OnOversizedLine().
  static constexpr size_t kOversizedPrefixBytes = 64 << 10;

  class Visitor {
   public:
    virtual ~Visitor() = default;
    virtual void OnLine(std::string_view line) = 0;
    virtual void OnHeartbeat() = 0;
    // `prefix` is the first min(total_bytes, 64 KiB) bytes of the line.
    virtual void OnOversizedLine(std::string_view prefix,
                                 size_t total_bytes) = 0;
  };

  // REQUIRES: max_line_bytes > 0.
  explicit LineFramer(size_t max_line_bytes = 8 << 20);

  LineFramer(const LineFramer&) = delete;
  LineFramer& operator=(const LineFramer&) = delete;

  // Consumes `bytes` (any length, any split) and reports every line that a
  // '\n' in them completes, in order.
  void Feed(std::string_view bytes, Visitor& visitor);

  // End of stream: returns the number of bytes of the incomplete last line
  // that are dropped (0 if the stream ended on a '\n'), and resets the framer
  // for a new stream.
  size_t Finish();

  // Bytes of the incomplete current line held in memory (at most
  // max_line_bytes, or 64 KiB once it is known to be oversized).
  size_t buffered() const { return buffer_.size(); }

  size_t max_line_bytes() const { return max_line_bytes_; }

 private:
  // Reports one complete line (without its '\n').
  void Emit(std::string_view line, Visitor& visitor);
  // Switches to discarding the current line, keeping its first 64 KiB:
  // what buffer_ holds of it followed by `more`.
  void StartDiscarding(std::string_view more, size_t total_so_far);
  // Appends `more` to the kept prefix until that holds 64 KiB.
  void KeepPrefix(std::string_view more);

  const size_t max_line_bytes_;
  // The incomplete current line, or while discarding its first 64 KiB.
  std::string buffer_;
  // True while skipping the rest of an oversized line up to its '\n'.
  bool discarding_ = false;
  // While discarding: the oversized line's length so far.
  size_t discarded_total_ = 0;
};

}  // namespace chstream::ingest
