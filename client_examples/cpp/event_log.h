// File: client_examples/cpp/event_log.h
//
// The example subscriber's output: an append-only file with one JSON object
// per processed event, e.g.
//
//   {"position":42,"stream":"companies","timepoint":47695461,
//    "type":"changed","resource_uri":"/company/SC571653",
//    "company_number":"SC571653",
//    "published_at":"2022-08-02T15:21:06.000000Z"}
//
// (one line). Because every line carries its position, the file is its own
// record of what was processed: Open() recovers the last position from the
// last line, so a subscriber that was killed after appending an event but
// before saving its position file resumes after that event instead of
// appending it twice. This is the "effect carries its cursor" pattern: a
// database sink would store the position in the same transaction as the rows.
//
// Each line is appended with a single write(2) on an O_APPEND descriptor, so
// a killed process leaves whole lines; a line torn by a machine crash (no
// trailing newline) is cut off by Open() and processed again after restart.
//
// Thread-safety: thread-compatible (one writer).
//
//   CHS_ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log, EventLog::Open(path));
//   std::optional<uint64_t> after = log->last_position();
//   CHS_RETURN_IF_ERROR(log->Append(event));
//   CHS_RETURN_IF_ERROR(log->Sync());  // before saving the position file
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "chstream/v1/chstream.pb.h"

namespace chstream::client_examples {

class EventLog {
 public:
  // Opens `path` for appending, creating it if needed. Cuts off a torn last
  // line. FAILED_PRECONDITION if the last complete line was not written by
  // EventLog (the file is somebody else's).
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(
      const std::string& path);

  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;
  ~EventLog();

  // The position of the last line, or nullopt for an empty file.
  std::optional<uint64_t> last_position() const { return last_position_; }

  // Bytes of a torn last line that Open() cut off (0 normally).
  uint64_t truncated_bytes() const { return truncated_bytes_; }

  // Appends `event` as one line. FAILED_PRECONDITION unless its position is
  // above last_position() (the log never holds a position twice).
  absl::Status Append(const v1::Event& event);

  // Makes every appended line durable (fdatasync).
  absl::Status Sync();

  // The line for `event`, without the newline.
  static std::string FormatLine(const v1::Event& event);

  // The position of a line written by FormatLine().
  static absl::StatusOr<uint64_t> ParsePosition(std::string_view line);

 private:
  EventLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  const int fd_;
  std::optional<uint64_t> last_position_;
  uint64_t truncated_bytes_ = 0;
};

}  // namespace chstream::client_examples
