// File: server/config.h
//
// chstreamd's configuration: every setting has a flag (--name=value), an
// environment variable (CHSTREAM_<NAME>), an optional line in a .env file and
// a default. Precedence: flag > environment > .env > default.
//
// The upstream stream key is never a flag: it comes from CH_STREAMING_API_KEY
// (environment or .env) or from the file named by CH_STREAMING_API_KEY_FILE.
// It may be a comma-separated list of keys.
//
// Relative paths are resolved against the directory the user ran the command
// from (BUILD_WORKING_DIRECTORY under `bazel run`, else the current one).
//
//   absl::StatusOr<Config> config = LoadConfig(argc, argv, environ_map);
//   if (!config.ok()) { std::cerr << config.status().message(); exit(2); }
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace chstream::server {

enum class OnTimepointExpired { kResumeFromHead, kStop };

struct Config {
  // Serving.
  std::string grpc_address = "127.0.0.1:50051";
  int max_subscribers = 1000;
  int subscriber_queue = 1024;
  absl::Duration max_subscriber_lag = absl::ZeroDuration();  // 0 = never end
  absl::Duration subscriber_write_timeout = absl::Seconds(30);  // 0 = never
  int max_replays = 32;
  // gRPC security (server/grpc_credentials.h). Paths are resolved.
  std::string grpc_tls_cert;         // PEM chain; TLS when set (with key)
  std::string grpc_tls_key;          // PEM private key
  std::string grpc_client_ca;        // PEM CA bundle; mutual TLS when set
  std::string grpc_auth_token_file;  // bearer tokens; checked when set
  bool allow_insecure_remote = false;
  // Storage.
  std::string db_path = "chstream.db";
  // A libpq URI: when set, events are stored in PostgreSQL (not db_path).
  // May carry a password: print only log::RedactUrl(postgres_url).
  std::string postgres_url;
  // --synchronous: full (true, the default: commits are durable before
  // they are published) or normal. (Named after the older --sync_full.)
  bool sync_full = true;
  bool new_store_id = false;  // replace the store_id at this start
  int batch_max_events = 4096;
  absl::Duration batch_max_delay = absl::Milliseconds(5);
  int writer_queue = 16384;                 // items
  int64_t writer_queue_bytes = 32 << 20;    // EventWriter::ItemBytes
  // Upstream.
  std::vector<std::string> streams = {"companies"};
  std::string upstream_url = "https://stream.companieshouse.gov.uk";
  std::string ca_file;
  bool simulate = false;
  double simulator_rate = 10;
  absl::Duration idle_timeout = absl::Seconds(90);
  int64_t max_line_bytes = 8 << 20;
  std::map<std::string, int64_t> start_timepoints;  // stream -> timepoint
  absl::Duration auth_retry_interval = absl::Minutes(15);
  OnTimepointExpired on_timepoint_expired = OnTimepointExpired::kResumeFromHead;
  int breaker_failures = 5;
  int max_connections_per_key = 10;
  int max_connects_per_minute = 10;
  // Health (server/health_monitor.h).
  absl::Duration stall_after = absl::Minutes(15);
  std::vector<std::string> busy_streams = {"companies", "filings", "officers",
                                           "persons-with-significant-control"};
  absl::Duration heartbeat_stale_after = absl::Minutes(3);
  absl::Duration disconnected_after = absl::Minutes(2);
  absl::Duration disconnected_failed_after = absl::Minutes(15);
  absl::Duration max_lag = absl::Minutes(10);
  int max_reconnects_per_hour = 30;
  std::string alert_webhook_url;  // empty = log alerts only
  // Operations.
  // This replica's name in GetStatus and the cluster table ("" =
  // hostname:gRPC port).
  std::string replica_id;
  std::string metrics_address = "127.0.0.1:9464";
  std::string log_level = "info";
  std::string env_file;  // the .env file that was read ("" if none)
  // The CH_STREAMING_API_KEY_FILE that was read ("" if none).
  std::string api_key_file;

  // Not errors, for the caller to log: unknown CHSTREAM_* variables.
  std::vector<std::string> warnings;

  // Secrets (never printed).
  std::vector<std::string> api_keys;

  // True when chstreamd follows its built-in simulator (no key, or
  // --simulate).
  bool UseSimulator() const { return simulate || api_keys.empty(); }
};

// What --help prints: every setting, its environment name and default.
std::string ConfigHelp();

// A result of parsing that is not an error but ends the program (--help).
struct ConfigExit {
  int code;
  std::string output;
};

// Parses argv (argv[0] skipped) and `env` (name -> value, usually the
// process environment). An error's message is one line naming the setting
// and what is allowed; the caller prints it and exits with status 2.
absl::StatusOr<Config> LoadConfig(
    const std::vector<std::string>& args,
    const absl::flat_hash_map<std::string, std::string>& env,
    ConfigExit* exit_request);

// Parses the text of a .env file: KEY=VALUE lines, `export ` prefix,
// single quotes (literal), double quotes (\n \" \\ escapes), # comments.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseEnvFile(
    absl::string_view text);

// The current process environment as a map.
absl::flat_hash_map<std::string, std::string> ProcessEnvironment();

}  // namespace chstream::server
