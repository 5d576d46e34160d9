// Small helpers shared by the libFuzzer targets of this directory (docs/fuzzing.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/error.h"

namespace mte::fuzz {

inline ByteSpan Input(const uint8_t* data, size_t size) { return ByteSpan(data, size); }

inline std::string_view InputText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// An invariant of the code under test failed: report it and abort, so that libFuzzer keeps the
// input as a crash.
[[noreturn]] inline void Violated(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

inline void Require(bool holds, const char* what) {
  if (!holds) Violated(what);
}

// Cuts `input` into chunks whose sizes the input chooses (1..16 octets, by the first octet of each
// chunk), the way TCP may split a stream anywhere.
template <class Fn>
void ForEachChunk(ByteSpan input, Fn&& fn) {
  size_t at = 0;
  while (at < input.size()) {
    size_t length = 1 + input[at] % 16;
    if (length > input.size() - at) length = input.size() - at;
    fn(input.subspan(at, length));
    at += length;
  }
}

// The messages an HTTP decoder (proto::RequestDecoder, ResponseDecoder) completed from a stream,
// and how the stream ended.
template <class Message>
struct Decoded {
  std::vector<Message> messages;
  std::optional<Error> error;
  bool partial = false;  // the stream ended inside a message (set by `finish`, below)
};

// Feeds `data`, then takes every message the decoder can complete from what it holds.
template <class Decoder, class Message>
void FeedAndDrain(Decoder& decoder, ByteSpan data, Decoded<Message>& out) {
  auto next = decoder.Feed(data);
  while (next && next->has_value()) {
    out.messages.push_back(std::move(**next));
    next = decoder.Feed({});
  }
  if (!next) out.error = next.error();
}

// Decodes `input` with a fresh Decoder, fed whole or in chunks the input chooses (ForEachChunk);
// `finish(decoder, out)` runs at the end of the stream.
template <class Decoder, class Message, class Finish>
Decoded<Message> Decode(ByteSpan input, bool in_chunks, Finish&& finish) {
  Decoded<Message> out;
  Decoder decoder;
  if (in_chunks) {
    ForEachChunk(input, [&](ByteSpan chunk) {
      if (!out.error) FeedAndDrain(decoder, chunk, out);
    });
  } else {
    FeedAndDrain(decoder, input, out);
  }
  finish(decoder, out);
  return out;
}

// A fatal setup failure in LLVMFuzzerInitialize: the fixture could not be built.
[[noreturn]] inline void SetupFailed(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz setup failed: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::exit(2);
}

}  // namespace mte::fuzz
