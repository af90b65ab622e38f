#include "base/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/json.h"

namespace chstream::log {
namespace {

struct State {
  absl::Mutex mu;
  std::vector<std::string> secrets ABSL_GUARDED_BY(mu);
  std::function<void(std::string_view)> sink ABSL_GUARDED_BY(mu);
};

State& GetState() {
  static State* const state = new State();
  return *state;
}

std::atomic<int> min_level{static_cast<int>(Level::kInfo)};

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::string RedactLocked(std::string_view text, const State& state)
    ABSL_SHARED_LOCKS_REQUIRED(state.mu) {
  std::string out(text);
  for (const std::string& secret : state.secrets) {
    if (out.find(secret) != std::string::npos) {
      out = absl::StrReplaceAll(out, {{secret, "[REDACTED]"}});
    }
  }
  return out;
}

}  // namespace

Field::Field(std::string_view key, std::string_view value) : key_(key) {
  AppendJsonString(&json_, value);
}
Field::Field(std::string_view key, bool value)
    : key_(key), json_(value ? "true" : "false") {}
Field::Field(std::string_view key, double value)
    : key_(key), json_(absl::StrCat(value)) {}
Field::Field(std::string_view key, const absl::Status& status) : key_(key) {
  AppendJsonString(&json_, status.ToString());
}
Field::Field(std::string_view key, absl::Time time) : key_(key) {
  AppendJsonString(&json_, FormatRfc3339(time));
}
Field::Field(std::string_view key, absl::Duration duration)
    : key_(key), json_(absl::StrCat(absl::ToDoubleSeconds(duration))) {}

void Write(Level level, std::string_view msg,
           std::initializer_list<Field> fields) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) {
    return;
  }
  std::string line = "{\"time\":";
  AppendJsonString(&line, FormatRfc3339(Clock::Real()->Now()));
  absl::StrAppend(&line, ",\"level\":\"", LevelName(level), "\",\"msg\":");
  AppendJsonString(&line, msg);
  for (const Field& f : fields) {
    line.push_back(',');
    AppendJsonString(&line, f.key());
    line.push_back(':');
    line.append(f.json());
  }
  line.push_back('}');

  State& state = GetState();
  absl::MutexLock lock(&state.mu);
  line = RedactLocked(line, state);
  if (state.sink) {
    state.sink(line);
    return;
  }
  line.push_back('\n');
  // One write(2) per line so that lines from several threads or processes
  // never interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void SetMinLevel(Level level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool ParseLevel(std::string_view text, Level* level) {
  if (text == "debug") {
    *level = Level::kDebug;
  } else if (text == "info") {
    *level = Level::kInfo;
  } else if (text == "warning") {
    *level = Level::kWarning;
  } else if (text == "error") {
    *level = Level::kError;
  } else {
    return false;
  }
  return true;
}

void AddSecret(std::string_view secret) {
  if (secret.empty()) return;
  State& state = GetState();
  absl::MutexLock lock(&state.mu);
  state.secrets.emplace_back(secret);
}

std::string Redact(std::string_view text) {
  State& state = GetState();
  absl::ReaderMutexLock lock(&state.mu);
  return RedactLocked(text, state);
}

std::string RedactUrl(std::string_view url) {
  constexpr char kRedacted[] = "[URL redacted]";
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    if (url.find_first_of("@/?#") != std::string_view::npos) return kRedacted;
    return std::string(url);
  }
  std::string scheme(url.substr(0, sep));
  if (scheme.empty()) return kRedacted;
  for (char& c : scheme) {
    if (!absl::ascii_isalnum(c) && c != '+' && c != '-' && c != '.') {
      return kRedacted;
    }
    c = absl::ascii_tolower(c);
  }
  std::string_view rest = url.substr(sep + 3);
  const size_t end = std::min(rest.find_first_of("/?#"), rest.size());
  std::string_view authority = rest.substr(0, end);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);  // user info
  }
  if (authority.empty()) return kRedacted;
  const std::string_view tail = rest.substr(end);
  return absl::StrCat(scheme, "://",
                      absl::string_view(authority.data(), authority.size()),
                      tail.empty() || tail == "/" ? "" : "/...");
}

void SetSinkForTest(std::function<void(std::string_view)> sink) {
  State& state = GetState();
  absl::MutexLock lock(&state.mu);
  state.sink = std::move(sink);
}

}  // namespace chstream::log
