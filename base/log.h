// File: base/log.h
//
// Structured logs: one JSON object per line on stderr, with the fields
// "time", "level", "msg" and then the caller's fields in order:
//
//   {"time":"2026-11-28T13:06:10.123456Z","level":"info","msg":"connected",
//    "stream":"companies","http_status":200}
//
//   chstream::log::Info("connected", {{"stream", name}, {"http_status", 200}});
//
// Secrets registered with AddSecret() are replaced by "[REDACTED]" in every
// line before it is written, whichever field or message they appear in, so a
// key echoed back in an error message can never reach the log.
//
// Thread-safety: every function is safe to call from any thread; lines are
// written whole.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace chstream::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// One key/value of a log line. Strings are quoted; numbers and booleans are
// not.
class Field {
 public:
  Field(std::string_view key, std::string_view value);
  Field(std::string_view key, const char* value)
      : Field(key, std::string_view(value)) {}
  Field(std::string_view key, const std::string& value)
      : Field(key, std::string_view(value)) {}
  Field(std::string_view key, bool value);
  Field(std::string_view key, double value);
  Field(std::string_view key, const absl::Status& status);
  Field(std::string_view key, absl::Time time);
  Field(std::string_view key, absl::Duration duration);  // seconds, as number
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>,
                             int> = 0>
  Field(std::string_view key, T value)
      : key_(key), json_(std::to_string(value)) {}

  std::string_view key() const { return key_; }
  // The value as JSON text.
  const std::string& json() const { return json_; }

 private:
  std::string_view key_;
  std::string json_;
};

void Write(Level level, std::string_view msg,
           std::initializer_list<Field> fields = {});

inline void Debug(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Level::kDebug, msg, f);
}
inline void Info(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Level::kInfo, msg, f);
}
inline void Warning(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Level::kWarning, msg, f);
}
inline void Error(std::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Level::kError, msg, f);
}

// Lines below this level are dropped (default kInfo).
void SetMinLevel(Level level);
bool ParseLevel(std::string_view text, Level* level);

// Registers a secret (e.g. the stream key) to be redacted from every line.
// Empty strings are ignored.
void AddSecret(std::string_view secret);
// Returns `text` with every registered secret replaced by "[REDACTED]".
std::string Redact(std::string_view text);

// A URL as it may appear in a log line, a status or an error: scheme, host
// and port only. User info, path, query and fragment can hold secrets (a
// Slack or Teams webhook's secret is its path), so they are dropped; "/..."
// marks that a path or query was there. Text that is not a URL is returned
// as is when it cannot hold any of those parts ("simulator", "host:port"),
// else replaced by "[URL redacted]". Use it wherever a URL leaves the code.
//
//   RedactUrl("https://user:pw@hooks.slack.com/services/T0/B0/x")
//       == "https://hooks.slack.com/..."
std::string RedactUrl(std::string_view url);

// Sends lines (without the trailing newline) to `sink` instead of stderr;
// nullptr restores stderr. For tests.
void SetSinkForTest(std::function<void(std::string_view)> sink);

}  // namespace chstream::log
