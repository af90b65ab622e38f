#include "client_examples/cpp/position_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace chstream::client_examples {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path,
                        int err) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes all of `data`, retrying short writes and EINTR.
absl::Status WriteAll(int fd, const std::string& data,
                      const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path, errno);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<SavedPosition>> ReadSavedPosition(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<SavedPosition>();
    return ErrnoError("cannot open position file", path, errno);
  }
  std::string text;
  char buf[256];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoError("cannot read position file", path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 128) break;  // far longer than a position and an id
  }
  ::close(fd);
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  SavedPosition saved;
  if (const size_t space = trimmed.find(' ');
      space != absl::string_view::npos) {
    const absl::string_view id = trimmed.substr(space + 1);
    if (id.size() != 32 ||
        id.find_first_not_of("0123456789abcdef") != absl::string_view::npos) {
      return absl::DataLossError(absl::StrCat(
          "position file ", path,
          " does not hold a position and a store_id (32 hex digits); fix or "
          "remove it"));
    }
    saved.store_id = std::string(id);
    trimmed = trimmed.substr(0, space);
  }
  uint64_t& position = saved.position;
  const bool digits_only =
      !trimmed.empty() &&
      trimmed.find_first_not_of("0123456789") == absl::string_view::npos;
  if (!digits_only || !absl::SimpleAtoi(trimmed, &position)) {
    return absl::DataLossError(absl::StrCat(
        "position file ", path,
        " does not hold a position (one decimal number); fix or remove it"));
  }
  return std::optional<SavedPosition>(std::move(saved));
}

absl::StatusOr<std::optional<uint64_t>> ReadPositionFile(
    const std::string& path) {
  absl::StatusOr<std::optional<SavedPosition>> saved = ReadSavedPosition(path);
  if (!saved.ok()) return saved.status();
  if (!saved->has_value()) return std::optional<uint64_t>();
  return std::optional<uint64_t>((*saved)->position);
}

absl::Status WritePositionFile(const std::string& path, uint64_t position) {
  return WriteSavedPosition(path, {.position = position, .store_id = ""});
}

absl::Status WriteSavedPosition(const std::string& path,
                                const SavedPosition& saved) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp, errno);
  std::string line = absl::StrCat(saved.position);
  if (!saved.store_id.empty()) absl::StrAppend(&line, " ", saved.store_id);
  line.push_back('\n');
  absl::Status status = WriteAll(fd, line, tmp);
  if (status.ok() && ::fsync(fd) != 0) {
    status = ErrnoError("cannot fsync", tmp, errno);
  }
  if (::close(fd) != 0 && status.ok()) {
    status = ErrnoError("cannot close", tmp, errno);
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError("cannot rename onto", path, errno);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  // Make the rename itself durable.
  const std::string dir = DirectoryOf(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoError("cannot open directory", dir, errno);
  if (::fsync(dir_fd) != 0) {
    const int err = errno;
    ::close(dir_fd);
    return ErrnoError("cannot fsync directory", dir, err);
  }
  ::close(dir_fd);
  return absl::OkStatus();
}

}  // namespace chstream::client_examples
