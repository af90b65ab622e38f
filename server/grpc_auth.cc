#include "server/grpc_auth.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "server/status_conversion.h"

namespace chstream::server {
namespace {

constexpr char kOpenServices[][48] = {
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
};

constexpr char kWhatToSend[] =
    "send the metadata 'authorization: Bearer <token>' with a token from "
    "the server's --grpc_auth_token_file";

absl::string_view ToView(grpc::string_ref s) {
  return absl::string_view(s.data(), s.size());
}

absl::string_view ToView(const grpc_slice& s) {
  return absl::string_view(
      reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)),
      GRPC_SLICE_LENGTH(s));
}

// ---------------------------------------------------------------------------
// Plaintext credentials with a token check in gRPC core's auth filter.

// The state of the C processor: owns a reference to the authenticator.
struct CoreProcessorState {
  std::shared_ptr<const TokenAuthenticator> authenticator;
};

void CoreProcess(void* state, grpc_auth_context* /*context*/,
                 const grpc_metadata* md, size_t num_md,
                 grpc_process_auth_metadata_done_cb cb, void* user_data) {
  const auto* s = static_cast<const CoreProcessorState*>(state);
  absl::string_view path;
  std::vector<absl::string_view> authorization;
  std::vector<grpc_metadata> consumed;
  for (size_t i = 0; i < num_md; ++i) {
    absl::string_view key = ToView(md[i].key);
    if (key == ":path") {
      path = ToView(md[i].value);
    } else if (key == kAuthorizationMetadata) {
      authorization.push_back(ToView(md[i].value));
      consumed.push_back(md[i]);
    }
  }
  absl::Status status = s->authenticator->Check(path, authorization);
  if (status.ok()) {
    cb(user_data, consumed.data(), consumed.size(), nullptr, 0,
       GRPC_STATUS_OK, nullptr);
  } else {
    const std::string message(status.message());
    cb(user_data, nullptr, 0, nullptr, 0,
       static_cast<grpc_status_code>(status.code()), message.c_str());
  }
}

void CoreDestroy(void* state) {
  delete static_cast<CoreProcessorState*>(state);
}

class PlaintextServerCredentialsImpl final : public grpc::ServerCredentials {
 public:
  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& processor) override {
    auto* token_processor =
        dynamic_cast<TokenAuthMetadataProcessor*>(processor.get());
    if (processor != nullptr && token_processor == nullptr) {
      log::Error(
          "PlaintextServerCredentials supports only a "
          "TokenAuthMetadataProcessor");
      std::abort();
    }
    authenticator_ = token_processor != nullptr
                         ? token_processor->authenticator()
                         : nullptr;
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
    if (authenticator_ != nullptr) {
      grpc_auth_metadata_processor processor;
      processor.process = &CoreProcess;
      processor.destroy = &CoreDestroy;
      processor.state = new CoreProcessorState{authenticator_};
      grpc_server_credentials_set_auth_metadata_processor(creds, processor);
    }
    const int port = grpc_server_add_http2_port(server, addr.c_str(), creds);
    grpc_server_credentials_release(creds);
    return port;
  }

  std::shared_ptr<const TokenAuthenticator> authenticator_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseTokens(absl::string_view text) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    for (char c : line) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c)) ||
          absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_number,
            " holds whitespace or a control character inside a token (one "
            "token per line)"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "no token in it (one token per line; blank lines and # comments are "
        "ignored)");
  }
  return tokens;
}

absl::StatusOr<std::vector<std::string>> LoadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid --grpc_auth_token_file: cannot read ", path, ": ",
        std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<std::vector<std::string>> tokens = ParseTokens(ss.str());
  if (!tokens.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --grpc_auth_token_file ", path, ": ",
                     tokens.status().message()));
  }
  return tokens;
}

bool IsOpenMethod(absl::string_view path) {
  for (const char* prefix : kOpenServices) {
    if (absl::StartsWith(path, prefix)) return true;
  }
  return false;
}

TokenAuthenticator::TokenAuthenticator(const std::vector<std::string>& tokens) {
  digests_.reserve(tokens.size());
  for (const std::string& token : tokens) {
    Digest d;
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
           d.data());
    digests_.push_back(d);
  }
}

bool TokenAuthenticator::IsValidToken(absl::string_view token) const {
  Digest presented;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         presented.data());
  // Compare with every digest, without an early exit.
  int matches = 0;
  for (const Digest& d : digests_) {
    matches |= CRYPTO_memcmp(d.data(), presented.data(), d.size()) == 0;
  }
  return !token.empty() && matches != 0;
}

absl::Status TokenAuthenticator::Check(
    absl::string_view path,
    const std::vector<absl::string_view>& authorization) const {
  if (IsOpenMethod(path)) return absl::OkStatus();
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("missing bearer token: ", kWhatToSend));
  }
  bool bearer_seen = false;
  for (absl::string_view value : authorization) {
    value = absl::StripAsciiWhitespace(value);
    const size_t scheme_len = sizeof(kBearerScheme) - 1;
    if (value.size() <= scheme_len ||
        !absl::EqualsIgnoreCase(value.substr(0, scheme_len), kBearerScheme) ||
        !absl::ascii_isspace(static_cast<unsigned char>(value[scheme_len]))) {
      continue;
    }
    bearer_seen = true;
    if (IsValidToken(absl::StripAsciiWhitespace(value.substr(scheme_len)))) {
      return absl::OkStatus();
    }
  }
  if (!bearer_seen) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the authorization metadata is not a bearer token: ", kWhatToSend));
  }
  return absl::UnauthenticatedError(
      absl::StrCat("invalid bearer token: ", kWhatToSend));
}

TokenAuthMetadataProcessor::TokenAuthMetadataProcessor(
    std::shared_ptr<const TokenAuthenticator> authenticator)
    : authenticator_(std::move(authenticator)) {}

grpc::Status TokenAuthMetadataProcessor::Process(
    const InputMetadata& auth_metadata, grpc::AuthContext* /*context*/,
    OutputMetadata* consumed_auth_metadata,
    OutputMetadata* /*response_metadata*/) {
  absl::string_view path;
  std::vector<absl::string_view> authorization;
  for (const auto& [key, value] : auth_metadata) {
    if (ToView(key) == ":path") {
      path = ToView(value);
    } else if (ToView(key) == kAuthorizationMetadata) {
      authorization.push_back(ToView(value));
    }
  }
  absl::Status status = authenticator_->Check(path, authorization);
  if (!status.ok()) return ToGrpcStatus(status);
  for (absl::string_view value : authorization) {
    consumed_auth_metadata->emplace(kAuthorizationMetadata,
                                    std::string(value));
  }
  return grpc::Status::OK;
}

std::shared_ptr<grpc::ServerCredentials> PlaintextServerCredentials() {
  return std::make_shared<PlaintextServerCredentialsImpl>();
}

}  // namespace chstream::server
