#include "ingest/simulator/simulator_flags.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace chstream::ingest::sim {
namespace {

absl::Status Bad(absl::string_view name, absl::string_view value,
                 absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", std::string(name), "=", std::string(value),
                   ": expected ", std::string(expected)));
}

template <typename Int>
absl::Status ParseInt(absl::string_view name, absl::string_view value,
                      Int* out) {
  int64_t parsed;
  if (!absl::SimpleAtoi(value, &parsed) ||
      parsed < static_cast<int64_t>(std::numeric_limits<Int>::min()) ||
      static_cast<uint64_t>(std::max<int64_t>(parsed, 0)) >
          static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
    return Bad(name, value, "an integer");
  }
  *out = static_cast<Int>(parsed);
  return absl::OkStatus();
}

absl::Status ParseUint64(absl::string_view name, absl::string_view value,
                         uint64_t* out) {
  if (!absl::SimpleAtoi(value, out)) {
    return Bad(name, value, "a non-negative integer");
  }
  return absl::OkStatus();
}

absl::Status ParseDouble(absl::string_view name, absl::string_view value,
                         double* out) {
  if (!absl::SimpleAtod(value, out) || !std::isfinite(*out)) {
    return Bad(name, value, "a number");
  }
  return absl::OkStatus();
}

absl::Status ParseProbability(absl::string_view name, absl::string_view value,
                              double* out) {
  CHS_RETURN_IF_ERROR(ParseDouble(name, value, out));
  if (*out < 0 || *out > 1) return Bad(name, value, "a probability in [0, 1]");
  return absl::OkStatus();
}

absl::Status ParseSeconds(absl::string_view name, absl::string_view value,
                          absl::Duration* out) {
  double seconds;
  CHS_RETURN_IF_ERROR(ParseDouble(name, value, &seconds));
  if (seconds < 0) return Bad(name, value, "seconds >= 0");
  *out = absl::Seconds(seconds);
  return absl::OkStatus();
}

absl::Status ParseBool(absl::string_view name, absl::string_view value,
                       bool* out) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "true" || lower == "1" || lower == "yes") {
    *out = true;
  } else if (lower == "false" || lower == "0" || lower == "no") {
    *out = false;
  } else {
    return Bad(name, value, "true or false");
  }
  return absl::OkStatus();
}

std::vector<std::string> ParseList(absl::string_view value) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

struct Flag {
  const char* name;
  const char* default_text;
  const char* help;
  bool is_bool;
  std::function<absl::Status(SimulatorFlags&, absl::string_view)> set;
};

// A flag that takes a value.
Flag Value(
    const char* name, const char* default_text, const char* help,
    std::function<absl::Status(SimulatorFlags&, absl::string_view)> set) {
  return Flag{name, default_text, help, false, std::move(set)};
}

// A boolean flag writing to the member selected by `field`.
Flag Boolean(const char* name, const char* help,
             std::function<bool&(SimulatorFlags&)> field) {
  return Flag{name, "false", help, true,
              [name, field](SimulatorFlags& f, absl::string_view v) {
                return ParseBool(name, v, &field(f));
              }};
}

