// RAII for OpenSSL handles (docs/conventions.md §1). The only header that names *_free functions.
// Also: turning the OpenSSL error queue into an mte::Error.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mte::crypto {

template <auto Fn>
struct Free {
  template <class T>
  void operator()(T* p) const {
    Fn(p);
  }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, Free<&SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Free<&SSL_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, Free<&SSL_SESSION_free>>;
using BioPtr = std::unique_ptr<BIO, Free<&BIO_free_all>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Free<&EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<&EVP_PKEY_CTX_free>>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Free<&EVP_CIPHER_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<&EVP_MD_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Free<&X509_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Free<&X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free<&X509_EXTENSION_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Free<&X509_STORE_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, Free<&ASN1_INTEGER_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, Free<&ASN1_TIME_free>>;
using X509RevokedPtr = std::unique_ptr<X509_REVOKED, Free<&X509_REVOKED_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Free<&BN_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Free<&GENERAL_NAME_free>>;
// Any ASN1_STRING flavour (ASN1_IA5STRING, ASN1_OCTET_STRING, ...): they share one struct.
using Asn1StringPtr = std::unique_ptr<ASN1_STRING, Free<&ASN1_STRING_free>>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, Free<&EVP_KDF_free>>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, Free<&EVP_KDF_CTX_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<&GENERAL_NAMES_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<&X509_STORE_CTX_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Free<&X509_CRL_free>>;
using OcspRequestPtr = std::unique_ptr<OCSP_REQUEST, Free<&OCSP_REQUEST_free>>;
using OcspResponsePtr = std::unique_ptr<OCSP_RESPONSE, Free<&OCSP_RESPONSE_free>>;
using OcspBasicRespPtr = std::unique_ptr<OCSP_BASICRESP, Free<&OCSP_BASICRESP_free>>;
using OcspCertIdPtr = std::unique_ptr<OCSP_CERTID, Free<&OCSP_CERTID_free>>;
using AuthorityInfoAccessPtr =
    std::unique_ptr<AUTHORITY_INFO_ACCESS, Free<&AUTHORITY_INFO_ACCESS_free>>;
using AccessDescriptionPtr = std::unique_ptr<ACCESS_DESCRIPTION, Free<&ACCESS_DESCRIPTION_free>>;

// STACK_OF(X509) that owns its certificates (freed with the stack).
inline void FreeX509Stack(STACK_OF(X509) * stack) { sk_X509_pop_free(stack, X509_free); }
using X509StackPtr = std::unique_ptr<STACK_OF(X509), Free<&FreeX509Stack>>;

// Memory from OPENSSL_malloc/OPENSSL_memdup.
struct OpensslDeleter {
  void operator()(void* p) const { OPENSSL_free(p); }
};
using OpensslBytesPtr = std::unique_ptr<unsigned char, OpensslDeleter>;
using OpensslCharPtr = std::unique_ptr<char, OpensslDeleter>;

// Drains the OpenSSL error queue into a kCrypto error: "<what>: <openssl reasons>".
inline Error OsslError(std::string_view what, ErrorKind kind = ErrorKind::kCrypto,
                       Errc code = Errc::kCryptoFailed) {
  std::string detail(what);
  unsigned long e;
  bool first = true;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    detail += first ? ": " : "; ";
    detail += buf;
    first = false;
  }
  return Error{kind, code, std::move(detail)};
}

}  // namespace mte::crypto
