// proto::HttpRequest/HttpResponse serialization and the sans-IO decoders: golden vectors,
// round trips, truncation at every byte, size limits, malformed input, pipelining, chunked
// bodies, trailing garbage and end-of-stream handling (RFC 9112).
#include "proto/http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace mte::proto {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields FieldsOf(const HttpHeaders& headers) {
  Fields out;
  for (const auto& h : headers.all()) out.emplace_back(h.name, h.value);
  return out;
}

std::string Show(const Error& error) {
  return std::string(ToString(error.kind)) + "/" + Describe(error);
}

constexpr char kBody[] = R"({"op":1,"rqi":"x"})";
static_assert(sizeof(kBody) - 1 == 18);

constexpr char kGoldenRequest[] =
    "POST /enrolment?step=1 HTTP/1.1\r\n"
    "Host: mef.example.test\r\n"
    "Content-Type: application/json\r\n"
    "X-M2M-RI: req-0001\r\n"
    "X-M2M-Origin: Cdevice-1\r\n"
    "Content-Length: 18\r\n"
    "\r\n"
    R"({"op":1,"rqi":"x"})";

void ExpectGoldenRequest(const HttpRequest& r) {
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/enrolment?step=1");
  EXPECT_EQ(FieldsOf(r.headers), (Fields{{"Host", "mef.example.test"},
                                         {"Content-Type", "application/json"},
                                         {"X-M2M-RI", "req-0001"},
                                         {"X-M2M-Origin", "Cdevice-1"},
                                         {"Content-Length", "18"}}));
  EXPECT_EQ(r.body, kBody);
  EXPECT_TRUE(r.keep_alive);
}

// Feeds `text` in one piece and expects exactly one request.
HttpRequest DecodeOne(std::string_view text) {
  RequestDecoder decoder;
  auto r = decoder.Feed(AsBytes(text));
  EXPECT_TRUE(r.has_value()) << Show(r.error());
  if (!r.has_value() || !r->has_value()) {
    ADD_FAILURE() << "no request decoded from: " << text;
    return {};
  }
  HttpRequest request = std::move(**r);
  auto more = decoder.Feed({});
  EXPECT_TRUE(more.has_value() && !more->has_value()) << "more than one request";
  return request;
}

Error DecodeError(std::string_view text, HttpLimits limits = {}) {
  RequestDecoder decoder(limits);
  auto r = decoder.Feed(AsBytes(text));
  if (r.has_value()) {
    ADD_FAILURE() << "accepted: " << testing::PrintToString(std::string(text))
                  << (r->has_value() ? " (complete request)" : " (waiting for more)");
    return Error{ErrorKind::kInternal, Errc::kInvariant, "accepted"};
  }
  return r.error();
}

// ---------------------------------------------------------------------------------------------
// Serialization

TEST(HttpSerializeTest, RequestGoldenBytes) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/enrolment";
  r.headers.Add("Host", "mef.example.test");
  r.headers.Add("Content-Type", "application/json");
  r.body = "{}";
  EXPECT_EQ(r.Serialize(),
            "POST /enrolment HTTP/1.1\r\n"
            "Host: mef.example.test\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 2\r\n"
            "\r\n"
            "{}");
  r.keep_alive = false;
  EXPECT_EQ(r.Serialize(),
            "POST /enrolment HTTP/1.1\r\n"
            "Host: mef.example.test\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 2\r\n"
            "Connection: close\r\n"
            "\r\n"
            "{}");
}

