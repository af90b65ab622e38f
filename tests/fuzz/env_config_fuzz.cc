// File: tests/fuzz/env_config_fuzz.cc
//
// Fuzzes chstreamd's configuration parsing (server/config.h): ParseEnvFile on
// .env text, and LoadConfig with flags, environment and that .env file all
// taken from the input.
//
// Input: text in up to three sections separated by a line "%%":
//   1. the .env file;
//   2. command-line arguments, one per line (argv[0] is added);
//   3. environment variables, NAME=VALUE per line.
// Inputs that mention "file" (any case) are skipped: they could name
// --env_file, CHSTREAM_ENV_FILE or CH_STREAMING_API_KEY_FILE, and reading an
// arbitrary path (/dev/zero, a FIFO) tests the file system, not the parser.
// The .env section is written to a private temporary file passed as
// --env_file.
//
// Checks: every key ParseEnvFile returns is non-empty and trimmed, with no
// '=' or newline; writing the parsed pairs back as `export KEY="value"` lines
// (with \\, \", \n, \t escapes) and parsing again gives the same pairs.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "server/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

std::string* env_path = nullptr;

std::string Quote(const std::string& value) {
  std::string out = "\"";
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out.push_back(c);
    }
  }
  return out + "\"";
}

void CheckEnvFile(absl::string_view text) {
  auto parsed = chstream::server::ParseEnvFile(text);
  if (!parsed.ok()) {
    FUZZ_CHECK(!parsed.status().message().empty());
    return;
  }
  std::string rewritten;
  for (const auto& [key, value] : *parsed) {
    FUZZ_CHECK(!key.empty());
    FUZZ_CHECK(key == absl::StripAsciiWhitespace(key)) << "'" << key << "'";
    FUZZ_CHECK(key.find('=') == std::string::npos) << key;
    FUZZ_CHECK(key.find('\n') == std::string::npos) << key;
    rewritten += "export " + key + "=" + Quote(value) + "\n";
  }
  auto again = chstream::server::ParseEnvFile(rewritten);
  FUZZ_CHECK(again.ok()) << again.status() << " for:\n" << rewritten;
  FUZZ_CHECK(*again == *parsed) << "round trip changed the pairs:\n"
                                << rewritten;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/env_config_fuzz.XXXXXX";
  FUZZ_CHECK(::mkdtemp(dir.data()) != nullptr) << dir;
  env_path = new std::string(dir + "/fuzz.env");
  // LoadConfig resolves relative paths against BUILD_WORKING_DIRECTORY or
  // the current directory; the real one is fine, nothing is written there.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  if (absl::StrContains(absl::AsciiStrToLower(input), "file")) return 0;
  std::vector<absl::string_view> sections = absl::StrSplit(input, "\n%%\n");
  sections.resize(3);

  CheckEnvFile(sections[0]);

  {
    std::ofstream out(*env_path, std::ios::binary | std::ios::trunc);
    out << sections[0];
  }
  std::vector<std::string> args = {"chstreamd"};
  for (absl::string_view a :
       absl::StrSplit(sections[1], '\n', absl::SkipEmpty())) {
    args.emplace_back(a);
  }
  args.push_back("--env_file=" + *env_path);
  absl::flat_hash_map<std::string, std::string> env;
  for (absl::string_view line :
       absl::StrSplit(sections[2], '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    env[kv.first] = kv.second;
  }

  chstream::server::ConfigExit exit_request{-1, ""};
  auto config = chstream::server::LoadConfig(args, env, &exit_request);
  if (config.ok()) {
    FUZZ_CHECK(config->env_file == *env_path) << config->env_file;
  } else {
    FUZZ_CHECK(!config.status().message().empty());
  }
  return 0;
}
