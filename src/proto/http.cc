#include "proto/http.h"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>
#include <utility>
#include <vector>
#include <strings.h>

namespace mte::proto {
namespace http = boost::beast::http;

std::optional<std::string_view> HttpHeaders::Get(std::string_view name) const {
  for (const auto& h : headers_) {
    if (h.name.size() == name.size() &&
        strncasecmp(h.name.data(), name.data(), name.size()) == 0) {
      return std::string_view(h.value);
    }
  }
  return std::nullopt;
}

void HttpHeaders::Set(std::string_view name, std::string_view value) {
  std::erase_if(headers_, [&](const HttpHeader& h) {
    return h.name.size() == name.size() &&
           strncasecmp(h.name.data(), name.data(), name.size()) == 0;
  });
  Add(name, value);
}

void HttpHeaders::Add(std::string_view name, std::string_view value) {
  headers_.push_back({std::string(name), std::string(value)});
}

namespace {

// Header names and values we emit are ours; still, refuse CR/LF injection defensively.
void AppendHeaders(std::string& out, const HttpHeaders& headers, size_t body_size,
                   bool keep_alive, bool content_length = true) {
  bool has_connection = false;
  for (const auto& h : headers.all()) {
    if (h.name.find_first_of("\r\n:") != std::string::npos ||
        h.value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    if (strcasecmp(h.name.c_str(), "Content-Length") == 0) continue;
    if (strcasecmp(h.name.c_str(), "Connection") == 0) {
      if (!keep_alive) continue;  // "close" below wins (RFC 9112 §9.6)
      has_connection = true;
    }
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  // RFC 9110 §8.6: no Content-Length in 1xx and 204 responses.
  if (content_length) out += "Content-Length: " + std::to_string(body_size) + "\r\n";
  if (!keep_alive && !has_connection) out += "Connection: close\r\n";
  out += "\r\n";
}

Error MapParseError(const boost::system::error_code& ec) {
  if (ec == http::error::body_limit) {
    return Error{ErrorKind::kPeerProtocol, Errc::kTooLarge, "HTTP body exceeds the limit"};
  }
  if (ec == http::error::header_limit) {
    return Error{ErrorKind::kPeerProtocol, Errc::kTooLarge, "HTTP header block exceeds the limit"};
  }
  if (ec == http::error::partial_message) {
    return Error{ErrorKind::kPeerProtocol, Errc::kMalformed, "HTTP message truncated"};
  }
  return Error{ErrorKind::kPeerProtocol, Errc::kMalformed, "malformed HTTP: " + ec.message()};
}

template <class Parser>
void ApplyLimits(Parser& parser, const HttpLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
  parser.eager(true);
}

std::string LowerTrimmed(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  const size_t end = text.find_last_not_of(" \t");
  std::string out(text.substr(begin, end - begin + 1));
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// The framing rules a request's header block must meet before its body is read (RFC 9112 §6):
// Transfer-Encoding, if present, is exactly "chunked" and comes without Content-Length; a
// transfer coding we do not implement is 501 (kUnsupported), any other TE list 400; and the
// fields whose duplicates change a request's meaning (Content-Length, Host, Authorization)
// appear at most once.
template <class Header>
Result<void> CheckRequestFraming(const Header& header) {
  auto malformed = [](std::string detail) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, std::move(detail));
  };
  for (auto [field, name] : {std::pair{http::field::content_length, "Content-Length"},
                             std::pair{http::field::host, "Host"},
                             std::pair{http::field::authorization, "Authorization"}}) {
    if (header.count(field) > 1) return malformed(std::string("more than one ") + name + " field");
  }
  std::vector<std::string> codings;
  for (auto range = header.equal_range(http::field::transfer_encoding); range.first != range.second;
       ++range.first) {
    std::string_view value = range.first->value();
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string_view::npos) comma = value.size();
      std::string coding = LowerTrimmed(value.substr(start, comma - start));
      if (!coding.empty()) codings.push_back(std::move(coding));
      start = comma + 1;
    }
  }
  if (codings.empty()) {
    if (header.count(http::field::transfer_encoding) > 0) {
      return malformed("empty Transfer-Encoding");
    }
    return {};
  }
  if (header.count(http::field::content_length) > 0) {
    return malformed("Transfer-Encoding and Content-Length together");
  }
  if (codings.back() != "chunked") {
    return malformed("Transfer-Encoding must end with chunked");
  }
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") return malformed("chunked may be applied only once");
  }
  if (codings.size() > 1) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kUnsupported,
                "transfer coding '" + codings.front().substr(0, 32) +
                    "' is not supported; send the body with chunked alone or Content-Length");
  }
  return {};
}

template <bool isRequest>
struct DecoderCore {
  using Parser = http::parser<isRequest, http::string_body>;
  HttpLimits limits;
  std::string buffer;
  std::optional<Parser> parser;
  bool failed = false;
  bool header_checked = false;

  void Reset() {
    parser.emplace();
    ApplyLimits(*parser, limits);
    // A request's header block is checked before its body is read (CheckRequestFraming).
    if constexpr (isRequest) parser->eager(false);
    header_checked = false;
  }

