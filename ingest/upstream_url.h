// File: ingest/upstream_url.h
//
// The parts of an upstream base URL ("https://stream.companieshouse.gov.uk",
// "http://127.0.0.1:8080/prefix") that a connection needs. Also used for the
// alert webhook's URL.
//
// Nothing here ever puts user info, path or query into a message: errors and
// ToString() go through log::RedactUrl, because a webhook's path is its
// secret.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chstream::ingest {

struct UpstreamUrl {
  bool tls = true;
  std::string host;
  std::string port;       // "443" by default for https, "80" for http
  std::string base_path;  // without a trailing '/', maybe empty; may be secret

  // Host header value: host, plus ":port" when not the scheme's default.
  std::string HostHeader() const;
  // For logs, status and errors: scheme://host[:port], "/..." for a path
  // (log::RedactUrl).
  std::string ToString() const;
};

// Parses an http:// or https:// URL with a host and an optional port and
// path. User info (user:password@) is refused: the upstream key comes from
// CH_STREAMING_API_KEY. Error messages show the URL redacted.
absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(absl::string_view url);

}  // namespace chstream::ingest
