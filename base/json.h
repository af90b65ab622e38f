// File: base/json.h
//
// Minimal JSON text helpers shared by the logger, the simulator and the
// metrics/alert payloads: string escaping and RFC 3339 time formatting.
#pragma once

#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace chstream {

// Appends `s` as a JSON string literal (with quotes). Control characters,
// '"' and '\\' are escaped; valid UTF-8 is copied as is and invalid byte
// sequences become U+FFFD (base/utf8.h), so that the result is always valid
// JSON text (log lines carry text from the upstream).
// With `go_html_escape`, '<', '>' and '&' become \u003c, \u003e, \u0026 as
// Go's encoding/json writes them.
void AppendJsonString(std::string* out, std::string_view s,
                      bool go_html_escape = false);

std::string JsonString(std::string_view s);

// "2026-11-28T13:06:10.123456Z" (UTC, microseconds).
std::string FormatRfc3339(absl::Time t);

}  // namespace chstream