  // Returns true when a message is complete in *parser.
  Result<bool> Run() {
    if (failed) return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "HTTP stream failed");
    if (!parser) Reset();
    while (!buffer.empty() && !parser->is_done()) {
      boost::system::error_code ec;
      size_t used = parser->put(boost::asio::buffer(buffer.data(), buffer.size()), ec);
      buffer.erase(0, used);
      if (ec == http::error::need_more) break;
      if (ec) {
        failed = true;
        return Fail(MapParseError(ec));
      }
      if constexpr (isRequest) {
        if (!header_checked && parser->is_header_done()) {
          header_checked = true;
          if (auto framing = CheckRequestFraming(parser->get()); !framing) {
            failed = true;
            return Fail(framing.error());
          }
          parser->eager(true);
        }
      }
      if (used == 0) break;
    }
    return parser->is_done();
  }
};

}  // namespace

std::string HttpRequest::Serialize() const {
  std::string out = method + " " + target + " HTTP/1.1\r\n";
  AppendHeaders(out, headers, body.size(), keep_alive);
  out += body;
  return out;
}

std::string HttpResponse::Serialize() const {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    (reason_phrase ? std::string(ReasonPhrase(status)) : std::string()) + "\r\n";
  bool no_body = (status >= 100 && status < 200) || status == 204;
  AppendHeaders(out, headers, body.size(), keep_alive, !no_body);
  if (!no_body) out += body;
  return out;
}

std::string_view ReasonPhrase(int status) {
  return http::obsolete_reason(static_cast<http::status>(status));
}

struct RequestDecoder::Impl : DecoderCore<true> {};

RequestDecoder::RequestDecoder(HttpLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
}
RequestDecoder::~RequestDecoder() = default;
RequestDecoder::RequestDecoder(RequestDecoder&&) noexcept = default;
RequestDecoder& RequestDecoder::operator=(RequestDecoder&&) noexcept = default;

Result<std::optional<HttpRequest>> RequestDecoder::Feed(ByteSpan data) {
  if (impl_->buffer.size() + data.size() > impl_->limits.max_header_bytes +
                                               impl_->limits.max_body_bytes + 64 * 1024) {
    impl_->failed = true;
    return Fail(ErrorKind::kPeerProtocol, Errc::kTooLarge, "too much unprocessed HTTP input");
  }
  impl_->buffer.append(AsText(data));
  MTE_TRY_ASSIGN(bool done, impl_->Run());
  if (!done) return std::optional<HttpRequest>();
  auto message = impl_->parser->release();
  impl_->parser.reset();
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  for (const auto& field : message) {
    request.headers.Add(field.name_string(), field.value());
  }
  request.keep_alive = message.keep_alive();
  request.body = std::move(message.body());
  return std::optional<HttpRequest>(std::move(request));
}

bool RequestDecoder::HasPartialMessage() const {
  return !impl_->buffer.empty() || (impl_->parser && impl_->parser->got_some());
}

void RequestDecoder::Buffer(ByteSpan data) { impl_->buffer.append(AsText(data)); }

Bytes RequestDecoder::TakeBuffered() {
  Bytes out(impl_->buffer.begin(), impl_->buffer.end());
  impl_->buffer.clear();
  return out;
}

struct ResponseDecoder::Impl : DecoderCore<false> {};

ResponseDecoder::ResponseDecoder(HttpLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
}
ResponseDecoder::~ResponseDecoder() = default;
ResponseDecoder::ResponseDecoder(ResponseDecoder&&) noexcept = default;
ResponseDecoder& ResponseDecoder::operator=(ResponseDecoder&&) noexcept = default;

namespace {

HttpResponse ToResponse(http::response<http::string_body> message) {
  HttpResponse response;
  response.status = static_cast<int>(message.result_int());
  for (const auto& field : message) response.headers.Add(field.name_string(), field.value());
  response.keep_alive = message.keep_alive();
  response.body = std::move(message.body());
  return response;
}

}  // namespace

Result<std::optional<HttpResponse>> ResponseDecoder::Feed(ByteSpan data) {
  if (impl_->buffer.size() + data.size() > impl_->limits.max_header_bytes +
                                               impl_->limits.max_body_bytes + 64 * 1024) {
    impl_->failed = true;
    return Fail(ErrorKind::kPeerProtocol, Errc::kTooLarge, "too much unprocessed HTTP input");
  }
  impl_->buffer.append(AsText(data));
  MTE_TRY_ASSIGN(bool done, impl_->Run());
  if (!done) return std::optional<HttpResponse>();
  auto response = ToResponse(impl_->parser->release());
  impl_->parser.reset();
  return std::optional<HttpResponse>(std::move(response));
}

Bytes ResponseDecoder::TakeBuffered() {
  Bytes out(impl_->buffer.begin(), impl_->buffer.end());
  impl_->buffer.clear();
  return out;
}

Result<std::optional<HttpResponse>> ResponseDecoder::FeedEof() {
  if (!impl_->parser || !impl_->parser->got_some()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kClosed, "connection closed before a response");
  }
  boost::system::error_code ec;
  impl_->parser->put_eof(ec);
  if (ec) return Fail(MapParseError(ec));
  auto response = ToResponse(impl_->parser->release());
  impl_->parser.reset();
  return std::optional<HttpResponse>(std::move(response));
}

}  // namespace mte::proto
