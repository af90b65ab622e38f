#include "tests/ingest/simulator/test_http_client.h"

#include <openssl/ssl.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace chstream::ingest::sim::testing {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;

namespace {

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

absl::Status FromError(const error_code& ec) {
  if (!ec) return absl::OkStatus();
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
    return absl::UnavailableError("eof");
  }
  if (ec == asio::error::connection_reset) {
    return absl::AbortedError("connection reset");
  }
  return absl::UnknownError(ec.message());
}

}  // namespace

std::string ResponseHead::Header(std::string_view lower_case_name) const {
  auto it = headers.find(std::string(lower_case_name));
  return it == headers.end() ? "" : it->second;
}

class TestHttpClient::Impl {
 public:
  Impl() : socket(ioc) {}

  // Runs one asynchronous operation to completion or until `timeout`.
  template <typename Start>
  absl::Status Run(Start start, absl::Duration timeout, size_t* bytes) {
    bool done = false;
    error_code result;
    start([&](error_code ec, size_t n) {
      done = true;
      result = ec;
      if (bytes) *bytes = n;
    });
    ioc.restart();
    ioc.run_for(ToChrono(timeout));
    if (!done) {
      error_code ignored;
      socket_ref().cancel(ignored);
      ioc.restart();
      ioc.run();
      return absl::DeadlineExceededError("timed out");
    }
    return FromError(result);
  }

  tcp::socket& socket_ref() { return tls ? tls->next_layer() : socket; }

  asio::io_context ioc;
  tcp::socket socket;
  std::optional<ssl::context> tls_context;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
};

TestHttpClient::TestHttpClient(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

TestHttpClient::~TestHttpClient() { Close(); }

void TestHttpClient::Close() {
  error_code ignored;
  impl_->socket_ref().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->socket_ref().close(ignored);
}

absl::StatusOr<std::unique_ptr<TestHttpClient>> TestHttpClient::Connect(
    uint16_t port, std::optional<Tls> tls, absl::Duration timeout) {
  auto impl = std::make_unique<Impl>();
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  absl::Status status = impl->Run(
      [&](auto handler) {
        impl->socket.async_connect(
            endpoint, [handler](error_code ec) mutable { handler(ec, 0); });
      },
      timeout, nullptr);
  if (!status.ok()) return status;
  error_code ignored;
  impl->socket.set_option(tcp::no_delay(true), ignored);
  if (tls) {
    impl->tls_context.emplace(ssl::context::tls_client);
    error_code ec;
    impl->tls_context->add_certificate_authority(asio::buffer(tls->ca_pem), ec);
    if (ec) return absl::InvalidArgumentError("bad CA PEM: " + ec.message());
    impl->tls_context->set_verify_mode(ssl::verify_peer);
    impl->tls = std::make_unique<ssl::stream<tcp::socket>>(
        std::move(impl->socket), *impl->tls_context);
    impl->tls->set_verify_callback(ssl::host_name_verification(tls->host));
    SSL_set_tlsext_host_name(impl->tls->native_handle(), tls->host.c_str());
    status = impl->Run(
        [&](auto handler) {
          impl->tls->async_handshake(
              ssl::stream_base::client,
              [handler](error_code ec) mutable { handler(ec, 0); });
        },
        timeout, nullptr);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("TLS handshake: ", status.message()));
    }
  }
  return std::unique_ptr<TestHttpClient>(new TestHttpClient(std::move(impl)));
}

absl::Status TestHttpClient::Get(std::string_view target,
                                 std::optional<std::string> key,
                                 std::string_view password,
                                 std::string_view method) {
  std::string request =
      absl::StrCat(std::string(method), " ", std::string(target),
                   " HTTP/1.1\r\n", "Host: stream.companieshouse.gov.uk\r\n");
  if (key) {
    absl::StrAppend(
        &request, "Authorization: Basic ",
        absl::Base64Escape(absl::StrCat(*key, ":", std::string(password))),
        "\r\n");
  }
  request.append("\r\n");
  return WriteRaw(request);
}

absl::Status TestHttpClient::WriteRaw(std::string_view bytes) {
  return impl_->Run(
      [&](auto handler) {
        if (impl_->tls) {
          asio::async_write(*impl_->tls, asio::buffer(bytes), handler);
        } else {
          asio::async_write(impl_->socket, asio::buffer(bytes), handler);
        }
      },
      absl::Seconds(10), nullptr);
}