TEST(HttpSerializeTest, EmptyBodyStillCarriesContentLength) {
  HttpRequest r;
  r.method = "GET";
  r.target = "/";
  r.headers.Add("Host", "a");
  EXPECT_EQ(r.Serialize(), "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
}

TEST(HttpSerializeTest, ResponseGoldenBytes) {
  HttpResponse r;
  r.status = 201;
  r.headers.Add("Content-Type", "application/json");
  r.headers.Add("X-M2M-RSC", "2001");
  r.body = "{}";
  EXPECT_EQ(r.Serialize(),
            "HTTP/1.1 201 Created\r\n"
            "Content-Type: application/json\r\n"
            "X-M2M-RSC: 2001\r\n"
            "Content-Length: 2\r\n"
            "\r\n"
            "{}");
  HttpResponse not_found;
  not_found.status = 404;
  not_found.keep_alive = false;
  EXPECT_EQ(not_found.Serialize(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(HttpSerializeTest, HeaderInjectionAndFramingHeadersAreDropped) {
  HttpResponse r;
  r.status = 200;
  r.headers.Add("X-Evil", "a\r\nSet-Cookie: x=1");
  r.headers.Add("X-Bad\r\nName", "v");
  r.headers.Add("X:Colon", "v");
  r.headers.Add("Content-Length", "999");
  r.headers.Add("X-Good", "ok");
  r.body = "abc";
  EXPECT_EQ(r.Serialize(), "HTTP/1.1 200 OK\r\nX-Good: ok\r\nContent-Length: 3\r\n\r\nabc");
}

TEST(HttpSerializeTest, NoContentLengthOrBodyIn204) {
  // RFC 9110 §8.6: no Content-Length in a 204 response; RFC 9112 §6.3: it has no body.
  HttpResponse r;
  r.status = 204;
  r.headers.Add("X-A", "b");
  r.body = "ignored";
  EXPECT_EQ(r.Serialize(), "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
}

TEST(HttpSerializeTest, KeepAliveFalseAlwaysAnnouncesClose) {
  // RFC 9112 §9.6: a sender that closes after this message sends the "close" option, whatever
  // other connection options the message carries.
  for (const char* connection : {"keep-alive", "Upgrade"}) {
    HttpResponse r;
    r.status = 200;
    r.headers.Add("Connection", connection);
    r.keep_alive = false;
    ResponseDecoder decoder;
    auto decoded = decoder.Feed(AsBytes(r.Serialize()));
    ASSERT_TRUE(decoded.has_value() && decoded->has_value()) << r.Serialize();
    EXPECT_FALSE((*decoded)->keep_alive) << r.Serialize();
  }
}

TEST(HttpSerializeTest, ReasonPhrases) {
  EXPECT_EQ(ReasonPhrase(200), "OK");
  EXPECT_EQ(ReasonPhrase(400), "Bad Request");
  EXPECT_EQ(ReasonPhrase(403), "Forbidden");
  EXPECT_EQ(ReasonPhrase(409), "Conflict");
  EXPECT_EQ(ReasonPhrase(415), "Unsupported Media Type");
  EXPECT_EQ(ReasonPhrase(500), "Internal Server Error");
}

TEST(HttpHeadersTest, CaseInsensitiveGetSetAdd) {
  HttpHeaders h;
  h.Add("X-M2M-RI", "1");
  h.Add("x-m2m-ri", "2");
  EXPECT_EQ(h.Get("X-M2M-RI"), "1");
  EXPECT_EQ(h.Get("x-M2M-rI"), "1");
  EXPECT_EQ(h.Get("X-M2M-R"), std::nullopt);
  EXPECT_EQ(h.Get("X-M2M-RIX"), std::nullopt);
  h.Set("X-m2m-Ri", "3");
  EXPECT_EQ(FieldsOf(h), (Fields{{"X-m2m-Ri", "3"}}));
}

// ---------------------------------------------------------------------------------------------
// Request decoding

TEST(HttpRequestDecoderTest, GoldenRequest) {
  ExpectGoldenRequest(DecodeOne(kGoldenRequest));
  HttpRequest r = DecodeOne(kGoldenRequest);
  EXPECT_EQ(r.headers.Get("content-type"), "application/json");
  EXPECT_EQ(r.headers.Get("x-m2m-ri"), "req-0001");
  EXPECT_EQ(r.headers.Get("Accept"), std::nullopt);
}

TEST(HttpRequestDecoderTest, ConnectionCloseAndHttp10) {
  HttpRequest close = DecodeOne("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(close.method, "GET");
  EXPECT_EQ(close.target, "/x");
  EXPECT_EQ(close.body, "");
  EXPECT_FALSE(close.keep_alive);
  HttpRequest old = DecodeOne("GET /x HTTP/1.0\r\nHost: a\r\n\r\n");
  EXPECT_FALSE(old.keep_alive);  // RFC 9112 §9.3: HTTP/1.0 closes unless keep-alive is asked for
}

TEST(HttpRequestDecoderTest, SerializeRoundTrip) {
  HttpRequest r;
  r.method = "PUT";
  r.target = "/enrolees/device-1?x=%20y";
  r.headers.Add("Host", "mef.example.test");
  r.headers.Add("X-M2M-Origin", "Cdevice-1");
  r.body = std::string(1000, 'z') + "\r\n\r\nGET / HTTP/1.1\r\n\r\n";  // body bytes are opaque
  HttpRequest back = DecodeOne(r.Serialize());
  EXPECT_EQ(back.method, "PUT");
  EXPECT_EQ(back.target, r.target);
  EXPECT_EQ(FieldsOf(back.headers), (Fields{{"Host", "mef.example.test"},
                                            {"X-M2M-Origin", "Cdevice-1"},
                                            {"Content-Length", "1022"}}));
  EXPECT_EQ(back.body, r.body);
  EXPECT_TRUE(back.keep_alive);
}

TEST(HttpRequestDecoderTest, TruncationAtEveryByte) {
  const std::string text = kGoldenRequest;
  for (size_t n = 1; n < text.size(); ++n) {
    RequestDecoder decoder;
    auto first = decoder.Feed(AsBytes(std::string_view(text).substr(0, n)));
    ASSERT_TRUE(first.has_value()) << "prefix " << n << ": " << Show(first.error());
    ASSERT_FALSE(first->has_value()) << "complete after only " << n << " bytes";
    EXPECT_TRUE(decoder.HasPartialMessage()) << "prefix " << n;
    auto rest = decoder.Feed(AsBytes(std::string_view(text).substr(n)));
    ASSERT_TRUE(rest.has_value()) << "prefix " << n << ": " << Show(rest.error());
    ASSERT_TRUE(rest->has_value()) << "prefix " << n;
    ExpectGoldenRequest(**rest);
  }
}

TEST(HttpRequestDecoderTest, ByteByByteYieldsExactlyOneRequestAtTheLastByte) {
  const std::string text = kGoldenRequest;
  RequestDecoder decoder;
  EXPECT_FALSE(decoder.HasPartialMessage());
  int requests = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    auto r = decoder.Feed(AsBytes(std::string_view(text).substr(i, 1)));
    ASSERT_TRUE(r.has_value()) << "byte " << i << ": " << Show(r.error());
    if (r->has_value()) {
      EXPECT_EQ(i + 1, text.size()) << "request completed early at byte " << i;
      ExpectGoldenRequest(**r);
      ++requests;
    }
  }
  EXPECT_EQ(requests, 1);
  auto none = decoder.Feed({});
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(decoder.HasPartialMessage());
}

TEST(HttpRequestDecoderTest, BodyOverTheLimitFailsBeforeTheBodyArrives) {
  RequestDecoder decoder;
  auto r = decoder.Feed(AsBytes("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kPeerProtocol);
  EXPECT_EQ(r.error().code, Errc::kTooLarge) << Show(r.error());
  // Errors are final.
  EXPECT_FALSE(decoder.Feed(AsBytes("GET / HTTP/1.1\r\n\r\n")).has_value());
}

TEST(HttpRequestDecoderTest, BodyLimitBoundary) {
  const std::string at_limit(64 * 1024, 'b');
  HttpRequest ok =
      DecodeOne("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n" + at_limit);
  EXPECT_EQ(ok.body.size(), 65536u);
  Error e = DecodeError("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n");
  EXPECT_EQ(e.code, Errc::kTooLarge) << Show(e);
  HttpLimits small;
  small.max_body_bytes = 10;
  Error s = DecodeError("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", small);
  EXPECT_EQ(s.code, Errc::kTooLarge) << Show(s);
}

TEST(HttpRequestDecoderTest, HeaderBlockOverTheLimit) {
  Error e =
      DecodeError("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n");
  EXPECT_EQ(e.kind, ErrorKind::kPeerProtocol);
  EXPECT_EQ(e.code, Errc::kTooLarge) << Show(e);
  Error many = DecodeError([] {
    std::string text = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 1000; ++i) text += "X-H" + std::to_string(i) + ": v\r\n";
    return text + "\r\n";
  }());
  EXPECT_EQ(many.code, Errc::kTooLarge) << Show(many);
}

TEST(HttpRequestDecoderTest, UnterminatedHeaderBlockFailsOnceOverTheLimit) {
  RequestDecoder decoder;
  auto first = decoder.Feed(AsBytes("GET / HTTP/1.1\r\nX-Big: "));
  ASSERT_TRUE(first.has_value());
  const std::string chunk(1024, 'a');
  size_t fed = 24;
  std::optional<Error> error;
  while (fed < 64 * 1024) {
    auto r = decoder.Feed(AsBytes(chunk));
    fed += chunk.size();
    if (!r.has_value()) {
      error = r.error();
      break;
    }
    ASSERT_FALSE(r->has_value());
  }
  ASSERT_TRUE(error.has_value()) << "an endless header line was buffered without limit";
  EXPECT_EQ(error->code, Errc::kTooLarge) << Show(*error);
  EXPECT_LE(fed, 8 * 1024 + chunk.size()) << "failed only after " << fed << " bytes";
}

TEST(HttpRequestDecoderTest, HeaderBlockUnderTheLimitIsAccepted) {
  HttpRequest r =
      DecodeOne("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(7000, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.headers.Get("X-Big")->size(), 7000u);
}

TEST(HttpRequestDecoderTest, MalformedStartLinesAndHeaders) {
  const std::vector<std::string> cases = {
      "GARBAGE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/1.1 trailing\r\n\r\n",
      "GET / FTP/1.1\r\n\r\n",
      "\x16\x03\x01\x00\x05hello\r\n\r\n",
      "GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
      "GET / HTTP/1.1\r\n: no-name\r\n\r\n",
      "GET / HTTP/1.1\r\nName : x\r\n\r\n",
      std::string("GET / HTTP/1.1\r\nHost: a") + '\0' + "b\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
  };
  for (const auto& text : cases) {
    Error e = DecodeError(text);
    EXPECT_EQ(e.kind, ErrorKind::kPeerProtocol) << testing::PrintToString(text);
    EXPECT_EQ(e.code, Errc::kMalformed) << testing::PrintToString(text) << " " << Show(e);
  }
}

TEST(HttpRequestDecoderTest, ContentLengthWithChunkedIsRejected) {
  // RFC 9112 §6.1: a request with both is a smuggling attempt and ought to be an error.
  Error e = DecodeError(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n");
  EXPECT_EQ(e.kind, ErrorKind::kPeerProtocol) << Show(e);
}

TEST(HttpRequestDecoderTest, TransferCodingsOtherThanALoneChunkedAreRefused) {
  // RFC 9112 §6.1, §6.3: a coding we do not implement is 501 (kUnsupported); a list that does not
  // end with chunked cannot be framed and is 400 (kMalformed). Both end the stream.
  const std::string chunked_body = "\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  for (const char* te : {"gzip, chunked", "deflate,chunked"}) {
    Error e = DecodeError(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") + te +
                          chunked_body);
    EXPECT_EQ(e.code, Errc::kUnsupported) << te << ": " << Show(e);
  }
  Error split = DecodeError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                            "Transfer-Encoding: chunked" + chunked_body);
  EXPECT_EQ(split.code, Errc::kUnsupported) << Show(split);
  for (const char* te : {"xchunked", "gzip", "chunked, gzip", "identity", "chunked, chunked"}) {
    Error e = DecodeError(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") + te +
                          "\r\n\r\nhello");
    EXPECT_EQ(e.code, Errc::kMalformed) << te << ": " << Show(e);
  }
  // With Content-Length, even an unknown coding is refused at the header block, not framed by
  // Content-Length (request smuggling behind a proxy).
  Error both = DecodeError(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n"
      "hello");
  EXPECT_EQ(both.code, Errc::kMalformed) << Show(both);
  EXPECT_NE(both.detail.find("Transfer-Encoding"), std::string::npos) << Show(both);
  // Case and spaces do not matter for a lone chunked.
  EXPECT_EQ(DecodeOne("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n"
                      "\r\n5\r\nhello\r\n0\r\n\r\n").body,
            "hello");
}

TEST(HttpRequestDecoderTest, TheHeaderBlockIsJudgedBeforeTheBodyArrives) {
  // An unframeable request fails as soon as its header block is complete, without waiting for
  // a body (or for the connection to end).
  RequestDecoder decoder;
  auto result = decoder.Feed(AsBytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, Errc::kMalformed);
}

TEST(HttpRequestDecoderTest, DuplicateFieldsThatChangeTheMeaningAreRefused) {
  for (const char* field : {"Authorization: Bearer a", "Host: b", "Content-Length: 0"}) {
    Error e = DecodeError(std::string("POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n"
                                      "Content-Length: 0\r\n") +
                          field + "\r\n\r\n");
    EXPECT_EQ(e.code, Errc::kMalformed) << field << ": " << Show(e);
    EXPECT_NE(e.detail.find("more than one"), std::string::npos) << Show(e);
  }
  // Other fields may repeat.
  HttpRequest r = DecodeOne(
      "GET / HTTP/1.1\r\nHost: a\r\nAccept: a/b\r\nAccept: c/d\r\nX-M2M-RI: 1\r\n\r\n");
  EXPECT_EQ(r.target, "/");
}

TEST(HttpRequestDecoderTest, PipelinedRequests) {
  RequestDecoder decoder;
  const std::string two =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /c HTTP/1.1\r\n";  // the start of a third
  auto first = decoder.Feed(AsBytes(two));
  ASSERT_TRUE(first.has_value() && first->has_value());
  EXPECT_EQ((*first)->method, "GET");
  EXPECT_EQ((*first)->target, "/a");
  EXPECT_EQ((*first)->body, "");
  auto second = decoder.Feed({});
  ASSERT_TRUE(second.has_value() && second->has_value());
  EXPECT_EQ((*second)->method, "POST");
  EXPECT_EQ((*second)->target, "/b");
  EXPECT_EQ((*second)->body, "xyz");
  auto third = decoder.Feed({});
  ASSERT_TRUE(third.has_value());
  EXPECT_FALSE(third->has_value());
  EXPECT_TRUE(decoder.HasPartialMessage());
  auto rest = decoder.Feed(AsBytes("Host: h\r\n\r\n"));
  ASSERT_TRUE(rest.has_value() && rest->has_value());
  EXPECT_EQ((*rest)->target, "/c");
}

TEST(HttpRequestDecoderTest, ChunkedBody) {
  HttpRequest r = DecodeOne(
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(r.body, "hello world");
}

TEST(HttpRequestDecoderTest, ChunkedBodyOverTheLimit) {
  HttpLimits limits;
  limits.max_body_bytes = 8;
  Error e = DecodeError(
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
      limits);
  EXPECT_EQ(e.code, Errc::kTooLarge) << Show(e);
}

TEST(HttpRequestDecoderTest, TrailingGarbageFailsTheNextFeed) {
  RequestDecoder decoder;
  auto first = decoder.Feed(AsBytes(kGoldenRequest));
  ASSERT_TRUE(first.has_value() && first->has_value());
  auto garbage = decoder.Feed(AsBytes("\x01\x02 garbage\r\n\r\n"));
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().code, Errc::kMalformed) << Show(garbage.error());
  EXPECT_FALSE(decoder.Feed(AsBytes(kGoldenRequest)).has_value());  // final

  RequestDecoder together;
  auto both = together.Feed(AsBytes(std::string(kGoldenRequest) + "\x01\x02 garbage\r\n\r\n"));
  ASSERT_TRUE(both.has_value() && both->has_value());
  ExpectGoldenRequest(**both);
  auto next = together.Feed({});
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().kind, ErrorKind::kPeerProtocol);
}

TEST(HttpRequestDecoderTest, BodyBytesBeyondContentLengthAreTheNextRequest) {
  RequestDecoder decoder;
  auto first = decoder.Feed(AsBytes("POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nabcd"));
  ASSERT_TRUE(first.has_value() && first->has_value());
  EXPECT_EQ((*first)->body, "ab");
  EXPECT_TRUE(decoder.HasPartialMessage());
}

// ---------------------------------------------------------------------------------------------
// Response decoding

TEST(HttpResponseDecoderTest, ContentLength) {
  ResponseDecoder decoder;
  auto r = decoder.Feed(
      AsBytes("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-M2M-RSC: 2001\r\n"
              "Content-Length: 2\r\n\r\n{}"));
  ASSERT_TRUE(r.has_value()) << Show(r.error());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->status, 201);
  EXPECT_EQ(FieldsOf((*r)->headers), (Fields{{"Content-Type", "application/json"},
                                             {"X-M2M-RSC", "2001"},
                                             {"Content-Length", "2"}}));
  EXPECT_EQ((*r)->body, "{}");
  EXPECT_TRUE((*r)->keep_alive);
}

TEST(HttpResponseDecoderTest, TruncationAtEveryByte) {
  const std::string text =
      "HTTP/1.1 400 Bad Request\r\nX-M2M-RSC: 4000\r\nContent-Length: 5\r\n"
      "Connection: close\r\n\r\nhello";
  for (size_t n = 1; n < text.size(); ++n) {
    ResponseDecoder decoder;
    auto first = decoder.Feed(AsBytes(std::string_view(text).substr(0, n)));
    ASSERT_TRUE(first.has_value()) << "prefix " << n;
    ASSERT_FALSE(first->has_value()) << "complete after " << n << " bytes";
    auto rest = decoder.Feed(AsBytes(std::string_view(text).substr(n)));
    ASSERT_TRUE(rest.has_value() && rest->has_value()) << "prefix " << n;
    EXPECT_EQ((*rest)->status, 400);
    EXPECT_EQ((*rest)->body, "hello");
    EXPECT_FALSE((*rest)->keep_alive);
  }
}

TEST(HttpResponseDecoderTest, CloseDelimitedBody) {
  ResponseDecoder decoder;
  auto r = decoder.Feed(AsBytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhel"));
  ASSERT_TRUE(r.has_value()) << Show(r.error());
  EXPECT_FALSE(r->has_value());
  auto more = decoder.Feed(AsBytes("lo"));
  ASSERT_TRUE(more.has_value());
  EXPECT_FALSE(more->has_value());
  auto done = decoder.FeedEof();
  ASSERT_TRUE(done.has_value()) << Show(done.error());
  ASSERT_TRUE(done->has_value());
  EXPECT_EQ((*done)->status, 200);
  EXPECT_EQ((*done)->body, "hello");
}

TEST(HttpResponseDecoderTest, EofBeforeCompleteIsAnError) {
  {
    ResponseDecoder decoder;
    auto r = decoder.Feed(AsBytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->has_value());
    auto eof = decoder.FeedEof();
    ASSERT_FALSE(eof.has_value());
    EXPECT_EQ(eof.error().kind, ErrorKind::kPeerProtocol);
  }
  {
    ResponseDecoder decoder;
    auto r = decoder.Feed(AsBytes("HTTP/1.1 200 OK\r\nContent-Le"));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(decoder.FeedEof().has_value());
  }
  {
    ResponseDecoder decoder;
    auto r = decoder.Feed(
        AsBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(decoder.FeedEof().has_value());
  }
  {
    ResponseDecoder decoder;
    auto eof = decoder.FeedEof();  // nothing at all
    ASSERT_FALSE(eof.has_value());
    EXPECT_EQ(eof.error().kind, ErrorKind::kPeerProtocol);
  }
}

TEST(HttpResponseDecoderTest, LimitsAndMalformed) {
  ResponseDecoder big;
  auto r = big.Feed(AsBytes("HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kTooLarge) << Show(r.error());

  ResponseDecoder bad;
  auto m = bad.Feed(AsBytes("HTTP/1.1 abc Nope\r\n\r\n"));
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code, Errc::kMalformed) << Show(m.error());
}

TEST(HttpResponseDecoderTest, SerializeRoundTrip) {
  HttpResponse out;
  out.status = 409;
  out.headers.Add("Content-Type", "application/json");
  out.headers.Add("X-M2M-RSC", "4105");
  out.body = R"({"m2m:dbg":"exists"})";
  out.keep_alive = false;
  ResponseDecoder decoder;
  auto r = decoder.Feed(AsBytes(out.Serialize()));
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_EQ((*r)->status, 409);
  EXPECT_EQ((*r)->headers.Get("X-M2M-RSC"), "4105");
  EXPECT_EQ((*r)->body, out.body);
  EXPECT_FALSE((*r)->keep_alive);
}

}  // namespace
}  // namespace mte::proto
