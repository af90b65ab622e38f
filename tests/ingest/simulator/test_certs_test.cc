#include "ingest/simulator/test_certs.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace chstream::ingest::sim {
namespace {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using CertPtr = std::unique_ptr<X509, X509Deleter>;

CertPtr ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return CertPtr(cert);
}

EVP_PKEY* ParseKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return key;
}

// Verifies `leaf` against the single trust anchor `ca` (X509_V_OK is 0).
int Verify(X509* leaf, X509* ca) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  const int ok = X509_verify_cert(ctx);
  const int error = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return error;
}

TEST(TestCertsTest, ServerCertificateChainsToTheCaOnly) {
  ASSERT_OK_AND_ASSIGN(TestPki pki, MakeTestPki());
  CertPtr ca = ParseCert(pki.ca_pem);
  CertPtr server = ParseCert(pki.server_cert_pem);
  CertPtr other = ParseCert(pki.other_ca_pem);
  CertPtr wrong = ParseCert(pki.wrong_name_cert_pem);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_NE(wrong, nullptr);
  EXPECT_EQ(Verify(server.get(), ca.get()), X509_V_OK);
  EXPECT_EQ(Verify(wrong.get(), ca.get()), X509_V_OK);
  EXPECT_NE(Verify(server.get(), other.get()), X509_V_OK);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(X509_check_ca(other.get()), 1);
  EXPECT_EQ(X509_check_ca(server.get()), 0);
}

TEST(TestCertsTest, ServerCertificateNamesLocalhostAndLoopback) {
  ASSERT_OK_AND_ASSIGN(TestPki pki, MakeTestPki());
  CertPtr server = ParseCert(pki.server_cert_pem);
  CertPtr wrong = ParseCert(pki.wrong_name_cert_pem);
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_NE(X509_check_host(server.get(), "example.com", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(wrong.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_ip_asc(wrong.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(wrong.get(), "wrong-host.invalid", 0, 0, nullptr),
            1);
}

TEST(TestCertsTest, KeysMatchTheirCertificates) {
  ASSERT_OK_AND_ASSIGN(TestPki pki, MakeTestPki());
  CertPtr server = ParseCert(pki.server_cert_pem);
  CertPtr wrong = ParseCert(pki.wrong_name_cert_pem);
  EVP_PKEY* server_key = ParseKey(pki.server_key_pem);
  EVP_PKEY* wrong_key = ParseKey(pki.wrong_name_key_pem);
  ASSERT_NE(server_key, nullptr);
  ASSERT_NE(wrong_key, nullptr);
  EXPECT_EQ(X509_check_private_key(server.get(), server_key), 1);
  EXPECT_EQ(X509_check_private_key(wrong.get(), wrong_key), 1);
  EXPECT_NE(X509_check_private_key(server.get(), wrong_key), 1);
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(wrong_key);
}

TEST(TestCertsTest, EachCallMakesAFreshPki) {
  ASSERT_OK_AND_ASSIGN(TestPki a, MakeTestPki());
  ASSERT_OK_AND_ASSIGN(TestPki b, MakeTestPki());
  EXPECT_NE(a.ca_pem, b.ca_pem);
  EXPECT_NE(a.server_key_pem, b.server_key_pem);
  CertPtr a_server = ParseCert(a.server_cert_pem);
  CertPtr b_ca = ParseCert(b.ca_pem);
  EXPECT_NE(Verify(a_server.get(), b_ca.get()), X509_V_OK);
}

}  // namespace
}  // namespace chstream::ingest::sim
