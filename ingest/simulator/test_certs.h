// File: ingest/simulator/test_certs.h
//
// A throwaway public-key infrastructure for TLS tests, made at test time with
// OpenSSL's C API (nothing is read from or written to disk):
//
//   * a CA (self-signed, CA:TRUE);
//   * a server certificate signed by that CA for DNS:localhost,
//     IP:127.0.0.1 and IP:::1 (serverAuth), with its private key;
//   * a second, unrelated CA, to show that a client verifying against the
//     wrong trust anchor fails;
//   * a certificate signed by the right CA but for the wrong name
//     (DNS:wrong-host.invalid), to show that hostname verification fails.
//
// Keys are ECDSA P-256; certificates are valid from an hour ago for 30 days.
// Everything is PEM text, ready for Simulator Options::tls_cert_pem /
// tls_key_pem on the server side and ssl::context::add_certificate_authority
// (or SSL_CTX_load_verify_locations via a temp file) on the client side.
//
// Thread-safety: MakeTestPki() may be called from any thread; each call makes
// fresh keys and certificates.
//
//   ASSERT_OK_AND_ASSIGN(TestPki pki, MakeTestPki());
//   options.tls_cert_pem = pki.server_cert_pem;
//   options.tls_key_pem = pki.server_key_pem;
//   client_ctx.add_certificate_authority(asio::buffer(pki.ca_pem));
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace chstream::ingest::sim {

struct TestPki {
  std::string ca_pem;           // the trust anchor for server_cert_pem
  std::string server_cert_pem;  // localhost / 127.0.0.1 / ::1, signed by ca
  std::string server_key_pem;   // PKCS#8 PEM
  std::string other_ca_pem;     // an unrelated CA
  // Signed by ca_pem, but only for DNS:wrong-host.invalid.
  std::string wrong_name_cert_pem;
  std::string wrong_name_key_pem;
};

absl::StatusOr<TestPki> MakeTestPki();

// Client certificates for mutual-TLS tests: a client CA (what a server
// trusts), a client certificate it signed (extendedKeyUsage clientAuth),
// and a "rogue" client certificate signed by an unrelated CA.
struct ClientPki {
  std::string ca_pem;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string rogue_cert_pem;
  std::string rogue_key_pem;
};

absl::StatusOr<ClientPki> MakeClientPki();

}  // namespace chstream::ingest::sim
