// File: tests/server/test_client_pki.h
//
// Client-side certificates for mutual-TLS tests, made at test time with
// OpenSSL (nothing on disk): a client CA, a client certificate it signed
// (extendedKeyUsage clientAuth), and a "rogue" client certificate signed by
// an unrelated CA. The server side comes from ingest/simulator/test_certs.h.
//
// Thread-safety: MakeClientPki() may be called from any thread; each call
// makes fresh keys.
//
//   ASSERT_OK_AND_ASSIGN(ClientPki client, MakeClientPki());
//   ssl_options.pem_cert_chain = client.client_cert_pem;
//   ssl_options.pem_private_key = client.client_key_pem;
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace chstream::testing {

struct ClientPki {
  std::string ca_pem;           // what the server trusts (--grpc_client_ca)
  std::string client_cert_pem;  // signed by ca_pem
  std::string client_key_pem;
  std::string rogue_cert_pem;   // signed by an unrelated CA
  std::string rogue_key_pem;
};

absl::StatusOr<ClientPki> MakeClientPki();

}  // namespace chstream::testing
