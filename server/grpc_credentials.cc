#include "server/grpc_credentials.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "server/grpc_auth.h"

namespace chstream::server {
namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using CertPtr = std::unique_ptr<X509, X509Deleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;

absl::Status FlagError(absl::string_view flag, const std::string& path,
                       absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid --", flag, " ", path, ": ", what));
}

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag,
                                         const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FlagError(flag, path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return FlagError(flag, path, std::strerror(errno));
  return ss.str();
}

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The certificates in a PEM bundle (at least one).
absl::StatusOr<std::vector<CertPtr>> ParseCertificates(
    absl::string_view flag, const std::string& path, const std::string& pem) {
  std::vector<CertPtr> certs;
  BioPtr bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (certs.empty()) {
    return FlagError(flag, path, "no PEM certificate (-----BEGIN CERTIFICATE)");
  }
  return certs;
}

absl::StatusOr<KeyPtr> ParsePrivateKey(const std::string& path,
                                       const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  // A null password callback with no user data: an encrypted key fails
  // instead of prompting on the terminal.
  KeyPtr key(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (!key) {
    return FlagError("grpc_tls_key", path,
                     "no unencrypted PEM private key (-----BEGIN PRIVATE KEY, "
                     "EC PRIVATE KEY or RSA PRIVATE KEY)");
  }
  return key;
}

}  // namespace

std::string HostOfAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  absl::string_view host =
      colon == absl::string_view::npos ? address : address.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  return std::string(host);
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::Status CheckRemoteExposure(const Config& config) {
  const bool tls = !config.grpc_tls_cert.empty();
  const bool tokens = !config.grpc_auth_token_file.empty();
  if (tls || tokens || config.allow_insecure_remote ||
      IsLoopbackHost(HostOfAddress(config.grpc_address))) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to serve gRPC on the non-loopback address --grpc_address=",
      config.grpc_address,
      " in plaintext without tokens: anyone who reaches it can read every "
      "event; set --grpc_tls_cert and --grpc_tls_key and/or "
      "--grpc_auth_token_file, or pass --allow_insecure_remote"));
}

absl::StatusOr<GrpcSecurity> BuildGrpcSecurity(const Config& config) {
  GrpcSecurity security;

  std::shared_ptr<TokenAuthenticator> authenticator;
  if (!config.grpc_auth_token_file.empty()) {
    CHS_ASSIGN_OR_RETURN(std::vector<std::string> tokens,
                         LoadTokenFile(config.grpc_auth_token_file));
    for (const std::string& token : tokens) log::AddSecret(token);
    authenticator = std::make_shared<TokenAuthenticator>(tokens);
    security.tokens = tokens.size();
  }

  if (config.grpc_tls_cert.empty() != config.grpc_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "invalid --grpc_tls_cert/--grpc_tls_key: TLS needs both (or neither)");
  }
  if (!config.grpc_client_ca.empty() && config.grpc_tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "invalid --grpc_client_ca: mutual TLS needs --grpc_tls_cert and "
        "--grpc_tls_key too");
  }

  if (config.grpc_tls_cert.empty()) {
    security.credentials = PlaintextServerCredentials();
  } else {
    CHS_ASSIGN_OR_RETURN(std::string cert_pem,
                         ReadFlagFile("grpc_tls_cert", config.grpc_tls_cert));
    CHS_ASSIGN_OR_RETURN(std::string key_pem,
                         ReadFlagFile("grpc_tls_key", config.grpc_tls_key));
    CHS_ASSIGN_OR_RETURN(
        std::vector<CertPtr> chain,
        ParseCertificates("grpc_tls_cert", config.grpc_tls_cert, cert_pem));
    CHS_ASSIGN_OR_RETURN(KeyPtr key,
                         ParsePrivateKey(config.grpc_tls_key, key_pem));
    if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --grpc_tls_key ", config.grpc_tls_key,
          ": it does not match the first certificate in --grpc_tls_cert ",
          config.grpc_tls_cert));
    }
    grpc::SslServerCredentialsOptions options(
        GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    options.pem_key_cert_pairs.push_back({key_pem, cert_pem});
    if (!config.grpc_client_ca.empty()) {
      CHS_ASSIGN_OR_RETURN(
          std::string ca_pem,
          ReadFlagFile("grpc_client_ca", config.grpc_client_ca));
      CHS_RETURN_IF_ERROR(
          ParseCertificates("grpc_client_ca", config.grpc_client_ca, ca_pem)
              .status());
      options.pem_root_certs = ca_pem;
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
      security.mutual_tls = true;
    }
    security.credentials = grpc::SslServerCredentials(options);
    security.tls = true;
  }

  if (authenticator != nullptr) {
    security.credentials->SetAuthMetadataProcessor(
        std::make_shared<TokenAuthMetadataProcessor>(authenticator));
    if (!security.tls && !IsLoopbackHost(HostOfAddress(config.grpc_address))) {
      log::Warning(
          "bearer tokens travel in plaintext to a non-loopback "
          "--grpc_address; anyone on the path can read and reuse them "
          "(set --grpc_tls_cert and --grpc_tls_key)",
          {{"grpc_address", config.grpc_address}});
    }
  }
  return security;
}

}  // namespace chstream::server
