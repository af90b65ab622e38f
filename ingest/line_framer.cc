#include "ingest/line_framer.h"

#include <algorithm>
#include <cstring>

namespace chstream::ingest {

LineFramer::LineFramer(size_t max_line_bytes)
    : max_line_bytes_(std::max<size_t>(max_line_bytes, 1)) {}

void LineFramer::Feed(std::string_view bytes, Visitor& visitor) {
  const char* const data = bytes.data();
  const size_t size = bytes.size();
  size_t pos = 0;
  while (pos < size) {
    const void* found = std::memchr(data + pos, '\n', size - pos);
    const size_t end =
        found != nullptr ? static_cast<const char*>(found) - data : size;
    const std::string_view segment(data + pos, end - pos);
    const bool complete = found != nullptr;
    pos = end + 1;

    if (discarding_) {
      discarded_total_ += segment.size();
      KeepPrefix(segment);
      if (!complete) return;
      visitor.OnOversizedLine(buffer_, discarded_total_);
      buffer_.clear();
      discarding_ = false;
      discarded_total_ = 0;
      continue;
    }

    const size_t total = buffer_.size() + segment.size();
    if (total > max_line_bytes_) {
      if (complete && buffer_.empty()) {
        // Entirely inside this chunk: report straight from it.
        visitor.OnOversizedLine(segment.substr(0, kOversizedPrefixBytes),
                                total);
        continue;
      }
      StartDiscarding(segment, total);
      if (!complete) return;
      visitor.OnOversizedLine(buffer_, discarded_total_);
      buffer_.clear();
      discarding_ = false;
      discarded_total_ = 0;
      continue;
    }

    if (!complete) {
      if (buffer_.capacity() < total) {
        // Grow geometrically, but never past the cap.
        buffer_.reserve(
            std::min(max_line_bytes_, std::max(total, 2 * buffer_.capacity())));
      }
      buffer_.append(segment);
      return;
    }
    if (buffer_.empty()) {
      Emit(segment, visitor);  // zero-copy: a view into the chunk
    } else {
      buffer_.append(segment);
      Emit(buffer_, visitor);
      buffer_.clear();
    }
  }
}

void LineFramer::StartDiscarding(std::string_view more, size_t total_so_far) {
  if (buffer_.size() >= kOversizedPrefixBytes) {
    buffer_.resize(kOversizedPrefixBytes);
  }
  // Give back what a long partial line made the buffer grow to.
  buffer_.shrink_to_fit();
  KeepPrefix(more);
  discarding_ = true;
  discarded_total_ = total_so_far;
}

void LineFramer::KeepPrefix(std::string_view more) {
  // With max_line_bytes under 64 KiB the prefix is still being filled
  // while the rest of the line is discarded.
  if (buffer_.size() < kOversizedPrefixBytes) {
    buffer_.append(more.substr(0, kOversizedPrefixBytes - buffer_.size()));
  }
}

void LineFramer::Emit(std::string_view line, Visitor& visitor) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
    visitor.OnHeartbeat();
  } else {
    visitor.OnLine(line);
  }
}

size_t LineFramer::Finish() {
  const size_t dropped = discarding_ ? discarded_total_ : buffer_.size();
  buffer_.clear();
  discarding_ = false;
  discarded_total_ = 0;
  return dropped;
}

}  // namespace chstream::ingest
