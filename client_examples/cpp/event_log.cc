#include "client_examples/cpp/event_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/json.h"

namespace chstream::client_examples {
namespace {

constexpr std::string_view kLinePrefix = "{\"position\":";

absl::Status ErrnoError(const std::string& what, const std::string& path,
                        int err) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

// Reads exactly `len` bytes at `offset`.
absl::Status ReadAt(int fd, uint64_t offset, size_t len, std::string* out,
                    const std::string& path) {
  out->resize(len);
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, out->data() + done, len - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path, errno);
    }
    if (n == 0) return absl::DataLossError(absl::StrCat(path, " shrank"));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The offset just after the last '\n' strictly before `end`, or 0.
absl::StatusOr<uint64_t> StartOfLineEndingAt(int fd, uint64_t end,
                                             const std::string& path) {
  constexpr uint64_t kChunk = 4096;
  std::string buf;
  uint64_t hi = end;
  while (hi > 0) {
    const uint64_t lo = hi > kChunk ? hi - kChunk : 0;
    absl::Status s = ReadAt(fd, lo, static_cast<size_t>(hi - lo), &buf, path);
    if (!s.ok()) return s;
    const size_t nl = buf.rfind('\n');
    if (nl != std::string::npos) return lo + nl + 1;
    hi = lo;
  }
  return 0;
}

const char* TypeName(v1::EventType type) {
  switch (type) {
    case v1::EVENT_TYPE_CHANGED:
      return "changed";
    case v1::EVENT_TYPE_DELETED:
      return "deleted";
    default:
      return "unspecified";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(
    const std::string& path) {
  const int fd =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot open output file", path, errno);
  std::unique_ptr<EventLog> log(new EventLog(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError("cannot stat", path, errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return log;

  // A last line without its newline was torn by a crash: cut it off.
  std::string last_byte;
  absl::Status s = ReadAt(fd, size - 1, 1, &last_byte, path);
  if (!s.ok()) return s;
  if (last_byte[0] != '\n') {
    absl::StatusOr<uint64_t> keep = StartOfLineEndingAt(fd, size, path);
    if (!keep.ok()) return keep.status();
    if (::ftruncate(fd, static_cast<off_t>(*keep)) != 0) {
      return ErrnoError("cannot truncate a torn line off", path, errno);
    }
    log->truncated_bytes_ = size - *keep;
    size = *keep;
    if (size == 0) return log;
  }

  // The last complete line: [start, size - 1).
  absl::StatusOr<uint64_t> start = StartOfLineEndingAt(fd, size - 1, path);
  if (!start.ok()) return start.status();
  std::string line;
  s = ReadAt(fd, *start, static_cast<size_t>(size - 1 - *start), &line, path);
  if (!s.ok()) return s;
  absl::StatusOr<uint64_t> position = ParsePosition(line);
  if (!position.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the last line of ", path, " was not written by this subscriber (",
        position.status().message(), "); use another --output"));
  }
  log->last_position_ = *position;
  return log;
}

EventLog::~EventLog() { ::close(fd_); }

std::string EventLog::FormatLine(const v1::Event& event) {
  std::string line(kLinePrefix);
  absl::StrAppend(&line, event.position(), ",\"stream\":");
  AppendJsonString(&line, event.stream());
  absl::StrAppend(&line, ",\"timepoint\":", event.timepoint(), ",\"type\":\"",
                  TypeName(event.type()), "\",\"resource_uri\":");
  AppendJsonString(&line, event.resource_uri());
  line += ",\"company_number\":";
  AppendJsonString(&line, event.company_number());
  line += ",\"published_at\":";
  AppendJsonString(
      &line,
      FormatRfc3339(absl::FromUnixSeconds(event.published_at().seconds()) +
                    absl::Nanoseconds(event.published_at().nanos())));
  line += "}";
  return line;
}

absl::StatusOr<uint64_t> EventLog::ParsePosition(std::string_view line) {
  if (line.substr(0, kLinePrefix.size()) != kLinePrefix) {
    return absl::InvalidArgumentError(
        "line does not start with {\"position\":");
  }
  line.remove_prefix(kLinePrefix.size());
  const size_t end = line.find_first_not_of("0123456789");
  uint64_t position = 0;
  if (end == 0 || end == std::string_view::npos || line[end] != ',' ||
      !absl::SimpleAtoi(absl::string_view(line.data(), end), &position)) {
    return absl::InvalidArgumentError("line has no valid position");
  }
  return position;
}

absl::Status EventLog::Append(const v1::Event& event) {
  if (last_position_.has_value() && event.position() <= *last_position_) {
    return absl::FailedPreconditionError(
        absl::StrCat("position ", event.position(), " is not after ",
                     *last_position_, ", the last one in ", path_));
  }
  std::string line = FormatLine(event);
  line += '\n';
  // One write(2): a killed process leaves the line whole or absent. A short
  // write (disk full) is completed, and reported if it cannot be.
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot append to", path_, errno);
    }
    done += static_cast<size_t>(n);
  }
  last_position_ = event.position();
  return absl::OkStatus();
}

absl::Status EventLog::Sync() {
  if (::fdatasync(fd_) != 0)
    return ErrnoError("cannot fdatasync", path_, errno);
  return absl::OkStatus();
}

}  // namespace chstream::client_examples
