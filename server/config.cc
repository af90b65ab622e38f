#include "server/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "ingest/upstream_url.h"
#include "storage/event.h"

extern char** environ;

namespace chstream::server {
namespace {

using Setter = std::function<absl::Status(absl::string_view, Config&)>;

struct Setting {
  std::string name;  // flag name without "--"
  std::string default_text;
  std::string help;
  Setter set;
};

std::string EnvName(absl::string_view flag) {
  return absl::StrCat("CHSTREAM_", absl::AsciiStrToUpper(flag));
}

absl::Status Invalid(absl::string_view allowed) {
  return absl::InvalidArgumentError(allowed);
}

Setter String(std::string Config::*field) {
  return [field](absl::string_view v, Config& c) {
    c.*field = std::string(v);
    return absl::OkStatus();
  };
}

Setter Bool(bool Config::*field) {
  return [field](absl::string_view v, Config& c) {
    std::string s = absl::AsciiStrToLower(v);
    // An empty value is refused, not read as true: a deployment template
    // that leaves `CHSTREAM_ALLOW_INSECURE_REMOTE=` blank must not open a
    // door. (A bare --flag on the command line is passed here as "true".)
    if (s.empty()) {
      return Invalid(
          "true or false; an empty value is not allowed (set one, "
          "or remove the variable for the default)");
    }
    if (s == "true" || s == "1" || s == "yes") {
      c.*field = true;
    } else if (s == "false" || s == "0" || s == "no") {
      c.*field = false;
    } else {
      return Invalid("true or false");
    }
    return absl::OkStatus();
  };
}

Setter Int(int Config::*field, int lo, int hi) {
  return [field, lo, hi](absl::string_view v, Config& c) {
    int n;
    if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi) {
      return Invalid(absl::StrCat("an integer from ", lo, " to ", hi));
    }
    c.*field = n;
    return absl::OkStatus();
  };
}

Setter Int64(int64_t Config::*field, int64_t lo, int64_t hi) {
  return [field, lo, hi](absl::string_view v, Config& c) {
    int64_t n;
    if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi) {
      return Invalid(absl::StrCat("an integer from ", lo, " to ", hi));
    }
    c.*field = n;
    return absl::OkStatus();
  };
}

Setter Double(double Config::*field, double lo, double hi) {
  return [field, lo, hi](absl::string_view v, Config& c) {
    double d;
    if (!absl::SimpleAtod(v, &d) || !(d >= lo && d <= hi)) {
      return Invalid(absl::StrCat("a number from ", lo, " to ", hi));
    }
    c.*field = d;
    return absl::OkStatus();
  };
}

Setter Duration(absl::Duration Config::*field, absl::Duration lo,
                absl::Duration hi) {
  return [field, lo, hi](absl::string_view v, Config& c) {
    absl::Duration d;
    if (!absl::ParseDuration(v, &d) || d < lo || d > hi) {
      return Invalid(absl::StrCat("a duration such as 90s, 15m or 500ms, from ",
                                  absl::FormatDuration(lo), " to ",
                                  absl::FormatDuration(hi)));
    }
    c.*field = d;
    return absl::OkStatus();
  };
}

// Retention periods: a duration as above, or whole days ("90d").
Setter RetentionDuration(absl::Duration Config::*field) {
  return [field](absl::string_view v, Config& c) {
    absl::Duration d;
    int64_t days;
    if (absl::EndsWith(v, "d") &&
        absl::SimpleAtoi(v.substr(0, v.size() - 1), &days) && days >= 0 &&
        days <= 100 * 366) {
      d = absl::Hours(24 * days);
    } else if (!absl::ParseDuration(v, &d) || d < absl::ZeroDuration() ||
               d > absl::Hours(24 * 366 * 100)) {
      return Invalid(
          "a duration such as 90d, 36h or 30s (0 = keep everything)");
    }
    c.*field = d;
    return absl::OkStatus();
  };
}

