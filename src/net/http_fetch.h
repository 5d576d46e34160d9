// An asynchronous HTTP/1.1 POST client for OCSP over HTTP (RFC 6960 Appendix A.1): the MEF asks
// an OCSP responder about a device certificate without blocking an I/O thread, and a slow or
// silent responder only ever costs its own fetch (each has one deadline for the whole exchange).
//
// Plain http:// only: OCSP responses are signed, so RFC 6960 A.1 carries them over HTTP. The
// response is decoded by proto::ResponseDecoder (Content-Length, chunked or close-delimited body;
// header section at most 8 KiB; body at most `max_response_bytes`, checked while reading).
// This header does not include Asio; http_fetch.cc does.
//
// Thread-safety: Post and PostAndWait may be called from any thread, concurrently. Every `done`
// runs on the fetcher's own thread ("mte-fetch"), one at a time, so a `done` must not block: it
// delays every other fetch. Destroy the fetcher from any thread except its own (not from `done`).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::net {

struct FetchRequest {
  std::string url;  // "http://host[:port]/path" only (OCSP over HTTP); IPv4, [IPv6] or DNS name
  std::string content_type = "application/ocsp-request";
  std::string accept = "application/ocsp-response";
  Bytes body;
  std::chrono::milliseconds timeout{3000};  // whole exchange: resolve + connect + write + read
  size_t max_response_bytes = 64 * 1024;    // body cap
};

struct FetchResponse {
  int status = 0;            // any final status; a non-200 answer is not an error here
  std::string content_type;  // the Content-Type header, empty if absent
  Bytes body;
};

// Errors passed to FetchDone:
//   kLocalUsage/kConfig      a bad URL (not http://, no host, bad port, userinfo, ...), a
//                            non-positive timeout, or CR/LF in content_type/accept
//   kIo/kIoFailed            name resolution, connect, write or read failed (refused, reset)
//   kTimeout/kDeadline       the whole exchange did not finish within `timeout`
//   kPeerProtocol/kMalformed the answer is not HTTP/1.x, or is truncated
//   kPeerProtocol/kTooLarge  the header section is over 8 KiB or the body over
//                            max_response_bytes (reading stops at the cap)
//   kPeerProtocol/kClosed    the responder closed the connection without answering
//   kIo/kClosed              the fetcher was destroyed before the fetch finished
//   kInternal/kInvariant     an unexpected exception (a bug)
using FetchDone = std::function<void(Result<FetchResponse>)>;

// Owns one io_context and one thread ("mte-fetch"); any number of fetches in flight concurrently.
class HttpFetcher {
 public:
  // kIo/kIoFailed if the thread cannot be started.
  static Result<std::unique_ptr<HttpFetcher>> Create();

  // Finishes every fetch still in flight: its `done` runs (on the fetcher's thread, before the
  // destructor returns) with kIo/kClosed; none is dropped. Then joins the thread. A name lookup
  // that is inside getaddrinfo cannot be interrupted and may delay the return until it ends.
  // REQUIRES: not called on the fetcher's thread (from a `done`).
  ~HttpFetcher();
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;

  // Starts the fetch and returns at once; `done` runs exactly once on the fetcher's thread.
  // (The one exception: a `done` that calls Post while the fetcher is being destroyed gets its new
  // `done` run at once, inside that Post, with kIo/kClosed.)
  void Post(FetchRequest request, FetchDone done);

  // Blocking convenience for CLI tools and tests (never call on an I/O thread). On the fetcher's
  // own thread it returns kLocalUsage/kConflict instead of deadlocking.
  Result<FetchResponse> PostAndWait(FetchRequest request);

  struct Impl;

 private:
  explicit HttpFetcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mte::net
