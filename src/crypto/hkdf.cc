#include "crypto/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>

#include "crypto/ossl.h"

namespace mte::crypto {

Result<SecretBytes> HkdfSha256(const SecretBytes& ikm, ByteSpan salt, std::string_view info,
                               size_t length) {
  ERR_clear_error();
  EvpKdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) return Fail(OsslError("EVP_KDF_fetch HKDF"));
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return Fail(OsslError("EVP_KDF_CTX_new"));
  auto key = ikm.Expose(SecretAccess::ForCrypto());
  static uint8_t kEmpty = 0;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(key.data()),
                                        key.size()),
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_SALT, salt.empty() ? &kEmpty : const_cast<uint8_t*>(salt.data()),
          salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                        const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  SecretBytes out(length);
  auto bytes = out.ExposeMutable(SecretAccess::ForCrypto());
  if (EVP_KDF_derive(ctx.get(), bytes.data(), bytes.size(), params) != 1) {
    return Fail(OsslError("HKDF derive"));
  }
  return out;
}

}  // namespace mte::crypto