// A size in bytes, or with a binary suffix: 500M, 20G, 1T (KiB, MiB, GiB,
// TiB; an optional trailing B or iB is accepted).
absl::Status SetRetainBytes(absl::string_view v, Config& c) {
  absl::string_view digits = v;
  int shift = 0;
  for (absl::string_view unit : {"iB", "B"}) {
    if (absl::EndsWith(digits, unit) && digits.size() > unit.size()) {
      digits.remove_suffix(unit.size());
      break;
    }
  }
  if (!digits.empty()) {
    switch (absl::ascii_toupper(digits.back())) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift != 0) digits.remove_suffix(1);
  }
  int64_t n;
  if (!absl::SimpleAtoi(digits, &n) || n < 0 ||
      n > (std::numeric_limits<int64_t>::max() >> shift)) {
    return Invalid(
        "bytes, or with a suffix such as 500M, 20G or 1T (0 = no cap)");
  }
  c.retain_bytes = n << shift;
  return absl::OkStatus();
}

bool IsStreamName(absl::string_view s) {
  for (const char* name : storage::kStreamNames) {
    if (s == name) return true;
  }
  return false;
}

std::string AllStreamNames() {
  return absl::StrJoin(storage::kStreamNames, ", ");
}

absl::Status SetStreams(absl::string_view v, Config& c) {
  std::vector<std::string> out;
  if (absl::StripAsciiWhitespace(v) == "all") {
    for (const char* name : storage::kStreamNames) out.emplace_back(name);
  } else {
    for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
      std::string name(absl::StripAsciiWhitespace(part));
      if (!IsStreamName(name)) {
        return Invalid(absl::StrCat("'all' or a comma list of: ",
                                    AllStreamNames(), " (got '", name, "')"));
      }
      if (std::find(out.begin(), out.end(), name) == out.end()) {
        out.push_back(name);
      }
    }
  }
  if (out.empty()) {
    return Invalid(absl::StrCat("'all' or a comma list of: ", AllStreamNames()));
  }
  c.streams = std::move(out);
  return absl::OkStatus();
}

absl::Status SetStartTimepoints(absl::string_view v, Config& c) {
  c.start_timepoints.clear();
  for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(absl::StripAsciiWhitespace(part), absl::MaxSplits(':', 1));
    int64_t tp;
    if (!IsStreamName(kv.first) || !absl::SimpleAtoi(kv.second, &tp) ||
        tp < 0) {
      return Invalid(
          "a comma list of <stream>:<timepoint>, e.g. companies:82025317");
    }
    c.start_timepoints[kv.first] = tp;
  }
  return absl::OkStatus();
}

// The checks the connection will make, at start-up (the message is
// redacted: no user info, path or query).
absl::Status CheckUrl(absl::string_view v) {
  absl::StatusOr<ingest::UpstreamUrl> url = ingest::ParseUpstreamUrl(v);
  if (!url.ok()) {
    return Invalid(absl::StrCat("an http:// or https:// URL (",
                                url.status().message(), ")"));
  }
  return absl::OkStatus();
}

absl::Status SetUpstreamUrl(absl::string_view v, Config& c) {
  CHS_RETURN_IF_ERROR(CheckUrl(v));
  c.upstream_url = std::string(absl::StripSuffix(v, "/"));
  return absl::OkStatus();
}

Setter Address(std::string Config::*field, absl::string_view example) {
  return [field, example = std::string(example)](absl::string_view v,
                                                 Config& c) {
    size_t colon = v.rfind(':');
    int port;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(v.substr(colon + 1), &port) || port < 0 ||
        port > 65535) {
      return Invalid(absl::StrCat("HOST:PORT, e.g. ", example));
    }
    c.*field = std::string(v);
    return absl::OkStatus();
  };
}

absl::Status SetLogLevel(absl::string_view v, Config& c) {
  if (v != "debug" && v != "info" && v != "warning" && v != "error") {
    return Invalid("debug, info, warning or error");
  }
  c.log_level = std::string(v);
  return absl::OkStatus();
}

absl::Status SetOnExpired(absl::string_view v, Config& c) {
  if (v == "resume_from_head") {
    c.on_timepoint_expired = OnTimepointExpired::kResumeFromHead;
  } else if (v == "stop") {
    c.on_timepoint_expired = OnTimepointExpired::kStop;
  } else {
    return Invalid("resume_from_head or stop");
  }
  return absl::OkStatus();
}

