// File: server/grpc_auth.h
//
// Bearer-token authentication for chstream's gRPC server.
//
// Tokens come from a file (--grpc_auth_token_file): one token per line,
// surrounding whitespace trimmed, blank lines and lines starting with '#'
// ignored. A call must carry the metadata `authorization: Bearer <token>`
// with one of the tokens, else it ends with UNAUTHENTICATED before it reaches
// the service. grpc.health.v1.Health and grpc.reflection.v1alpha.
// ServerReflection stay open, so that load balancers and grpcurl's `list` /
// `describe` work without a token.
//
// Only SHA-256 digests of the tokens are kept; a presented token is hashed
// and compared with every digest in constant time (CRYPTO_memcmp, no early
// exit), so neither the token's content nor which token matched shows in the
// timing. Tokens are never logged, and the authorization metadata is consumed
// (removed from the call) once checked, so interceptors and handlers never
// see it.
//
// Two adapters attach a TokenAuthenticator to gRPC's transport:
//   * TokenAuthMetadataProcessor, a grpc::AuthMetadataProcessor, for any
//     secure grpc::ServerCredentials (e.g. grpc::SslServerCredentials);
//   * PlaintextServerCredentials(), plaintext credentials that, unlike
//     grpc::InsecureServerCredentials() (which aborts on
//     SetAuthMetadataProcessor in gRPC 1.51), run a TokenAuthMetadataProcessor
//     in the server's auth filter through gRPC's C core API.
//
// Thread-safety: TokenAuthenticator is immutable after construction and safe
// to share between threads; the processor is called on gRPC's threads.
//
//   CHS_ASSIGN_OR_RETURN(std::vector<std::string> tokens,
//                        LoadTokenFile(config.grpc_auth_token_file));
//   auto auth = std::make_shared<TokenAuthenticator>(tokens);
//   std::shared_ptr<grpc::ServerCredentials> creds = PlaintextServerCredentials();
//   creds->SetAuthMetadataProcessor(
//       std::make_shared<TokenAuthMetadataProcessor>(auth));
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chstream::server {

// The metadata key (lower case, as on the wire) and the scheme.
inline constexpr char kAuthorizationMetadata[] = "authorization";
inline constexpr char kBearerScheme[] = "Bearer";

// The tokens in the text of a token file. An error when a token contains
// whitespace (a line holds one token) or when there is no token at all.
absl::StatusOr<std::vector<std::string>> ParseTokens(absl::string_view text);

// Reads and parses a token file. Error messages name the file, never a
// token.
absl::StatusOr<std::vector<std::string>> LoadTokenFile(const std::string& path);

// True for the methods that need no token: "/grpc.health.v1.Health/..." and
// "/grpc.reflection.v1alpha.ServerReflection/...". `path` is the HTTP/2
// :path, "/package.Service/Method".
bool IsOpenMethod(absl::string_view path);

class TokenAuthenticator {
 public:
  // REQUIRES: `tokens` is not empty and holds no empty token.
  explicit TokenAuthenticator(const std::vector<std::string>& tokens);

  TokenAuthenticator(const TokenAuthenticator&) = delete;
  TokenAuthenticator& operator=(const TokenAuthenticator&) = delete;

  // True when `token` is one of the tokens (constant time).
  bool IsValidToken(absl::string_view token) const;

  // Decides one call: `path` is its :path, `authorization` the values of
  // its authorization metadata (usually zero or one). OK for open methods
  // and for a valid "Bearer <token>" value (scheme case-insensitive);
  // otherwise UNAUTHENTICATED with a message saying what to send. The
  // message never contains what the client sent.
  absl::Status Check(absl::string_view path,
                     const std::vector<absl::string_view>& authorization) const;

  size_t size() const { return digests_.size(); }

 private:
  using Digest = std::array<unsigned char, 32>;
  std::vector<Digest> digests_;
};

// Runs a TokenAuthenticator on each call, non-blocking (on the transport's
// thread). Consumes the authorization metadata on success.
class TokenAuthMetadataProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthMetadataProcessor(
      std::shared_ptr<const TokenAuthenticator> authenticator);

  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  const std::shared_ptr<const TokenAuthenticator>& authenticator() const {
    return authenticator_;
  }

 private:
  std::shared_ptr<const TokenAuthenticator> authenticator_;
};

// Plaintext (no TLS) server credentials on which SetAuthMetadataProcessor
// works. Only a TokenAuthMetadataProcessor is accepted (its authenticator
// runs in gRPC core's auth filter, where no C++ grpc::AuthContext exists to
// hand to an arbitrary processor); passing any other processor is a
// programming error and aborts, as grpc::InsecureServerCredentials() does.
// Without a processor the credentials behave like InsecureServerCredentials.
std::shared_ptr<grpc::ServerCredentials> PlaintextServerCredentials();

}  // namespace chstream::server
