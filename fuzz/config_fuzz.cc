// Fuzzes mte::ParseConfig, the reader of the data directory's mte.json that `mte serve` and
// `mte admin` start from (mte/config.h). The input is the file's content.
//
// A configuration that is accepted must hold what LoadConfig promises to its users: names that
// are identifiers, positive timeouts, lifetimes and thread counts, and connection limits in range.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "mte/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = mte::ParseConfig(mte::fuzz::InputText(data, size), "/nonexistent/mte");
  if (!config) return 0;
  mte::fuzz::Require(
      !config->mef_fqdn.empty() && !config->maf_fqdn.empty() && !config->maf_id.empty(),
      "an accepted configuration names the MEF, the MAF and the MAF-ID");
  mte::fuzz::Require(config->enrolment_expiry_seconds > 0 && config->handshake_timeout_ms > 0 &&
                         config->idle_timeout_ms > 0 && config->request_timeout_ms > 0 &&
                         config->io_threads >= 1 && config->worker_threads >= 1,
                     "an accepted configuration has positive timeouts and thread counts");
  mte::fuzz::Require(config->max_connections_per_address >= 1 &&
                         config->max_connections_per_address <= config->max_connections,
                     "an accepted configuration has connection limits in range");
  mte::fuzz::Require(!config->rspfs.empty(), "an accepted configuration offers an RSPF");
  return 0;
}
