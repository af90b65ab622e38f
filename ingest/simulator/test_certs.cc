#include "ingest/simulator/test_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace chstream::ingest::sim {
namespace {

struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using CertPtr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// The OpenSSL error queue as text, emptied.
absl::Status OpenSslError(std::string_view what) {
  std::string message = std::string(what);
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    absl::StrAppend(&message, ": ", buf);
  }
  return absl::InternalError(message);
}

absl::StatusOr<KeyPtr> NewKey() {
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslError("EC key generation failed");
  return key;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid,
                          const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) {
    return OpenSslError(
        absl::StrCat("bad extension ", OBJ_nid2sn(nid), "=", value));
  }
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ok) return OpenSslError("X509_add_ext failed");
  return absl::OkStatus();
}

struct Issuer {
  X509* cert;  // nullptr for a self-signed certificate
  EVP_PKEY* key;
};

// A certificate for `key` named `common_name`, signed by `issuer` (or by
// itself). Leaf certificates get `usage` ("serverAuth" or "clientAuth") and,
// when not empty, the subjectAltName `sans`.
absl::StatusOr<CertPtr> MakeCert(EVP_PKEY* key, const std::string& common_name,
                                 bool is_ca, const std::string& sans,
                                 const Issuer& issuer,
                                 const char* usage = "serverAuth") {
  CertPtr cert(X509_new());
  if (!cert) return OpenSslError("X509_new failed");
  X509_set_version(cert.get(), 2);  // v3

  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) {
    return OpenSslError("RAND_bytes failed");
  }
  serial_bytes[0] &= 0x7f;  // positive
  BIGNUM* serial = BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr);
  if (serial == nullptr ||
      BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) ==
          nullptr) {
    BN_free(serial);
    return OpenSslError("serial number");
  }
  BN_free(serial);

  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600);
  if (!X509_set_pubkey(cert.get(), key)) return OpenSslError("set_pubkey");

  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      name, "O", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("chstream test PKI"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer.cert ? issuer.cert : cert.get();
  if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_cert))) {
    return OpenSslError("set_issuer_name");
  }

  CHS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert,
                                   NID_subject_key_identifier, "hash"));
  if (is_ca) {
    CHS_RETURN_IF_ERROR(AddExtension(
        cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:TRUE"));
    CHS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert, NID_key_usage,
                                     "critical,keyCertSign,cRLSign"));
  } else {
    CHS_RETURN_IF_ERROR(AddExtension(
        cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always"));
    CHS_RETURN_IF_ERROR(AddExtension(
        cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE"));
    CHS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert, NID_key_usage,
                                     "critical,digitalSignature"));
    CHS_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer_cert, NID_ext_key_usage, usage));
    if (!sans.empty()) {
      CHS_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert,
                                       NID_subject_alt_name, sans.c_str()));
    }
  }
  if (X509_sign(cert.get(), issuer.key, EVP_sha256()) == 0) {
    return OpenSslError("X509_sign failed");
  }
  return cert;
}

absl::StatusOr<std::string> ToPem(BioPtr bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  if (length <= 0 || data == nullptr) return OpenSslError("empty PEM");
  return std::string(data, static_cast<size_t>(length));
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509(bio.get(), cert)) {
    return OpenSslError("PEM_write_bio_X509 failed");
  }
  return ToPem(std::move(bio));
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                        nullptr, nullptr)) {
    return OpenSslError("PEM_write_bio_PrivateKey failed");
  }
  return ToPem(std::move(bio));
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki() {
  TestPki pki;

  CHS_ASSIGN_OR_RETURN(KeyPtr ca_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr ca, MakeCert(ca_key.get(), "chstream test CA",
                           /*is_ca=*/true, "", Issuer{nullptr, ca_key.get()}));
  CHS_ASSIGN_OR_RETURN(pki.ca_pem, CertPem(ca.get()));

  CHS_ASSIGN_OR_RETURN(KeyPtr server_key, NewKey());
  CHS_ASSIGN_OR_RETURN(CertPtr server,
                       MakeCert(server_key.get(), "localhost", /*is_ca=*/false,
                                "DNS:localhost,IP:127.0.0.1,IP:::1",
                                Issuer{ca.get(), ca_key.get()}));
  CHS_ASSIGN_OR_RETURN(pki.server_cert_pem, CertPem(server.get()));
  CHS_ASSIGN_OR_RETURN(pki.server_key_pem, KeyPem(server_key.get()));

  CHS_ASSIGN_OR_RETURN(KeyPtr other_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr other,
      MakeCert(other_key.get(), "chstream unrelated test CA",
               /*is_ca=*/true, "", Issuer{nullptr, other_key.get()}));
  CHS_ASSIGN_OR_RETURN(pki.other_ca_pem, CertPem(other.get()));

  CHS_ASSIGN_OR_RETURN(KeyPtr wrong_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr wrong,
      MakeCert(wrong_key.get(), "wrong-host.invalid", /*is_ca=*/false,
               "DNS:wrong-host.invalid", Issuer{ca.get(), ca_key.get()}));
  CHS_ASSIGN_OR_RETURN(pki.wrong_name_cert_pem, CertPem(wrong.get()));
  CHS_ASSIGN_OR_RETURN(pki.wrong_name_key_pem, KeyPem(wrong_key.get()));
  return pki;
}

absl::StatusOr<ClientPki> MakeClientPki() {
  ClientPki pki;
  CHS_ASSIGN_OR_RETURN(KeyPtr ca_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr ca, MakeCert(ca_key.get(), "chstream test client CA",
                           /*is_ca=*/true, "", Issuer{nullptr, ca_key.get()}));
  CHS_ASSIGN_OR_RETURN(pki.ca_pem, CertPem(ca.get()));

  CHS_ASSIGN_OR_RETURN(KeyPtr client_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr client,
      MakeCert(client_key.get(), "chstream test client", /*is_ca=*/false, "",
               Issuer{ca.get(), ca_key.get()}, "clientAuth"));
  CHS_ASSIGN_OR_RETURN(pki.client_cert_pem, CertPem(client.get()));
  CHS_ASSIGN_OR_RETURN(pki.client_key_pem, KeyPem(client_key.get()));

  CHS_ASSIGN_OR_RETURN(KeyPtr rogue_ca_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr rogue_ca,
      MakeCert(rogue_ca_key.get(), "chstream rogue CA", /*is_ca=*/true, "",
               Issuer{nullptr, rogue_ca_key.get()}));
  CHS_ASSIGN_OR_RETURN(KeyPtr rogue_key, NewKey());
  CHS_ASSIGN_OR_RETURN(
      CertPtr rogue,
      MakeCert(rogue_key.get(), "chstream rogue client", /*is_ca=*/false, "",
               Issuer{rogue_ca.get(), rogue_ca_key.get()}, "clientAuth"));
  CHS_ASSIGN_OR_RETURN(pki.rogue_cert_pem, CertPem(rogue.get()));
  CHS_ASSIGN_OR_RETURN(pki.rogue_key_pem, KeyPem(rogue_key.get()));
  return pki;
}

}  // namespace chstream::ingest::sim
