// Fuzzes proto::ResponseDecoder, the HTTP/1.1 response decoder of every client of the MTE: the
// device's enrolment state machine (EnrolmentClient), client::Exchange (the OBF, `maf-check`, the
// MEF's outbox through KeepAliveClient) and the OCSP fetcher's answers.
//
// The input is the byte stream a server sends, then the end of the stream. As in
// http_request_fuzz.cc it is decoded fed whole and fed in chunks the input chooses; both must
// give the same responses and the same verdict.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "proto/http.h"

namespace {

using mte::ByteSpan;
using mte::proto::HttpResponse;
using mte::proto::ResponseDecoder;

using Outcome = mte::fuzz::Decoded<HttpResponse>;

// The peer closed: a response delimited by the end of the stream completes now.
void Close(ResponseDecoder& decoder, Outcome& out) {
  if (out.error) return;
  auto last = decoder.FeedEof();
  if (!last) {
    // Nothing was pending: a clean close between responses is not an error of the stream.
    if (last.error().code != mte::Errc::kClosed) out.error = last.error();
    return;
  }
  if (last->has_value()) out.messages.push_back(std::move(**last));
}

Outcome Decode(ByteSpan input, bool in_chunks) {
  return mte::fuzz::Decode<ResponseDecoder, HttpResponse>(input, in_chunks, Close);
}

bool SameResponse(const HttpResponse& a, const HttpResponse& b) {
  return a.status == b.status && a.body == b.body && a.keep_alive == b.keep_alive &&
         a.headers.all().size() == b.headers.all().size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteSpan input = mte::fuzz::Input(data, size);
  Outcome whole = Decode(input, /*in_chunks=*/false);
  if (size > mte::proto::kMaxHeaderBytes + mte::proto::kMaxBodyBytes) return 0;
  Outcome chunked = Decode(input, /*in_chunks=*/true);
  mte::fuzz::Require(whole.messages.size() == chunked.messages.size(),
                     "the same number of responses whole and in chunks");
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    mte::fuzz::Require(SameResponse(whole.messages[i], chunked.messages[i]),
                       "the same responses whole and in chunks");
  }
  mte::fuzz::Require(whole.error.has_value() == chunked.error.has_value(),
                     "the same verdict whole and in chunks");
  return 0;
}
