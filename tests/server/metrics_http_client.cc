#include "tests/server/metrics_http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "base/clock.h"

namespace chstream::server::testing {
namespace {

int MillisLeft(absl::Time deadline) {
  const absl::Duration left = deadline - Clock::Real()->Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

// Waits for `events` on fd; false on timeout.
bool Wait(int fd, short events, absl::Time deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // let the next call report the error
  }
}

}  // namespace

std::string TestResponse::Header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? "" : it->second;
}

absl::StatusOr<std::unique_ptr<TestConnection>> TestConnection::Connect(
    int port, absl::Duration timeout) {
  const absl::Time deadline = Clock::Real()->Now() + timeout;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  std::unique_ptr<TestConnection> conn(new TestConnection(fd));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
    }
    if (!Wait(fd, POLLOUT, deadline)) {
      return absl::DeadlineExceededError("connect timed out");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
    }
  }
  return conn;
}

TestConnection::~TestConnection() { Close(); }

void TestConnection::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status TestConnection::Send(std::string_view bytes) {
  const absl::Time deadline = Clock::Real()->Now() + kTestTimeout;
  while (!bytes.empty()) {
    const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!Wait(fd_, POLLOUT, deadline)) {
        return absl::DeadlineExceededError("send timed out");
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status TestConnection::ReadSome(absl::Time deadline) {
  while (true) {
    char buf[16384];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n == 0) return absl::UnavailableError("closed");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!Wait(fd_, POLLIN, deadline)) {
        return absl::DeadlineExceededError("read timed out");
      }
      continue;
    }
    if (errno == ECONNRESET) return absl::UnavailableError("closed (reset)");
    return absl::InternalError(absl::StrCat("recv: ", strerror(errno)));
  }
}

absl::StatusOr<TestResponse> TestConnection::ReadResponse(
    bool head_request, absl::Duration timeout) {
  const absl::Time deadline = Clock::Real()->Now() + timeout;
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (absl::Status s = ReadSome(deadline); !s.ok()) return s;
  }
  const std::string head = buffer_.substr(0, end);
  buffer_.erase(0, end + 4);
  TestResponse r;
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> status_line =
      absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &r.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", lines[0]));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(
            absl::string_view(lines[i]).substr(colon + 1)));
  }
  size_t length = 0;
  if (!head_request && !r.Header("content-length").empty() &&
      !absl::SimpleAtoi(r.Header("content-length"), &length)) {
    return absl::DataLossError("bad Content-Length");
  }
  absl::StatusOr<std::string> body = ReadBytes(length, deadline);
  if (!body.ok()) return body.status();
  r.body = *std::move(body);
  return r;
}

absl::StatusOr<std::string> TestConnection::ReadBytes(size_t n,
                                                      absl::Time deadline) {
  while (buffer_.size() < n) {
    if (absl::Status s = ReadSome(deadline); !s.ok()) return s;
  }
  std::string bytes = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return bytes;
}

absl::Status TestConnection::WaitForClose(absl::Duration timeout) {
  const absl::Time deadline = Clock::Real()->Now() + timeout;
  while (true) {
    absl::Status s = ReadSome(deadline);
    if (absl::IsUnavailable(s)) return absl::OkStatus();
    if (!s.ok()) return s;
    buffer_.clear();
  }
}

absl::StatusOr<TestResponse> HttpRequest(int port, std::string_view method,
                                         std::string_view target) {
  absl::StatusOr<std::unique_ptr<TestConnection>> conn =
      TestConnection::Connect(port);
  if (!conn.ok()) return conn.status();
  if (absl::Status s = (*conn)->Send(absl::StrCat(
          absl::string_view(method.data(), method.size()), " ",
          absl::string_view(target.data(), target.size()),
          " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
      !s.ok()) {
    return s;
  }
  return (*conn)->ReadResponse(method == "HEAD");
}

}  // namespace chstream::server::testing
