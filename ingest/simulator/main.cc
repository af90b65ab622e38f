// ch_simulator: the Companies House Streaming API simulator as a process.
//
//   bazel run //ingest/simulator:ch_simulator -- --port=8090 --keys=k1,k2
//   curl -N -u k1: 'http://127.0.0.1:8090/companies?timepoint=82000000'
//
// Prints "listening on <url>" on stdout once it accepts connections (so a
// script can start it with --port=0 and read the port), logs as JSON lines
// on stderr, and stops cleanly on SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "ingest/simulator/simulator.h"
#include "ingest/simulator/simulator_flags.h"

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

int Run(int argc, char** argv) {
  using chstream::ingest::sim::ParseSimulatorFlags;
  using chstream::ingest::sim::Simulator;
  using chstream::ingest::sim::SimulatorFlags;
  using chstream::ingest::sim::SimulatorFlagsHelp;
  namespace log = chstream::log;

  absl::StatusOr<SimulatorFlags> flags =
      ParseSimulatorFlags(std::vector<std::string>(argv + 1, argv + argc));
  if (!flags.ok()) {
    std::fprintf(stderr, "ch_simulator: %s\n",
                 std::string(flags.status().message()).c_str());
    return 2;
  }
  if (flags->help) {
    std::fputs(SimulatorFlagsHelp().c_str(), stdout);
    return 0;
  }
  log::Level level;
  if (!log::ParseLevel(flags->log_level, &level)) {
    std::fprintf(stderr, "ch_simulator: bad --log_level=%s\n",
                 flags->log_level.c_str());
    return 2;
  }
  log::SetMinLevel(level);
  if (flags->tls_cert_path.empty() != flags->tls_key_path.empty()) {
    std::fprintf(stderr,
                 "ch_simulator: --tls_cert and --tls_key go together\n");
    return 2;
  }
  if (!flags->tls_cert_path.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(flags->tls_cert_path);
    absl::StatusOr<std::string> key = ReadFile(flags->tls_key_path);
    if (!cert.ok() || !key.ok()) {
      std::fprintf(
          stderr, "ch_simulator: %s\n",
          std::string((cert.ok() ? key.status() : cert.status()).message())
              .c_str());
      return 2;
    }
    flags->options.tls_cert_pem = *std::move(cert);
    flags->options.tls_key_pem = *std::move(key);
  }
  for (const std::string& key : flags->options.keys) log::AddSecret(key);

  // The simulator's threads inherit this mask, so the signals reach sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<Simulator>> sim =
      Simulator::Start(flags->options);
  if (!sim.ok()) {
    log::Error("simulator failed to start", {{"status", sim.status()}});
    return 1;
  }
  std::printf("listening on %s\n", (*sim)->url().c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  log::Info("stopping", {{"signal", signal}});
  (*sim)->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