const std::vector<Flag>& Flags() {
  static const auto*
      flags =
          new std::vector<Flag>{
              // --- Server.
              Value("address", "127.0.0.1", "Address to listen on.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.options.address = std::string(v);
                      return absl::OkStatus();
                    }),
              Value("port", "0",
                    "Port to listen on (0 picks a free one; the URL is "
                    "printed on stdout).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("port", v, &f.options.port);
                    }),
              Value("keys", "sim-key",
                    "Comma-separated stream keys accepted as the Basic auth "
                    "username.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.options.keys = ParseList(v);
                      if (f.options.keys.empty())
                        return Bad("keys", v, "a key");
                      return absl::OkStatus();
                    }),
              Value("tls_cert", "",
                    "PEM certificate chain file; with --tls_key, "
                    "serves HTTPS.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.tls_cert_path = std::string(v);
                      return absl::OkStatus();
                    }),
              Value("tls_key", "", "PEM private key file for --tls_cert.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.tls_key_path = std::string(v);
                      return absl::OkStatus();
                    }),
              Value("threads", "1", "io_context threads.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("threads", v, &f.options.threads);
                    }),
              Value("log_level", "info", "debug, info, warning or error.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.log_level = std::string(v);
                      return absl::OkStatus();
                    }),

              // --- Events.
              Value("seed", "1", "Seed of the deterministic event generator.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseUint64("seed", v, &f.options.seed);
                    }),
              Value("rate", "10",
                    "Events/s on /companies; the other streams get "
                    "proportionally "
                    "less. 0 = as fast as the client reads (benchmarks).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      CHS_RETURN_IF_ERROR(
                          ParseDouble("rate", v, &f.options.companies_rate));
                      if (f.options.companies_rate < 0)
                        return Bad("rate", v, ">= 0");
                      return absl::OkStatus();
                    }),
              Value("rates", "",
                    "Per-stream rates overriding --rate, e.g. "
                    "filings=5,officers=0.5.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      for (const std::string& item : ParseList(v)) {
                        std::pair<std::string, std::string> kv =
                            absl::StrSplit(item, absl::MaxSplits('=', 1));
                        double rate;
                        if (!StreamKindFromName(kv.first) ||
                            absl::StartsWith(kv.first, "/") ||
                            !absl::SimpleAtod(kv.second, &rate) || rate < 0) {
                          return Bad("rates", item, "stream=rate");
                        }
                        f.options.stream_rates[kv.first] = rate;
                      }
                      return absl::OkStatus();
                    }),
              Value("streams", "(all nine)",
                    "Comma-separated streams that produce events; the others "
                    "only "
                    "send heartbeats.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      f.options.streams = ParseList(v);
                      for (const std::string& s : f.options.streams) {
                        if (!StreamKindFromName(s) ||
                            absl::StartsWith(s, "/")) {
                          return Bad("streams", s,
                                     "a stream name such as companies");
                        }
                      }
                      return absl::OkStatus();
                    }),
              Value("initial_events", "0",
                    "Events generated per stream before serving (replayable at "
                    "once).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("initial_events", v,
                                      &f.options.initial_events_per_stream);
                    }),
              Value(
                  "max_events", "-1",
                  "Cap on events per stream (-1 = none); then only heartbeats.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    return ParseInt("max_events", v,
                                    &f.options.max_events_per_stream);
                  }),
              Value("retention_events", "200000",
                    "Events kept per stream for ?timepoint= replay (-1 = all; "
                    "memory "
                    "grows without bound).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("retention_events", v,
                                      &f.options.retention_events);
                    }),
              Value(
                  "retention_bytes", "33554432",
                  "Bytes of event lines kept for replay, all streams together "
                  "(-1 = no cap); the stream holding the most gives way first.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    return ParseInt("retention_bytes", v,
                                    &f.options.retention_bytes);
                  }),
              Value("gap_probability", "0.02",
                    "Chance that a timepoint skips ahead.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseProbability(
                          "gap_probability", v,
                          &f.options.generator.gap_probability);
                    }),
              Value("max_gap", "10", "Largest timepoint gap.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("max_gap", v,
                                      &f.options.generator.max_gap);
                    }),
              Value(
                  "duplicate_probability", "0.03",
                  "Chance that an event re-emits a recent resource unchanged.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    return ParseProbability(
                        "duplicate_probability", v,
                        &f.options.generator.duplicate_probability);
                  }),
              Value("delete_probability", "0.02", "Chance of a deleted event.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseProbability(
                          "delete_probability", v,
                          &f.options.generator.delete_probability);
                    }),
              Value(
                  "deleted_without_data_probability", "0.5",
                  "Share of deleted events with no data.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    return ParseProbability(
                        "deleted_without_data_probability", v,
                        &f.options.generator.deleted_without_data_probability);
                  }),
              Value("large_event_probability", "0.001",
                    "Chance of a ~100 KB event (companies, charges).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseProbability(
                          "large_event_probability", v,
                          &f.options.generator.large_event_probability);
                    }),
              Value("non_ascii_probability", "0.05",
                    "Share of names with non-ASCII characters.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseProbability(
                          "non_ascii_probability", v,
                          &f.options.generator.non_ascii_probability);
                    }),
              Value("company_pool_size", "2000",
                    "Distinct companies drawn from.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("company_pool_size", v,
                                      &f.options.generator.company_pool_size);
                    }),
              Value("published_at", "(per stream)",
                    "published_at styles to mix: plain, micros_z, offset.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      auto& formats = f.options.generator.published_at_formats;
                      formats.clear();
                      for (const std::string& item : ParseList(v)) {
                        if (item == "plain") {
                          formats.push_back(PublishedAtFormat::kPlainUtc);
                        } else if (item == "micros_z") {
                          formats.push_back(PublishedAtFormat::kMicrosZ);
                        } else if (item == "offset") {
                          formats.push_back(PublishedAtFormat::kMicrosOffset);
                        } else {
                          return Bad("published_at", item,
                                     "plain, micros_z or offset");
                        }
                      }
                      return absl::OkStatus();
                    }),
              Boolean("go_html_escape",
                      "Escape <, > and & as Go's json.Marshal does.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.generator.go_html_escape;
                      }),
              Boolean("profile_only",
                      "/companies sends only ~1.3 KB company-profile changes "
                      "(throughput benchmarks).",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.generator.profile_only;
                      }),

              // --- Protocol.
              Value(
                  "heartbeat_seconds", "30",
                  "Interval between \"\\n\" heartbeats.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    CHS_RETURN_IF_ERROR(ParseSeconds(
                        "heartbeat_seconds", v, &f.options.heartbeat_interval));
                    if (f.options.heartbeat_interval <= absl::ZeroDuration()) {
                      return Bad("heartbeat_seconds", v, "> 0");
                    }
                    return absl::OkStatus();
                  }),
              Flag{"headers_immediately", "false",
                   "Send the response headers at once instead of with the "
                   "first "
                   "body byte.",
                   /*is_bool=*/true,
                   [](SimulatorFlags& f, absl::string_view v) {
                     bool immediately;
                     CHS_RETURN_IF_ERROR(
                         ParseBool("headers_immediately", v, &immediately));
                     f.options.headers_on_first_byte = !immediately;
                     return absl::OkStatus();
                   }},
              Value(
                  "invalid_timepoint_status", "416",
                  "Status for a negative or non-numeric timepoint: 416 or 400.",
                  [](SimulatorFlags& f, absl::string_view v) {
                    CHS_RETURN_IF_ERROR(
                        ParseInt("invalid_timepoint_status", v,
                                 &f.options.invalid_timepoint_status));
                    if (f.options.invalid_timepoint_status != 400 &&
                        f.options.invalid_timepoint_status != 416) {
                      return Bad("invalid_timepoint_status", v, "400 or 416");
                    }
                    return absl::OkStatus();
                  }),
              Value("future_timepoint", "416",
                    "A timepoint beyond the head: 416, or tail (serve from the "
                    "head).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      if (v == "416") {
                        f.options.future_timepoint_tails = false;
                      } else if (v == "tail") {
                        f.options.future_timepoint_tails = true;
                      } else {
                        return Bad("future_timepoint", v, "416 or tail");
                      }
                      return absl::OkStatus();
                    }),
              Value("max_connections_per_key", "10",
                    "Concurrent streams per key before --cap_mode applies.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("max_connections_per_key", v,
                                      &f.options.max_connections_per_key);
                    }),
              Value(
                  "cap_mode", "reject",
                  "Over the cap: reject (429) or evict (end the key's oldest).",
                  [](SimulatorFlags& f, absl::string_view v) {
                    if (v == "reject") {
                      f.options.cap_mode = CapMode::kRejectWith429;
                    } else if (v == "evict") {
                      f.options.cap_mode = CapMode::kEvictOldest;
                    } else {
                      return Bad("cap_mode", v, "reject or evict");
                    }
                    return absl::OkStatus();
                  }),
              Value("max_connects_per_minute", "0",
                    "More requests than this per key per minute get 429 (0 = "
                    "off).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("max_connects_per_minute", v,
                                      &f.options.max_connects_per_minute);
                    }),

              // --- Faults.
              Value("split_random", "0",
                    "Non-zero: seed for cutting lines into chunks at random "
                    "offsets.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseUint64("split_random", v,
                                         &f.options.faults.split_random);
                    }),
              Boolean("coalesce", "Many lines per chunk.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.faults.coalesce;
                      }),
              Boolean("lone_newline_chunks",
                      "Send each line's \"\\n\" as its own "
                      "chunk.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.faults.lone_newline_chunks;
                      }),
              Value("malformed_every", "0",
                    "An extra malformed line after every N events (0 = off).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("malformed_every", v,
                                      &f.options.faults.malformed_every);
                    }),
              Value("close_after_events", "0",
                    "End each connection after N events (0 = off).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("close_after_events", v,
                                      &f.options.faults.close_after_events);
                    }),
              Value("close_style", "reset",
                    "How --close_after_events ends: reset (RST), truncate "
                    "(FIN, no "
                    "last chunk) or clean.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      if (v == "reset") {
                        f.options.faults.close_style = CloseStyle::kReset;
                      } else if (v == "truncate") {
                        f.options.faults.close_style = CloseStyle::kTruncate;
                      } else if (v == "clean") {
                        f.options.faults.close_style = CloseStyle::kClean;
                      } else {
                        return Bad("close_style", v,
                                   "reset, truncate or clean");
                      }
                      return absl::OkStatus();
                    }),
              Boolean("close_mid_line",
                      "Send half of the next line before --close_after_events "
                      "closes.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.faults.close_mid_line;
                      }),
              Boolean("stall", "Send heartbeats but no events.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.faults.stall;
                      }),
              Boolean("heartbeats_die", "Send no heartbeats.",
                      [](SimulatorFlags& f) -> bool& {
                        return f.options.faults.heartbeats_die;
                      }),
              Value("max_connection_age_seconds", "86400",
                    "Connections end cleanly after this long.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseSeconds("max_connection_age_seconds", v,
                                          &f.options.faults.max_connection_age);
                    }),
              Value(
                  "slow_reader_timeout_seconds", "0",
                  "Reset a client whose write has been pending this long (0 = "
                  "never).",
                  [](SimulatorFlags& f, absl::string_view v) {
                    return ParseSeconds("slow_reader_timeout_seconds", v,
                                        &f.options.faults.slow_reader_timeout);
                  }),
              Value("fail_first_attempts", "0",
                    "The first N requests per stream get --fail_status.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("fail_first_attempts", v,
                                      &f.options.faults.fail_first_attempts);
                    }),
              Value("fail_status", "503", "401, 429, 500, 502, 503 or 504.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("fail_status", v,
                                      &f.options.faults.fail_status);
                    }),
              Value("fail_delay_seconds", "0",
                    "Delay before a failure response.",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseSeconds("fail_delay_seconds", v,
                                          &f.options.faults.fail_delay);
                    }),
              Value("retry_after_seconds", "-1",
                    "Retry-After on 429s (-1 = none, as upstream).",
                    [](SimulatorFlags& f, absl::string_view v) {
                      return ParseInt("retry_after_seconds", v,
                                      &f.options.faults.retry_after_seconds);
                    }),
          };
  return *flags;
}

