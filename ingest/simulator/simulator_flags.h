// File: ingest/simulator/simulator_flags.h
//
// Command-line flags of the ch_simulator binary, parsed into
// Simulator Options. Kept apart from main.cc so that parsing is unit-tested
// and --help is generated from the same table as the parser.
//
// Syntax: --name=value or --name value; booleans also as --name / --noname.
// Lists are comma-separated. Durations are in (fractional) seconds.
//
// Thread-safety: the functions are pure.
//
//   absl::StatusOr<SimulatorFlags> flags = ParseSimulatorFlags({"--rate=0"});
//   if (flags.ok() && flags->help) std::cout << SimulatorFlagsHelp();
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ingest/simulator/simulator.h"

namespace chstream::ingest::sim {

struct SimulatorFlags {
  // Options with the binary's defaults (keys {"sim-key"}, retention 200,000
  // events per stream) plus whatever the flags set.
  Options options;
  // PEM files for --tls_cert / --tls_key ("" = plain HTTP); main() reads them
  // into options.tls_cert_pem / tls_key_pem.
  std::string tls_cert_path;
  std::string tls_key_path;
  std::string log_level = "info";
  bool help = false;
};

// `args` excludes argv[0].
absl::StatusOr<SimulatorFlags> ParseSimulatorFlags(
    const std::vector<std::string>& args);

// Usage text listing every flag with its default.
std::string SimulatorFlagsHelp();

}  // namespace chstream::ingest::sim
