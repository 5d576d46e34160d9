#include "crypto/tls_profile.h"

#include <openssl/ssl.h>

#include "crypto/ossl.h"

namespace mte::crypto::tls_profile {

Result<void> ApplyCommon(SSL_CTX* ctx, bool tls12, bool tls13) {
  if (!tls12 && !tls13) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "neither TLS 1.2 nor TLS 1.3 enabled");
  }
  // Nothing below TLS 1.2 (docs/conventions.md §2).
  SSL_CTX_set_min_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  if (SSL_CTX_set1_groups_list(ctx, kGroups) != 1) return Fail(OsslError("set groups"));
  if (SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1) {
    return Fail(OsslError("set TLS 1.3 suites"));
  }
  return {};
}

}  // namespace mte::crypto::tls_profile