const Flag* FindFlag(absl::string_view name) {
  for (const Flag& flag : Flags()) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<SimulatorFlags> ParseSimulatorFlags(
    const std::vector<std::string>& args) {
  SimulatorFlags flags;
  flags.options.keys = {"sim-key"};
  flags.options.retention_events = 200'000;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      flags.help = true;
      continue;
    }
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", args[i], "'; see --help"));
    }
    absl::string_view name = arg;
    std::optional<absl::string_view> value;
    const size_t equals = arg.find('=');
    if (equals != absl::string_view::npos) {
      name = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    const Flag* flag = FindFlag(name);
    if (flag == nullptr && !value && absl::StartsWith(name, "no")) {
      const Flag* negated = FindFlag(name.substr(2));
      if (negated != nullptr && negated->is_bool) {
        flag = negated;
        value = "false";
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", std::string(name), "; see --help"));
    }
    if (!value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag->name, " needs a value"));
      }
    }
    CHS_RETURN_IF_ERROR(flag->set(flags, *value));
  }
  return flags;
}

std::string SimulatorFlagsHelp() {
  std::string help =
      "ch_simulator: a Companies House Streaming API simulator.\n"
      "Serves /companies, /filings, /officers, "
      "/persons-with-significant-control,\n/charges, /insolvency-cases, "
      "/disqualified-officers, /company-exemptions and\n"
      "/persons-with-significant-control-statements with Basic auth "
      "(username = a key),\n?timepoint= replay, chunked NDJSON and "
      "heartbeats. Stops on SIGINT/SIGTERM.\n\n"
      "Flags (--name=value or --name value; booleans also --name / "
      "--noname):\n";
  for (const Flag& flag : Flags()) {
    absl::StrAppendFormat(&help, "  --%-34s %s", flag.name, flag.help);
    if (flag.default_text[0] != '\0') {
      absl::StrAppend(&help, " (default: ", flag.default_text, ")");
    }
    help.push_back('\n');
  }
  absl::StrAppend(&help, "  --", "help", std::string(30, ' '),
                  "    Print this text.\n");
  return help;
}

}  // namespace chstream::ingest::sim
