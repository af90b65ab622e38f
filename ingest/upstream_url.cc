#include "ingest/upstream_url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"

namespace chstream::ingest {

std::string UpstreamUrl::HostHeader() const {
  const bool default_port = (tls && port == "443") || (!tls && port == "80");
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string h = ipv6 ? absl::StrCat("[", host, "]") : host;
  return default_port ? h : absl::StrCat(h, ":", port);
}

std::string UpstreamUrl::ToString() const {
  return log::RedactUrl(
      absl::StrCat(tls ? "https://" : "http://", HostHeader(), base_path));
}

absl::StatusOr<UpstreamUrl> ParseUpstreamUrl(absl::string_view url) {
  UpstreamUrl out;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "https://")) {
    out.tls = true;
  } else if (absl::ConsumePrefix(&rest, "http://")) {
    out.tls = false;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "URL '", log::RedactUrl(std::string_view(url.data(), url.size())),
        "' must start with https:// or http://"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos
                               ? absl::string_view()
                               : rest.substr(slash);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  if (authority.find('@') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "URL '", log::RedactUrl(std::string_view(url.data(), url.size())),
        "' carries user info (a name or password before '@'), which is not "
        "supported"));
  }
  out.base_path = std::string(path);
  out.port = out.tls ? "443" : "80";
  if (absl::ConsumePrefix(&authority, "[")) {  // [::1]:8080
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad IPv6 host in URL '",
          log::RedactUrl(std::string_view(url.data(), url.size())), "'"));
    }
    out.host = std::string(authority.substr(0, close));
    authority.remove_prefix(close + 1);
    if (absl::ConsumePrefix(&authority, ":")) out.port = std::string(authority);
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) {
      out.port = std::string(authority.substr(colon + 1));
    }
  }
  int port;
  if (out.host.empty() || !absl::SimpleAtoi(out.port, &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "URL '", log::RedactUrl(std::string_view(url.data(), url.size())),
        "' needs a host and a valid port"));
  }
  return out;
}

}  // namespace chstream::ingest
