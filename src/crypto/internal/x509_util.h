// Small X.509 helpers shared by device_cert.cc, ocsp.cc and crl.cc. Internal to mte_crypto: no
// other component includes this header. Thread-safety: free functions.
#pragma once

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <limits>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "crypto/ossl.h"

namespace mte::crypto::internal {

// Decodes exactly one DER certificate: trailing bytes are refused, so the hash of `der` is the
// hash of the certificate. Returns null (and clears the error queue) when `der` is not that.
inline X509Ptr ParseDerCert(ByteSpan der) {
  if (der.empty() || der.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return nullptr;
  }
  ERR_clear_error();
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    ERR_clear_error();
    return nullptr;
  }
  return cert;
}

// The DER encoding of an OpenSSL object through its i2d function.
template <class T>
Result<Bytes> EncodeDer(const T* object, int (*i2d)(const T*, unsigned char**),
                        const char* what) {
  ERR_clear_error();
  const int len = i2d(object, nullptr);
  if (len <= 0) {
    return Fail(OsslError(what));
  }
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d(object, &p) != len) {
    return Fail(OsslError(what));
  }
  return out;
}

inline Result<Bytes> CertDer(const X509* cert) {
  return EncodeDer(cert, &i2d_X509, "encode certificate");
}
inline Result<Bytes> NameDer(const X509_NAME* name) {
  return EncodeDer(name, &i2d_X509_NAME, "encode name");
}
inline Result<Bytes> IntegerDer(const ASN1_INTEGER* value) {
  return EncodeDer(value, &i2d_ASN1_INTEGER, "encode integer");
}

// ASN1_TIME (UTCTime or GeneralizedTime, RFC 5280 §4.1.2.5) to Unix seconds.
inline std::optional<int64_t> UnixTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                           day{static_cast<unsigned>(tm.tm_mday)}};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  const auto tp = sys_days{ymd} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
  return duration_cast<seconds>(tp.time_since_epoch()).count();
}

// "2026-01-01T00:00:00Z".
inline std::string TimeText(int64_t unix_seconds) {
  char buf[32];
  return std::string(FormatRfc3339(unix_seconds, buf));
}

// RFC 2253 one-line form of a name, at most `max_chars` characters ("..." marks a cut).
inline std::string NameText(const X509_NAME* name, size_t max_chars = 256) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return "(unprintable name)";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  std::string text = len > 0 && data != nullptr ? std::string(data, static_cast<size_t>(len)) : "";
  if (text.size() > max_chars) {
    text.resize(max_chars - 3);
    text += "...";
  }
  return text;
}

}  // namespace mte::crypto::internal