absl::Status SetBusyStreams(absl::string_view v, Config& c) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
    std::string name(absl::StripAsciiWhitespace(part));
    if (name.empty()) continue;
    if (!IsStreamName(name)) {
      return Invalid(absl::StrCat("a comma list (maybe empty) of: ",
                                  AllStreamNames(), " (got '", name, "')"));
    }
    out.push_back(name);
  }
  c.busy_streams = std::move(out);
  return absl::OkStatus();
}

absl::Status SetSynchronous(absl::string_view v, Config& c) {
  const std::string s = absl::AsciiStrToLower(v);
  if (s == "full") {
    c.sync_full = true;
  } else if (s == "normal") {
    c.sync_full = false;
  } else {
    return Invalid("full or normal");
  }
  return absl::OkStatus();
}

absl::Status SetAlertWebhookUrl(absl::string_view v, Config& c) {
  if (!v.empty()) CHS_RETURN_IF_ERROR(CheckUrl(v));
  c.alert_webhook_url = std::string(v);
  return absl::OkStatus();
}

const std::vector<Setting>& Settings() {
  static const auto* const settings = new std::vector<Setting>{
      {"grpc_address", "127.0.0.1:50051",
       "Address the gRPC server listens on (HOST:PORT; port 0 picks one).",
       Address(&Config::grpc_address, "127.0.0.1:50051 or [::]:50051")},
      {"grpc_tls_cert", "",
       "PEM certificate chain the gRPC server presents; with --grpc_tls_key "
       "the gRPC port speaks TLS only.",
       String(&Config::grpc_tls_cert)},
      {"grpc_tls_key", "",
       "PEM private key of --grpc_tls_cert (unencrypted; keep it mode 0600).",
       String(&Config::grpc_tls_key)},
      {"grpc_client_ca", "",
       "PEM CA bundle for mutual TLS: every gRPC client must present a "
       "certificate signed by it (needs --grpc_tls_cert).",
       String(&Config::grpc_client_ca)},
      {"grpc_auth_token_file", "",
       "File of bearer tokens, one per line (# comments): gRPC calls must send "
       "'authorization: Bearer <token>' (health and reflection stay open).",
       String(&Config::grpc_auth_token_file)},
      {"allow_insecure_remote", "false",
       "Serve gRPC on a non-loopback --grpc_address without TLS or tokens "
       "(refused otherwise).",
       Bool(&Config::allow_insecure_remote)},
      {"replica_id", "hostname:gRPC port",
       "This replica's name in GetStatus (replica.id) and, with PostgreSQL, "
       "in the cluster table when it leads; unique per replica.",
       String(&Config::replica_id)},
      {"metrics_address", "127.0.0.1:9464",
       "Address of the operations HTTP listener: / (status page), "
       "/status.json, /history.json, /metrics (Prometheus), /healthz, "
       "/readyz (HOST:PORT; port 0 picks one).",
       Address(&Config::metrics_address, "127.0.0.1:9464")},
      {"db_path", "./chstream.db",
       "SQLite database file (created if missing; relative to where you ran "
       "the command).",
       String(&Config::db_path)},
      {"postgres_url", "",
       "Store events in PostgreSQL instead of SQLite: a libpq URI such as "
       "postgresql://chstream@db.internal/chstream (PGPASSWORD, ~/.pgpass, "
       "PGSSLMODE... apply; the password is never printed). Not together "
       "with --db_path.",
       String(&Config::postgres_url)},
      {"streams", "companies",
       "Upstream streams to follow: 'all' or a comma list of " +
           AllStreamNames() + ".",
       SetStreams},
      {"upstream_url", "https://stream.companieshouse.gov.uk",
       "Base URL of the Companies House Streaming API (or any server "
       "speaking its protocol).",
       SetUpstreamUrl},
      {"ca_file", "",
       "Extra PEM CA bundle trusted for the upstream, in addition to the "
       "system store.",
       String(&Config::ca_file)},
      {"env_file", ".env (when present)",
       "A file of KEY=VALUE lines read before the environment.",
       String(&Config::env_file)},
      {"simulate", "false",
       "Follow the built-in simulator even when a key is set (it is always "
       "used when no key is set).",
       Bool(&Config::simulate)},
      {"simulator_rate", "10",
       "Events per second the built-in simulator publishes on the companies "
       "stream (others proportionally less).",
       Double(&Config::simulator_rate, 0.01, 1e6)},
      {"idle_timeout", "90s",
       "Reconnect when no byte at all (heartbeats included) has arrived for "
       "this long.",
       Duration(&Config::idle_timeout, absl::Milliseconds(100),
                absl::Hours(1))},
      {"max_line_bytes", "8388608",
       "Upstream lines longer than this are dead-lettered.",
       Int64(&Config::max_line_bytes, 1024, int64_t{1} << 30)},
      {"start_timepoint", "",
       "With an empty database, start these streams at a timepoint instead "
       "of the head: <stream>:<N>[,<stream>:<N>...].",
       SetStartTimepoints},
      {"auth_retry_interval", "15m",
       "After a 401 (bad key), retry no more often than this.",
       Duration(&Config::auth_retry_interval, absl::Seconds(1),
                absl::Hours(24))},
      {"on_timepoint_expired", "resume_from_head",
       "After a 416 (timepoint too old): resume_from_head (record the gap "
       "and carry on) or stop.",
       SetOnExpired},
      {"breaker_failures", "5",
       "Consecutive failures after which a stream's circuit breaker opens.",
       Int(&Config::breaker_failures, 1, 1000)},
      {"max_connections_per_key", "10",
       "Upstream connections allowed per key; more streams than keys x cap "
       "is a start-up error.",
       Int(&Config::max_connections_per_key, 1, 100)},
      {"max_connects_per_minute", "10",
       "Upstream connection attempts allowed per key per minute, whatever "
       "the mix of failures (the upstream rate-limits reconnect storms).",
       Int(&Config::max_connects_per_minute, 1, 1000)},
      {"sync_full", "(see --synchronous)",
       "Older spelling of --synchronous: true is full, false is normal.",
       Bool(&Config::sync_full)},
      {"synchronous", "full",
       "full: fsync the WAL at every commit, so a position reaches a client "
       "only once it survives a power loss. normal: fsync at checkpoints "
       "only (faster ingest, see bench/RESULTS.md); a power loss may lose the "
       "last commits, so after any unclean shutdown the store gets a new "
       "store_id and clients resume from a timepoint.",
       SetSynchronous},
      {"new_store_id", "false",
       "Give the store a new store_id at this start (once, after restoring a "
       "backup or copying the database file: positions after the copy may "
       "have been given to other events). Clients resuming with the old "
       "store_id get FAILED_PRECONDITION.",
       Bool(&Config::new_store_id)},
      {"batch_max_events", "4096", "Group commit: most events per transaction.",
       Int(&Config::batch_max_events, 1, 1 << 20)},
      {"batch_max_delay", "0ms",
       "Group commit: longest wait for more events before committing. 0: "
       "none; commit as soon as the writer is free, batching what arrived "
       "during the previous commit.",
       Duration(&Config::batch_max_delay, absl::ZeroDuration(),
                absl::Seconds(10))},
      {"writer_queue", "16384",
       "Items (events, dead letters) the writer queue holds; when full, "
       "upstream readers wait.",
       Int(&Config::writer_queue, 1, 1 << 22)},
      {"writer_queue_bytes", "33554432",
       "Bytes of events the writer queue (and the batch being committed) "
       "holds; when full, upstream readers wait. Bounds ingest memory.",
       Int64(&Config::writer_queue_bytes, 1 << 16, int64_t{1} << 32)},
      {"retain_for", "0",
       "Retention: delete events received longer ago than this, oldest "
       "first, e.g. 90d or 36h (0 = keep everything). Current state "
       "(GetCompany) is never lost; cursors before the oldest kept event get "
       "OUT_OF_RANGE.",
       RetentionDuration(&Config::retain_for)},
      {"retain_bytes", "0",
       "Retention: delete the oldest events while the database's used pages "
       "exceed this size, e.g. 20G (0 = no cap). Freed pages are reused, so "
       "the file stops growing at about this size plus the WAL. On "
       "PostgreSQL: while the events' stored size exceeds it (indexes and "
       "dead rows not counted; autovacuum makes freed space reusable).",
       SetRetainBytes},
      {"retain_dead_letters_for", "30d",
       "Retention: delete dead letters and timepoint gaps older than this "
       "(0 = keep them).",
       RetentionDuration(&Config::retain_dead_letters_for)},
      {"max_subscribers", "1000",
       "Concurrent Subscribe calls allowed; beyond it RESOURCE_EXHAUSTED.",
       Int(&Config::max_subscribers, 1, 1000000)},
      {"subscriber_queue", "1024",
       "Live events buffered per subscriber before it falls behind and is "
       "served from storage.",
       Int(&Config::subscriber_queue, 1, 1 << 20)},
      {"max_subscriber_lag", "0",
       "End a subscriber that stays behind the head longer than this with "
       "RESOURCE_EXHAUSTED (0 = never).",
       Duration(&Config::max_subscriber_lag, absl::ZeroDuration(),
                absl::Hours(24 * 7))},
      {"subscriber_write_timeout", "30s",
       "End a Subscribe or ReplayEvents call whose write (one message) has "
       "not completed within this with RESOURCE_EXHAUSTED: the client "
       "stopped reading. Frees its slot and queue (0 = never).",
       Duration(&Config::subscriber_write_timeout, absl::ZeroDuration(),
                absl::Hours(24))},
      {"max_replays", "32",
       "Concurrent ReplayEvents calls allowed; beyond it RESOURCE_EXHAUSTED.",
       Int(&Config::max_replays, 1, 100000)},
      {"stall_after", "15m",
       "Health: a busy stream (--busy_streams) that is connected and gets "
       "heartbeats but no event for this long is degraded (stalled).",
       Duration(&Config::stall_after, absl::Seconds(1), absl::Hours(24))},
      {"busy_streams",
       "companies,filings,officers,persons-with-significant-control",
       "Health: streams that normally carry events all the time (the stall "
       "rule); a comma list, maybe empty.",
       SetBusyStreams},
      {"heartbeat_stale_after", "3m",
       "Health: a connected stream that received nothing (not even a "
       "heartbeat) for this long is degraded.",
       Duration(&Config::heartbeat_stale_after, absl::Seconds(1),
                absl::Hours(24))},
      {"disconnected_after", "2m",
       "Health: a stream not connected (connecting, backing off) for this "
       "long is degraded.",
       Duration(&Config::disconnected_after, absl::Seconds(1),
                absl::Hours(24))},
      {"disconnected_failed_after", "15m",
       "Health: a stream not connected (or its circuit breaker open) for this "
       "long is failed; must exceed --disconnected_after.",
       Duration(&Config::disconnected_failed_after, absl::Seconds(1),
                absl::Hours(24 * 7))},
      {"max_lag", "10m",
       "Health: a stream whose newest event arrived more than this after it "
       "was published is degraded.",
       Duration(&Config::max_lag, absl::Seconds(1), absl::Hours(24 * 7))},
      {"max_reconnects_per_hour", "30",
       "Health: a stream whose connection ended more often than this in the "
       "last hour is degraded.",
       Int(&Config::max_reconnects_per_hour, 1, 1000000)},
      {"alert_webhook_url", "",
       "POST every health alert as JSON to this http:// or https:// URL "
       "(5 s timeout, 3 tries); alerts are always logged.",
       SetAlertWebhookUrl},
      {"log_level", "info", "debug, info, warning or error.", SetLogLevel},
  };
  return *settings;
}

