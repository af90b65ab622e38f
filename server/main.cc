// chstreamd: follows the Companies House Streaming API (or its built-in
// simulator), stores every event in SQLite and serves it over gRPC.
//
// The parts and their wiring live in server/daemon.h; this file loads the
// configuration, starts the Daemon, waits for SIGINT/SIGTERM and stops it.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/log.h"
#include "server/config.h"
#include "server/daemon.h"

namespace chstream::server {
namespace {

int Run(int argc, char** argv) {
  // Signals are taken synchronously by this thread (sigwait); block them
  // before any other thread starts so that none of them receives one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Debian's abseil is built without NDEBUG, so every Mutex acquisition
  // would feed the deadlock detector's lock graph (measured: ~4% of the
  // server's CPU when streaming). The test binaries keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  ConfigExit exit_request{-1, ""};
  absl::StatusOr<Config> loaded =
      LoadConfig(std::vector<std::string>(argv + 1, argv + argc),
                 ProcessEnvironment(), &exit_request);
  if (exit_request.code >= 0) {
    std::fputs(exit_request.output.c_str(), stdout);
    return exit_request.code;
  }
  if (!loaded.ok()) {
    std::fprintf(stderr, "chstreamd: %s\n",
                 log::Redact(std::string(loaded.status().message())).c_str());
    return 2;
  }
  Config config = *std::move(loaded);
  for (const std::string& key : config.api_keys) log::AddSecret(key);
  log::Level level;
  if (log::ParseLevel(config.log_level, &level)) log::SetMinLevel(level);
  for (const std::string& warning : config.warnings) log::Warning(warning);

  int exit_code = 1;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start(std::move(config), Clock::Real(), &exit_code);
  if (!daemon.ok()) {
    std::fprintf(stderr, "chstreamd: %s\n",
                 log::Redact(std::string(daemon.status().message())).c_str());
    return exit_code;
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::Info("shutting down", {{"signal", signal_number}});
  (*daemon)->Stop();
  return 0;
}

}  // namespace
}  // namespace chstream::server

int main(int argc, char** argv) { return chstream::server::Run(argc, argv); }
