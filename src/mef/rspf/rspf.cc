#include "mef/rspf/rspf.h"

namespace mte::mef {

Result<EnrolmentKey> Rspf::DeriveEnrolmentKey(const crypto::TlsEngine& tls,
                                              std::string_view mef_fqdn) const {
  // TS-0003 §10.3.1: exporter of the mutually authenticated session, no context, 48 octets.
  MTE_TRY_ASSIGN(SecretBytes exported,
                 tls.Export(crypto::kBootstrapExporterLabel, crypto::kBootstrapExportLength));
  MTE_TRY_ASSIGN(crypto::EnrolmentKey key, crypto::SplitBootstrapExport(exported));
  return EnrolmentKey{crypto::MakeKeId(key.relative_ke_id, mef_fqdn), std::move(key.ke)};  // §10.3.4
}

}  // namespace mte::mef
