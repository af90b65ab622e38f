#include "ingest/response_reader.h"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/utf8.h"

namespace chstream::ingest::response_reader_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

Outcome MakeOutcome(Outcome::Kind kind, std::string detail) {
  Outcome o;
  o.kind = kind;
  o.detail = std::move(detail);
  return o;
}

bool IsEndOfStream(const beast::error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream ||
         ec == http::error::partial_message ||
         ec == asio::ssl::error::stream_truncated;
}

}  // namespace

Outcome HeaderError(const beast::error_code& ec,
                    const ResponseReadOptions& options) {
  return MakeOutcome(
      ec == beast::error::timeout ? Outcome::Kind::kIdleTimeout
                                  : Outcome::Kind::kNetworkError,
      ec == beast::error::timeout
          ? absl::StrCat("no response headers within ",
                         absl::FormatDuration(options.header_timeout))
      : ec == http::error::header_limit || ec == http::error::buffer_overflow
          ? absl::StrCat("the upstream's response headers exceed ",
                         kMaxHeaderBytes, " bytes")
          : absl::StrCat("reading the response headers failed: ",
                         ec.message()));
}

Outcome ErrorStatus(const Parser& parser, const std::string& body) {
  const int status = static_cast<int>(parser.get().result_int());
  Outcome o = MakeOutcome(Outcome::Kind::kHttpStatus, "");
  o.http_status = status;
  auto ra = parser.get().find(http::field::retry_after);
  int seconds;
  if (ra != parser.get().end() &&
      absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(
                           ra->value().data(), ra->value().size())),
                       &seconds) &&
      seconds >= 0) {
    o.retry_after = absl::Seconds(seconds);
  }
  // The detail reaches logs and StreamStatus.last_error (a proto string):
  // cut at a character boundary, invalid bytes replaced.
  const std::string_view kept = TruncateUtf8(body, kErrorBodyBytes);
  const absl::string_view trimmed =
      absl::StripAsciiWhitespace(absl::string_view(kept.data(), kept.size()));
  const auto reason = parser.get().reason();
  o.detail = SanitizeUtf8(absl::StrCat(
      "HTTP ", status, " ", absl::string_view(reason.data(), reason.size()),
      trimmed.empty() ? "" : ": ", trimmed));
  return o;
}

Outcome BodyEnded(const beast::error_code& ec,
                  const ResponseReadOptions& options,
                  absl::Duration connected_for) {
  Outcome o;
  if (!ec) {
    o = MakeOutcome(Outcome::Kind::kStreamEndedClean,
                    "the upstream ended the stream");
  } else if (ec == beast::error::timeout) {
    o = MakeOutcome(
        Outcome::Kind::kIdleTimeout,
        absl::StrCat("no byte for ", absl::FormatDuration(options.idle_timeout),
                     " (idle watchdog)"));
  } else if (ec == http::error::buffer_overflow) {
    o = MakeOutcome(Outcome::Kind::kNetworkError,
                    absl::StrCat("the upstream sent a chunk header (chunk "
                                 "extensions) or trailer over ",
                                 kMaxWireBufferBytes, " bytes"));
  } else if (IsEndOfStream(ec)) {
    o = MakeOutcome(Outcome::Kind::kNetworkError,
                    "connection closed before the end of the stream");
  } else {
    o = MakeOutcome(Outcome::Kind::kNetworkError,
                    absl::StrCat("reading the stream failed: ", ec.message()));
  }
  o.connected_for = connected_for;
  return o;
}

}  // namespace chstream::ingest::response_reader_internal
