#include "server/file_permissions.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"

namespace chstream::server {

absl::StatusOr<mode_t> FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  return st.st_mode & 07777;
}

std::vector<SecretFile> SecretFiles(const Config& config) {
  std::vector<SecretFile> files;
  auto add = [&files](const char* what, const std::string& path) {
    if (!path.empty()) files.push_back({what, path});
  };
  add(".env file", config.env_file);
  add("CH_STREAMING_API_KEY_FILE", config.api_key_file);
  add("--grpc_tls_key", config.grpc_tls_key);
  add("--grpc_auth_token_file", config.grpc_auth_token_file);
  return files;
}

int WarnAboutExposedSecretFiles(const std::vector<SecretFile>& files) {
  int warnings = 0;
  for (const SecretFile& f : files) {
    absl::StatusOr<mode_t> mode = FileMode(f.path);
    if (!mode.ok() || !IsGroupOrOtherAccessible(*mode)) continue;
    const std::string octal =
        absl::StrFormat("%04o", static_cast<unsigned>(*mode & 07777));
    log::Warning(
        "a file holding secrets is accessible by group or other users; "
        "restrict it with chmod 600",
        {{"file", f.path}, {"holds", f.what}, {"mode", octal}});
    ++warnings;
  }
  return warnings;
}

}  // namespace chstream::server
