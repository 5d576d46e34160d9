// Sans-IO HTTP/1.1 messages (TS-0009 binding of oneM2M primitives rides on these).
//
// Decoders take bytes and give complete messages; they never touch a socket. Parsing is done by
// Boost.Beast's parser behind this interface (only http.cc includes Beast), with hard limits:
// header block 8 KiB, body 64 KiB by default (docs/protocol.md "Limits").
// Thread-safety: single-threaded values.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::proto {

inline constexpr size_t kMaxHeaderBytes = 8 * 1024;
inline constexpr size_t kMaxBodyBytes = 64 * 1024;

struct HttpLimits {
  size_t max_header_bytes = kMaxHeaderBytes;
  size_t max_body_bytes = kMaxBodyBytes;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

class HttpHeaders {
 public:
  // Case-insensitive lookup of the first header with this name.
  std::optional<std::string_view> Get(std::string_view name) const;
  void Set(std::string_view name, std::string_view value);  // replaces all of that name
  void Add(std::string_view name, std::string_view value);
  const std::vector<HttpHeader>& all() const { return headers_; }

 private:
  std::vector<HttpHeader> headers_;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // origin-form, e.g. "/enrolment"
  HttpHeaders headers;
  std::string body;
  bool keep_alive = true;

  // "POST /x HTTP/1.1" + headers + Content-Length + body.
  std::string Serialize() const;
};

struct HttpResponse {
  int status = 200;
  HttpHeaders headers;
  std::string body;
  bool keep_alive = true;
  // TS-0009 §6.3.3: oneM2M responses omit the reason phrase ("HTTP/1.1 201 ").
  bool reason_phrase = true;

  // Status line (with or without the standard reason phrase), headers, Content-Length, body.
  std::string Serialize() const;
};

// Decodes a stream of requests (keep-alive, pipelining). Errors are final:
//   kPeerProtocol/kTooLarge   header block or body over the limit
//   kPeerProtocol/kMalformed  anything else that is not HTTP/1.1
class RequestDecoder {
 public:
  explicit RequestDecoder(HttpLimits limits = {});
  ~RequestDecoder();
  RequestDecoder(RequestDecoder&&) noexcept;
  RequestDecoder& operator=(RequestDecoder&&) noexcept;

  // Buffers `data`; returns the next complete request, or nullopt if more bytes are needed.
  // Call again with an empty span to take a further request already buffered.
  Result<std::optional<HttpRequest>> Feed(ByteSpan data);
  // True if part of a request has been received.
  bool HasPartialMessage() const;
  // Bytes received after the last complete request and not yet parsed (e.g. the start of another
  // protocol after an HTTP Upgrade). Clears them.
  Bytes TakeBuffered();
  // Appends bytes without parsing them (they are parsed by the next Feed, or taken raw).
  void Buffer(ByteSpan data);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

class ResponseDecoder {
 public:
  explicit ResponseDecoder(HttpLimits limits = {});
  ~ResponseDecoder();
  ResponseDecoder(ResponseDecoder&&) noexcept;
  ResponseDecoder& operator=(ResponseDecoder&&) noexcept;

  Result<std::optional<HttpResponse>> Feed(ByteSpan data);
  // The peer closed: completes a response delimited by end of stream, or fails (truncated).
  Result<std::optional<HttpResponse>> FeedEof();
  // Bytes after the last complete response (e.g. another protocol after 101). Clears them.
  Bytes TakeBuffered();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

std::string_view ReasonPhrase(int status);

}  // namespace mte::proto