const Setting* FindSetting(absl::string_view name) {
  for (const Setting& s : Settings()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// Booleans: a bare --name means true and --noname false.
bool IsBoolSetting(const Setting& s) {
  return s.default_text == "false" || s.name == "sync_full";
}

// Levenshtein distance, for suggesting the setting a misspelt variable meant.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A warning for each CHSTREAM_* name in `vars` that is no setting: a typo
// (CHSTREAM_SYNC_FUL) would otherwise be ignored silently. Not an error,
// because orchestrators inject variables of their own (CHSTREAM_PORT).
template <typename Map>
void WarnAboutUnknownVariables(const Map& vars, absl::string_view source,
                               std::vector<std::string>* warnings) {
  std::vector<std::string> unknown;
  for (const auto& [name, value] : vars) {
    if (!absl::StartsWith(name, "CHSTREAM_")) continue;
    bool known = false;
    for (const Setting& s : Settings()) known |= EnvName(s.name) == name;
    if (!known) unknown.push_back(name);
  }
  std::sort(unknown.begin(), unknown.end());  // a stable order for the log
  for (const std::string& name : unknown) {
    std::string nearest;
    size_t best = std::numeric_limits<size_t>::max();
    for (const Setting& s : Settings()) {
      const std::string candidate = EnvName(s.name);
      const size_t d = EditDistance(name, candidate);
      if (d < best) {
        best = d;
        nearest = candidate;
      }
    }
    warnings->push_back(
        absl::StrCat("ignoring unknown variable ", name, " (", source,
                     "): not a chstream setting; the nearest setting is ",
                     nearest, " (see --help)"));
  }
}

std::string CurrentDirectory() {
  const char* bazel_dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (bazel_dir != nullptr && *bazel_dir != '\0') return bazel_dir;
  char buf[4096];
  if (::getcwd(buf, sizeof(buf)) != nullptr) return buf;
  return ".";
}

std::string Resolve(const std::string& base, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return absl::StrCat(base, "/", path);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status SettingError(const Setting& s, absl::string_view source,
                          absl::string_view value, const absl::Status& why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid ", source, " '",
      // A URL's user info, path or query may be a secret.
      absl::EndsWith(s.name, "_url")
          ? log::RedactUrl(std::string_view(value.data(), value.size()))
          : std::string(value),
      "' for --", s.name, " (", EnvName(s.name), "): expected ",
      why.message()));
}

}  // namespace

