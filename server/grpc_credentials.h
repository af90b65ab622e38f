// File: server/grpc_credentials.h
//
// Turns chstreamd's gRPC security settings into grpc::ServerCredentials, and
// refuses configurations that would expose the service to the network
// without protection.
//
//   * --grpc_tls_cert + --grpc_tls_key: TLS (grpc::SslServerCredentials).
//     The files are read and checked at start-up (PEM parses, the key matches
//     the certificate), so a mistake is one clear line and exit 2 rather than
//     failed handshakes later.
//   * --grpc_client_ca: mutual TLS; every client must present a certificate
//     that verifies against this bundle
//     (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY).
//   * --grpc_auth_token_file: bearer tokens (see server/grpc_auth.h), over
//     TLS or plaintext.
//   * Without TLS or tokens, a --grpc_address that is not loopback
//     (127.0.0.0/8, ::1, localhost) is refused unless --allow_insecure_remote.
//
// Thread-safety: the functions are stateless; BuildGrpcSecurity registers the
// tokens with log::AddSecret (thread-safe) so that no log line can show one.
//
//   CHS_RETURN_IF_ERROR(CheckRemoteExposure(config));
//   CHS_ASSIGN_OR_RETURN(GrpcSecurity security, BuildGrpcSecurity(config));
//   GrpcServer::Start(config.grpc_address, &service, {}, security.credentials);
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/config.h"

namespace chstream::server {

// True when `host` (the HOST of a HOST:PORT, with or without [] around an
// IPv6 address) is "localhost", an IPv4 address in 127.0.0.0/8, ::1 or an
// IPv4-mapped 127.0.0.0/8 address. Wildcards (0.0.0.0, ::, "") and other
// names are not loopback.
bool IsLoopbackHost(absl::string_view host);

// The HOST of a HOST:PORT address, brackets removed.
std::string HostOfAddress(absl::string_view address);

// FAILED_PRECONDITION (one line, naming the flags that fix it) when
// config.grpc_address is not loopback and neither TLS nor tokens are
// configured, unless config.allow_insecure_remote.
absl::Status CheckRemoteExposure(const Config& config);

struct GrpcSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  bool tls = false;
  bool mutual_tls = false;
  size_t tokens = 0;  // how many bearer tokens are accepted (0 = no check)
};

// Reads the certificate, key, client CA and token files named in `config`
// and builds the credentials. INVALID_ARGUMENT (one line naming the flag and
// the file, never a secret) when a file is missing, unreadable, not PEM, or
// the key does not match the certificate.
absl::StatusOr<GrpcSecurity> BuildGrpcSecurity(const Config& config);

}  // namespace chstream::server
