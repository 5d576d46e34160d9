// Fuzzes proto::RequestDecoder, the HTTP/1.1 request decoder behind every server of the MTE (the
// MEF, the MAF and the portal through TlsHttpSession) and behind the device's side of the OBF
// link (client::AcceptRequest).
//
// The input is the byte stream a client sends. It is decoded twice: fed whole, and fed in chunks
// whose sizes the input chooses. TCP may split a stream anywhere, so both must give the same
// requests and both refuse or neither does. Beast's parser allows two differences, which this
// target accepts (docs/fuzzing.md §5): a header block that the first read holds whole is checked
// line by line at once, while one that arrives in pieces is checked only when its end arrives (so
// a malformed block that never ends is refused whole but waits in pieces, for more bytes, the
// header limit or the request deadline); and a malformed chunk header may be refused with another
// error in pieces (the body limit instead of a bad chunk extension). Every decoded request must
// also survive HttpRequest::Serialize and a second decoding unchanged (method, target, body).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "proto/http.h"

namespace {

using mte::ByteSpan;
using mte::proto::HttpRequest;
using mte::proto::RequestDecoder;

using Outcome = mte::fuzz::Decoded<HttpRequest>;

Outcome Decode(ByteSpan input, bool in_chunks) {
  return mte::fuzz::Decode<RequestDecoder, HttpRequest>(
      input, in_chunks, [](const RequestDecoder& decoder, Outcome& out) {
        out.partial = decoder.HasPartialMessage();
      });
}

bool SameRequest(const HttpRequest& a, const HttpRequest& b) {
  if (a.method != b.method || a.target != b.target || a.body != b.body ||
      a.keep_alive != b.keep_alive || a.headers.all().size() != b.headers.all().size()) {
    return false;
  }
  for (size_t i = 0; i < a.headers.all().size(); ++i) {
    if (a.headers.all()[i].name != b.headers.all()[i].name ||
        a.headers.all()[i].value != b.headers.all()[i].value) {
      return false;
    }
  }
  return true;
}

// What a server would send on after decoding `request` (a relay, a test): decodes again to the
// same request line and body.
void CheckRoundTrip(const HttpRequest& request) {
  std::string wire = request.Serialize();
  RequestDecoder decoder;
  auto again = decoder.Feed(mte::AsBytes(wire));
  if (!again) return;  // e.g. a header the serializer drops leaves a Transfer-Encoding behind
  mte::fuzz::Require(again->has_value(), "a serialized request decodes to a complete request");
  mte::fuzz::Require((*again)->method == request.method && (*again)->target == request.target &&
                         (*again)->body == request.body,
                     "a serialized request decodes to the same method, target and body");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteSpan input = mte::fuzz::Input(data, size);
  Outcome whole = Decode(input, /*in_chunks=*/false);
  // Below the decoder's input bound the split cannot matter; above it the whole feed is refused
  // at once while small chunks are not.
  if (size <= mte::proto::kMaxHeaderBytes + mte::proto::kMaxBodyBytes) {
    Outcome chunked = Decode(input, /*in_chunks=*/true);
    mte::fuzz::Require(whole.messages.size() == chunked.messages.size(),
                       "the same number of requests whole and in chunks");
    for (size_t i = 0; i < whole.messages.size(); ++i) {
      mte::fuzz::Require(SameRequest(whole.messages[i], chunked.messages[i]),
                         "the same requests whole and in chunks");
    }
    if (whole.error.has_value() != chunked.error.has_value()) {
      mte::fuzz::Require(whole.error ? chunked.partial : whole.partial,
                         "an error whole is still a partial request in chunks, or conversely");
    }
  }
  for (const auto& request : whole.messages) CheckRoundTrip(request);
  return 0;
}
