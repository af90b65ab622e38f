// File: server/file_permissions.h
//
// Key hygiene: files that hold secrets (the .env file, the file named by
// CH_STREAMING_API_KEY_FILE, the gRPC TLS private key and the bearer-token
// file) should be readable by their owner only. chstreamd still starts when
// one is not, but logs one warning per such file, naming the file and its
// mode and never its content.
//
// Thread-safety: stateless; safe from any thread.
//
//   WarnAboutExposedSecretFiles(config);  // at start-up, after LoadConfig
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "absl/status/statusor.h"
#include "server/config.h"

namespace chstream::server {

// The permission bits (mode & 07777) of `path`, following symlinks.
absl::StatusOr<mode_t> FileMode(const std::string& path);

// True when `mode` grants anything to group or other (mode & 077).
inline bool IsGroupOrOtherAccessible(mode_t mode) { return (mode & 077) != 0; }

struct SecretFile {
  std::string what;  // e.g. "CH_STREAMING_API_KEY_FILE"
  std::string path;
};

// The secret-holding files `config` names (those that are set).
std::vector<SecretFile> SecretFiles(const Config& config);

// Logs a warning for each of `files` that group or other may access, and
// returns how many were reported. Files that cannot be stat()ed are skipped
// (reading them already failed or will fail with its own error).
int WarnAboutExposedSecretFiles(const std::vector<SecretFile>& files);
inline int WarnAboutExposedSecretFiles(const Config& config) {
  return WarnAboutExposedSecretFiles(SecretFiles(config));
}

}  // namespace chstream::server