absl::Status TestHttpClient::Fill(absl::Time deadline) {
  std::array<char, 64 * 1024> buffer;
  size_t n = 0;
  absl::Status status = impl_->Run(
      [&](auto handler) {
        if (impl_->tls) {
          impl_->tls->async_read_some(asio::buffer(buffer), handler);
        } else {
          impl_->socket.async_read_some(asio::buffer(buffer), handler);
        }
      },
      deadline - absl::Now(), &n);
  raw_.append(buffer.data(), n);
  return status;
}

absl::StatusOr<ResponseHead> TestHttpClient::ReadHead(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t end;
  while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
    absl::Status status = Fill(deadline);
    if (!status.ok()) return status;
  }
  const std::string head = raw_.substr(0, end);
  raw_.erase(0, end + 4);
  ResponseHead result;
  size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.compare(0, 9, "HTTP/1.1 ") != 0 ||
      !absl::SimpleAtoi(status_line.substr(9, 3), &result.status)) {
    return absl::InternalError("bad status line: " + status_line);
  }
  while (line_end != std::string::npos) {
    const size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string line = head.substr(start, line_end - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    result.headers[absl::AsciiStrToLower(line.substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return result;
}

absl::StatusOr<std::string> TestHttpClient::ReadFixedBody(
    const ResponseHead& head, absl::Duration timeout) {
  size_t length = 0;
  if (!absl::SimpleAtoi(head.Header("content-length"), &length)) {
    return absl::InternalError("no Content-Length");
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (raw_.size() < length) {
    absl::Status status = Fill(deadline);
    if (!status.ok()) return status;
  }
  std::string body = raw_.substr(0, length);
  raw_.erase(0, length);
  return body;
}

absl::StatusOr<TestHttpClient::Chunk> TestHttpClient::ReadChunk(
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t line_end;
  while ((line_end = raw_.find("\r\n")) == std::string::npos) {
    absl::Status status = Fill(deadline);
    if (!status.ok()) return status;
  }
  size_t size = 0;
  const std::string size_text = raw_.substr(0, line_end);
  if (!absl::SimpleHexAtoi(size_text, &size)) {
    return absl::InternalError("bad chunk size: " + size_text);
  }
  const size_t need = line_end + 2 + size + 2;
  while (raw_.size() < need) {
    absl::Status status = Fill(deadline);
    if (!status.ok()) return status;
  }
  if (raw_.compare(line_end + 2 + size, 2, "\r\n") != 0) {
    return absl::InternalError("chunk not followed by CRLF");
  }
  Chunk chunk;
  chunk.data = raw_.substr(line_end + 2, size);
  chunk.last = size == 0;
  raw_.erase(0, need);
  if (!chunk.last) chunks_.push_back(chunk.data);
  return chunk;
}

absl::StatusOr<std::string> TestHttpClient::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t newline;
  while ((newline = line_buffer_.find('\n')) == std::string::npos) {
    if (body_ended_) return absl::OutOfRangeError("end of body");
    absl::StatusOr<Chunk> chunk = ReadChunk(deadline - absl::Now());
    if (!chunk.ok()) return chunk.status();
    if (chunk->last) {
      body_ended_ = true;
      return absl::OutOfRangeError("end of body");
    }
    line_buffer_.append(chunk->data);
  }
  std::string line = line_buffer_.substr(0, newline);
  line_buffer_.erase(0, newline + 1);
  return line;
}

absl::StatusOr<std::vector<std::string>> TestHttpClient::ReadEvents(
    int count, absl::Duration timeout, int* heartbeats) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<std::string> events;
  while (static_cast<int>(events.size()) < count) {
    absl::StatusOr<std::string> line = ReadLine(deadline - absl::Now());
    if (!line.ok()) {
      return absl::Status(line.status().code(),
                          absl::StrCat(line.status().message(), " after ",
                                       events.size(), " events"));
    }
    if (line->empty()) {
      if (heartbeats) ++*heartbeats;
    } else {
      events.push_back(*std::move(line));
    }
  }
  return events;
}

}  // namespace chstream::ingest::sim::testing