std::string ConfigHelp() {
  std::string out =
      "chstreamd: follows the Companies House Streaming API, stores every "
      "event in SQLite and serves it over gRPC (chstream.v1).\n\n"
      "Usage: chstreamd [--name=value ...]\n\n"
      "Each setting is a flag, an environment variable or a line in the .env "
      "file;\nprecedence: flag > environment > .env > default.\n\n";
  for (const Setting& s : Settings()) {
    absl::StrAppend(&out, "  --", s.name, "  (", EnvName(s.name), ")\n      ",
                    s.help, "\n      default: ",
                    s.default_text.empty() ? "(none)" : s.default_text, "\n");
  }
  absl::StrAppend(
      &out,
      "\nThe upstream key is never a flag:\n"
      "  CH_STREAMING_API_KEY       the stream key (a comma list spreads "
      "streams over several keys)\n"
      "  CH_STREAMING_API_KEY_FILE  a file holding the key\n"
      "With no key, chstreamd follows its built-in simulator.\n");
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseEnvFile(
    absl::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    if (absl::ConsumePrefix(&line, "export ")) {
      line = absl::StripLeadingAsciiWhitespace(line);
    }
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": expected KEY=VALUE"));
    }
    std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(line.substr(eq + 1));
    std::string value;
    if (!rest.empty() && (rest[0] == '"' || rest[0] == '\'')) {
      const char quote = rest[0];
      size_t i = 1;
      bool closed = false;
      for (; i < rest.size(); ++i) {
        char ch = rest[i];
        if (ch == quote) {
          closed = true;
          break;
        }
        if (quote == '"' && ch == '\\' && i + 1 < rest.size()) {
          char next = rest[++i];
          value.push_back(next == 'n' ? '\n' : next == 't' ? '\t' : next);
        } else {
          value.push_back(ch);
        }
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": unterminated quote"));
      }
    } else {
      size_t hash = rest.find(" #");
      if (hash != absl::string_view::npos) rest = rest.substr(0, hash);
      value = std::string(absl::StripTrailingAsciiWhitespace(rest));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

absl::flat_hash_map<std::string, std::string> ProcessEnvironment() {
  absl::flat_hash_map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

absl::StatusOr<Config> LoadConfig(
    const std::vector<std::string>& args,
    const absl::flat_hash_map<std::string, std::string>& env,
    ConfigExit* exit_request) {
  // 1. Flags, collected first (they decide the .env file and win over all).
  std::vector<std::pair<const Setting*, std::string>> flags;
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      *exit_request = {0, ConfigHelp()};
      return absl::CancelledError("help");
    }
    absl::string_view a(arg);
    if (!absl::ConsumePrefix(&a, "--")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument '", arg, "': settings are --name=value (see --help)"));
    }
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(a, absl::MaxSplits('=', 1));
    std::string name(kv.first);
    std::replace(name.begin(), name.end(), '-', '_');
    if (name == "api_key" || name == "key" || name == "stream_key") {
      return absl::InvalidArgumentError(
          "the stream key is never a flag (it would show in `ps`): set "
          "CH_STREAMING_API_KEY or CH_STREAMING_API_KEY_FILE");
    }
    const Setting* s = FindSetting(name);
    const bool is_bool_flag = s != nullptr && IsBoolSetting(*s);
    if (s == nullptr && absl::StartsWith(name, "no")) {
      const Setting* negated = FindSetting(name.substr(2));
      if (negated != nullptr && IsBoolSetting(*negated) &&
          a.find('=') == absl::string_view::npos) {
        flags.emplace_back(negated, "false");
        continue;
      }
    }
    if (s == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", kv.first, " (see --help)"));
    }
    if (a.find('=') == absl::string_view::npos) {
      if (!is_bool_flag) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", s->name, " needs a value: --", s->name, "=..."));
      }
      flags.emplace_back(s, "true");  // a bare boolean flag means true
      continue;
    }
    flags.emplace_back(s, std::string(kv.second));
  }

  const std::string cwd = CurrentDirectory();

  // 2. The .env file: --env_file, else CHSTREAM_ENV_FILE, else ./.env if it
  // exists.
  std::string env_file;
  bool env_file_explicit = false;
  for (const auto& [s, v] : flags) {
    if (s->name == "env_file") {
      env_file = v;
      env_file_explicit = true;
    }
  }
  if (!env_file_explicit) {
    auto it = env.find("CHSTREAM_ENV_FILE");
    if (it != env.end()) {
      env_file = it->second;
      env_file_explicit = true;
    }
  }
  if (!env_file_explicit) {
    std::string candidate = Resolve(cwd, ".env");
    if (::access(candidate.c_str(), R_OK) == 0) env_file = ".env";
  }
  absl::flat_hash_map<std::string, std::string> dotenv;
  if (!env_file.empty()) {
    env_file = Resolve(cwd, env_file);
    absl::StatusOr<std::string> text = ReadFile(env_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --env_file (CHSTREAM_ENV_FILE): ", text.status().message()));
    }
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> parsed =
        ParseEnvFile(*text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid .env file ", env_file, ": ", parsed.status().message()));
    }
    for (auto& [k, v] : *parsed) dotenv[k] = v;
  }

  // 3. Apply in increasing precedence: defaults (already in Config), .env,
  // environment, flags.
  Config config;
  config.env_file = env_file;
  if (!env_file.empty()) {
    WarnAboutUnknownVariables(dotenv, absl::StrCat("in ", env_file),
                              &config.warnings);
  }
  WarnAboutUnknownVariables(env, "environment", &config.warnings);
  for (const Setting& s : Settings()) {
    if (s.name == "env_file") continue;
    const std::string name = EnvName(s.name);
    if (auto it = dotenv.find(name); it != dotenv.end()) {
      if (absl::Status st = s.set(it->second, config); !st.ok()) {
        return SettingError(s, absl::StrCat("value in ", env_file), it->second,
                            st);
      }
    }
    if (auto it = env.find(name); it != env.end()) {
      if (absl::Status st = s.set(it->second, config); !st.ok()) {
        return SettingError(s, "environment value", it->second, st);
      }
    }
  }
  for (const auto& [s, v] : flags) {
    if (s->name == "env_file") continue;
    if (absl::Status st = s->set(v, config); !st.ok()) {
      return SettingError(*s, "value", v, st);
    }
  }
  // --postgres_url selects PostgreSQL; a --db_path given as well (flag,
  // environment or .env) is a contradiction, not something to guess about.
  const bool db_path_given =
      std::any_of(flags.begin(), flags.end(),
                  [](const auto& f) { return f.first->name == "db_path"; }) ||
      env.contains(EnvName("db_path")) || dotenv.contains(EnvName("db_path"));
  if (!config.postgres_url.empty()) {
    if (db_path_given) {
      return absl::InvalidArgumentError(
          "invalid --db_path with --postgres_url: choose SQLite (--db_path) "
          "or PostgreSQL (--postgres_url), not both");
    }
    if (!absl::StartsWith(config.postgres_url, "postgresql://") &&
        !absl::StartsWith(config.postgres_url, "postgres://")) {
      // Not echoed: a key=value conninfo string may carry a password.
      return absl::InvalidArgumentError(
          "invalid --postgres_url (CHSTREAM_POSTGRES_URL): expected a libpq "
          "URI postgresql://[user@]host[:port]/dbname[?param=value...]");
    }
  }
  config.db_path = Resolve(cwd, config.db_path);
  config.ca_file = Resolve(cwd, config.ca_file);
  config.grpc_tls_cert = Resolve(cwd, config.grpc_tls_cert);
  config.grpc_tls_key = Resolve(cwd, config.grpc_tls_key);
  config.grpc_client_ca = Resolve(cwd, config.grpc_client_ca);
  config.grpc_auth_token_file = Resolve(cwd, config.grpc_auth_token_file);

  // 4. The key: environment over .env; a key file when no key is given.
  auto lookup = [&](const std::string& name) -> const std::string* {
    if (auto it = env.find(name); it != env.end()) return &it->second;
    if (auto it = dotenv.find(name); it != dotenv.end()) return &it->second;
    return nullptr;
  };
  std::string key_text;
  if (const std::string* key = lookup("CH_STREAMING_API_KEY");
      key != nullptr && !key->empty()) {
    key_text = *key;
  } else if (const std::string* file = lookup("CH_STREAMING_API_KEY_FILE");
             file != nullptr && !file->empty()) {
    config.api_key_file = Resolve(cwd, *file);
    absl::StatusOr<std::string> text = ReadFile(config.api_key_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid CH_STREAMING_API_KEY_FILE: ", text.status().message()));
    }
    key_text = *text;
  }
  for (absl::string_view k : absl::StrSplit(key_text, ',', absl::SkipEmpty())) {
    k = absl::StripAsciiWhitespace(k);
    if (!k.empty()) config.api_keys.emplace_back(k);
  }

  // 5. Cross-setting checks.
  if (config.disconnected_failed_after <= config.disconnected_after) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid --disconnected_failed_after=",
        absl::FormatDuration(config.disconnected_failed_after),
        ": must be longer than --disconnected_after=",
        absl::FormatDuration(config.disconnected_after)));
  }
  if (config.grpc_tls_cert.empty() != config.grpc_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "invalid --grpc_tls_cert/--grpc_tls_key: TLS needs both (or neither)");
  }
  if (!config.grpc_client_ca.empty() && config.grpc_tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "invalid --grpc_client_ca: mutual TLS needs --grpc_tls_cert and "
        "--grpc_tls_key too");
  }
  if (!config.UseSimulator()) {
    const size_t capacity =
        config.api_keys.size() *
        static_cast<size_t>(config.max_connections_per_key);
    if (config.streams.size() > capacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --streams: ", config.streams.size(),
          " streams need more upstream connections than ",
          config.api_keys.size(), " key(s) x --max_connections_per_key=",
          config.max_connections_per_key, " allow"));
    }
  }
  return config;
}

}  // namespace chstream::server
