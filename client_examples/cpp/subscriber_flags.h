// File: client_examples/cpp/subscriber_flags.h
//
// Command-line flags of the example subscriber (client_examples/cpp/
// subscriber.cc), parsed by hand so that the example needs nothing beyond
// gRPC, protobuf and abseil's core libraries. Accepts `--name=value` and
// `--name value`.
//
// Thread-safety: pure functions.
//
//   bool help = false;
//   absl::StatusOr<SubscriberFlags> flags = ParseSubscriberFlags(args, &help);
//   if (help) std::fputs(SubscriberUsage().c_str(), stdout);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client_examples/cpp/resume_loop.h"

namespace chstream::client_examples {

struct SubscriberFlags {
  std::string address = "127.0.0.1:50051";
  std::string position_file = "chstream.position";
  StartFrom start = StartFrom::kNow;
  std::vector<std::string> streams;    // --streams=companies,filings
  std::vector<std::string> companies;  // --company=SC571653,00000006
  uint32_t heartbeat_seconds = 10;
  std::string output;  // empty: standard output
  int checkpoint_events = 100;
  absl::Duration checkpoint_interval = absl::Seconds(1);
  std::string log_level = "info";
};

// Parses the arguments after the program name. Sets *help (and returns
// defaults) for --help. INVALID_ARGUMENT names the offending flag.
absl::StatusOr<SubscriberFlags> ParseSubscriberFlags(
    const std::vector<std::string>& args, bool* help);

// The --help text.
std::string SubscriberUsage();

}  // namespace chstream::client_examples
