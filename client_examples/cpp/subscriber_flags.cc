#include "client_examples/cpp/subscriber_flags.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace chstream::client_examples {
namespace {

std::vector<std::string> SplitList(const std::string& value) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

absl::Status BadValue(const std::string& name, const std::string& value,
                      const std::string& expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", name, "=", value, ": expected ", expected));
}

absl::StatusOr<int64_t> ParseInt(const std::string& name,
                                 const std::string& value, int64_t min,
                                 int64_t max) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < min || v > max) {
    return BadValue(name, value,
                    absl::StrCat("an integer from ", min, " to ", max));
  }
  return v;
}

}  // namespace

std::string SubscriberUsage() {
  return R"(Usage: subscriber [flags]

Follows chstream's Subscribe stream with a resume loop: processes each event
once, saves its position atomically, reconnects with jittered backoff, and
resumes after the last saved position. SIGINT/SIGTERM: save and exit 0.

  --address=HOST:PORT        chstream gRPC address (default 127.0.0.1:50051)
  --position_file=PATH       resume cursor, rewritten atomically
                             (default chstream.position)
  --start=beginning|now      where to start when the position file does not
                             exist yet (default now)
  --streams=A,B              only these streams (default all)
  --company=N1,N2            only these company numbers (default all)
  --heartbeat_seconds=N      server heartbeat while idle, 1..3600 (default 10);
                             silence for 3*N seconds forces a reconnect
  --output=PATH              append one JSON line per event to PATH; the last
                             line is also used to skip events processed after
                             the last saved position (default: stdout, no
                             such skipping)
  --checkpoint_events=N      save the position every N events (default 100)
  --checkpoint_interval_ms=N ... or every N ms while events flow (default 1000)
  --log_level=debug|info|warning|error   (default info; logs go to stderr)
  --help                     this text
)";
}

absl::StatusOr<SubscriberFlags> ParseSubscriberFlags(
    const std::vector<std::string>& args, bool* help) {
  SubscriberFlags f;
  *help = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      *help = true;
      return SubscriberFlags();
    }
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument '", arg, "' (flags are --name=value)"));
    }
    std::string name = arg.substr(2);
    std::string value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " needs a value"));
    }

    if (name == "address") {
      if (value.empty()) return BadValue(name, value, "HOST:PORT");
      f.address = value;
    } else if (name == "position_file") {
      if (value.empty()) return BadValue(name, value, "a file path");
      f.position_file = value;
    } else if (name == "start") {
      if (value == "beginning") {
        f.start = StartFrom::kBeginning;
      } else if (value == "now") {
        f.start = StartFrom::kNow;
      } else {
        return BadValue(name, value, "beginning or now");
      }
    } else if (name == "streams") {
      f.streams = SplitList(value);
    } else if (name == "company") {
      f.companies = SplitList(value);
      for (std::string& c : f.companies) absl::AsciiStrToUpper(&c);
    } else if (name == "heartbeat_seconds") {
      absl::StatusOr<int64_t> v = ParseInt(name, value, 1, 3600);
      if (!v.ok()) return v.status();
      f.heartbeat_seconds = static_cast<uint32_t>(*v);
    } else if (name == "output") {
      f.output = value;
    } else if (name == "checkpoint_events") {
      absl::StatusOr<int64_t> v = ParseInt(name, value, 1, 1'000'000);
      if (!v.ok()) return v.status();
      f.checkpoint_events = static_cast<int>(*v);
    } else if (name == "checkpoint_interval_ms") {
      absl::StatusOr<int64_t> v = ParseInt(name, value, 1, 3'600'000);
      if (!v.ok()) return v.status();
      f.checkpoint_interval = absl::Milliseconds(*v);
    } else if (name == "log_level") {
      if (value != "debug" && value != "info" && value != "warning" &&
          value != "error") {
        return BadValue(name, value, "debug, info, warning or error");
      }
      f.log_level = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
  }
  return f;
}

}  // namespace chstream::client_examples
