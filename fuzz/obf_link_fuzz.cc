// Fuzzes what the two ends of the OBF link read from each other and from their users
// (docs/protocol.md §9.2), apart from the bundle itself (token_bundle_fuzz.cc):
//   - the OBF reads the device's answer to POST /obf/v1/bundle: the input is the byte stream of
//     that HTTP response, decoded as client::Exchange does, then proto::ParseObfOutcome;
//   - the device (await-obf) and the OBF (deliver) read a typed setup code: the input is also
//     given to proto::ParseSetupCode, which must accept exactly the codes whose octets encode
//     back to the same characters (case, '-' and spaces aside).
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/bytes.h"
#include "fuzz/fuzz_util.h"
#include "proto/http.h"
#include "proto/obf_link.h"

namespace {

void ReadAnswer(mte::ByteSpan input) {
  mte::proto::ResponseDecoder decoder;
  auto response = decoder.Feed(input);
  if (response && !response->has_value()) response = decoder.FeedEof();
  if (!response || !response->has_value()) return;
  (void)mte::proto::ParseObfOutcome(**response);
}

void ReadSetupCode(std::string_view text) {
  auto code = mte::proto::ParseSetupCode(text);
  if (!code) return;
  std::string typed;
  for (char c : text) {
    if (c == '-' || c == ' ') continue;
    typed += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  mte::fuzz::Require(code->size() == mte::proto::kSetupCodeBytes, "a setup code has 16 octets");
  mte::fuzz::Require(mte::Base32Encode(code->Expose(mte::SecretAccess::ForCrypto())) == typed,
                     "an accepted setup code is the base32 of its octets");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ReadAnswer(mte::fuzz::Input(data, size));
  ReadSetupCode(mte::fuzz::InputText(data, size));
  return 0;
}
