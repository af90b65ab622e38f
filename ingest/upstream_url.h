// File: ingest/upstream_url.h
//
// The parts of an upstream base URL ("https://stream.companieshouse.gov.uk",
// "http://127.0.0.1:8080/prefix") that a connection needs.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace chstream::ingest {

struct UpstreamUrl {
  bool tls = true;
  std::string host;
  std::string port;       // "443" by default for https, "80" for http
  std::string base_path;  // without a trailing '/', maybe empty

  // Host header value: host, plus ":port" when not the scheme's default.
  std::string HostHeader() const;
  std::string ToString() const;
};

absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(absl::string_view url);

}  // namespace chstream::ingest
