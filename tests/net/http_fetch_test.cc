// net::HttpFetcher against loopback servers: a real OCSP round trip through
// tests/integration/ocsp_responder.py (which drives `openssl ocsp`), the responder's misbehaving
// modes (silent, garbage, huge, 500, slow), and small in-test servers with canned answers for the
// HTTP framing cases (chunked, close-delimited, interim 1xx, malformed, oversized, reset).
#include "net/http_fetch.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "testlib/result_assertions.h"
#include "testlib/temp_dir.h"

extern char** environ;

namespace mte::net {
namespace {

using std::chrono::milliseconds;
using testlib::IsError;
using testlib::Ok;
using Steady = std::chrono::steady_clock;

long long MsSince(Steady::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Steady::now() - start).count();
}

// Runs a shell command; returns its exit status and (with `output`) its stdout and stderr.
int Shell(const std::string& command, std::string* output = nullptr) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
  int status = ::pclose(pipe);
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Bytes ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, ByteSpan data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// A CA, a device certificate it issued (serial 0x1001, "valid" in the index) and an OCSP request
// for it, all made with the openssl CLI. The CA signs its own OCSP responses.
class OcspPki {
 public:
  static const OcspPki& Get() {
    static OcspPki* pki = new OcspPki();  // shared by all tests; leaked on purpose
    return *pki;
  }

  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }
  std::string File(std::string_view name) const { return dir_.File(name); }
  const Bytes& request() const { return request_; }

 private:
  OcspPki() {
    const std::string d = dir_.path().string();
    const std::string commands[] = {
        "cd " + d +
            " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
            " -keyout ca.key -out ca.crt -subj /CN=mte-test-ocsp-ca -days 30"
            " -addext basicConstraints=critical,CA:true"
            " -addext keyUsage=critical,keyCertSign,cRLSign",
        "cd " + d +
            " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
            " -keyout dev.key -out dev.csr -subj /CN=mte-test-device",
        "cd " + d +
            " && openssl x509 -req -in dev.csr -CA ca.crt -CAkey ca.key"
            " -set_serial 0x1001 -days 30 -out dev.crt",
        "cd " + d +
            " && printf 'V\\t301231235959Z\\t\\t1001\\tunknown\\t/CN=mte-test-device\\n'"
            " > index.txt",
        "cd " + d + " && openssl ocsp -issuer ca.crt -cert dev.crt -reqout req.der",
    };
    for (const auto& command : commands) {
      std::string out;
      if (Shell(command, &out) != 0) {
        log_ = command + ":\n" + out;
        return;
      }
    }
    request_ = ReadFile(dir_.File("req.der"));
    ok_ = !request_.empty();
  }

  testlib::TempDir dir_;
  Bytes request_;
  bool ok_ = false;
  std::string log_;
};

// tests/integration/ocsp_responder.py as a child process; SIGTERM and reaped on destruction.
class Responder {
 public:
  // Empty on failure (with the reason in `why`).
  static std::unique_ptr<Responder> Start(const std::string& mode, std::string* why) {
    const char* source = std::getenv("MTE_SOURCE_DIR");
    if (source == nullptr) {
      *why = "MTE_SOURCE_DIR is not set (ctest sets it)";
      return nullptr;
    }
    const auto& pki = OcspPki::Get();
    if (!pki.ok()) {
      *why = "test PKI: " + pki.log();
      return nullptr;
    }
    static std::atomic<int> counter{0};
    auto r = std::unique_ptr<Responder>(new Responder());
    r->port_file_ = r->dir_.File("port" + std::to_string(counter++));
    std::vector<std::string> args = {
        "python3",       std::string(source) + "/tests/integration/ocsp_responder.py",
        "--index",       pki.File("index.txt"),
        "--ca",          pki.File("ca.crt"),
        "--rsigner",     pki.File("ca.crt"),
        "--rkey",        pki.File("ca.key"),
        "--port-file",   r->port_file_,
        "--mode",        mode,
        "--max-seconds", "120"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawnp(&r->pid_, "python3", nullptr, nullptr, argv.data(), environ) != 0) {
      *why = "cannot spawn python3";
      r->pid_ = -1;
      return nullptr;
    }
    // The script writes the port file (atomically) once its socket is bound.
    auto start = Steady::now();
    while (MsSince(start) < 15000) {
      std::ifstream in(r->port_file_);
      int port = 0;
      if (in >> port && port > 0 && port < 65536) {
        r->port_ = static_cast<uint16_t>(port);
        return r;
      }
      int status = 0;
      if (::waitpid(r->pid_, &status, WNOHANG) == r->pid_) {
        r->pid_ = -1;
        *why = "ocsp_responder.py exited before binding";
        return nullptr;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    *why = "ocsp_responder.py did not write its port file";
    return nullptr;
  }

  ~Responder() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ocsp"; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  void SetMode(const std::string& mode) const {
    std::string tmp = port_file_ + ".mode.tmp";
    WriteFile(tmp, AsBytes(mode + "\n"));
    std::filesystem::rename(tmp, port_file_ + ".mode");
  }
  // Waits for the process to exit on its own; true if it did within `limit`.
  bool WaitExit(milliseconds limit) {
    auto start = Steady::now();
    while (MsSince(start) < limit.count()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

 private:
  Responder() = default;
  testlib::TempDir dir_;
  std::string port_file_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// A one-connection HTTP server on loopback: reads one request (header section and a
// Content-Length body), sends `reply` and closes (or resets). The request is kept for checks.
class CannedServer {
 public:
  enum class End { kClose, kReset };

  explicit CannedServer(std::string reply, End end = End::kClose, bool v6 = false)
      : reply_(std::move(reply)), end_(end) {
    listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(listen_fd_, 4) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      return;
    }
    port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    thread_ = std::thread([this] { Serve(); });
  }

  ~CannedServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  bool ok() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // The request as received; complete once the fetch has finished.
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  static bool WaitReadable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
  }

  void Serve() {
    auto start = Steady::now();
    while (!stop_ && !WaitReadable(listen_fd_, 50)) {
      if (MsSince(start) > 10000) return;
    }
    if (stop_) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    char buf[4096];
    size_t want = std::string::npos;
    while (request_.size() < want && WaitReadable(fd, 5000)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      request_.append(buf, static_cast<size_t>(n));
      size_t end = request_.find("\r\n\r\n");
      if (want == std::string::npos && end != std::string::npos) {
        size_t cl = request_.find("Content-Length: ");
        size_t body = cl == std::string::npos ? 0 : std::stoul(request_.substr(cl + 16));
        want = end + 4 + body;
      }
    }
    if (end_ == End::kReset) {
      linger l{1, 0};  // close with RST
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::close(fd);
      return;
    }
    size_t sent = 0;
    while (sent < reply_.size()) {
      ssize_t n = ::send(fd, reply_.data() + sent, reply_.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    if (end_ == End::kClose) ::shutdown(fd, SHUT_WR);
    // Wait for the client to close (or for the test to end) before closing our side.
    while (!stop_) {
      if (WaitReadable(fd, 50)) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
      }
    }
    ::close(fd);
  }

  std::string reply_;
  End end_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::string request_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class HttpFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = HttpFetcher::Create();
    ASSERT_TRUE(Ok(created));
    fetcher_ = std::move(*created);
  }

  Result<FetchResponse> Fetch(const std::string& url, milliseconds timeout = milliseconds(5000),
                              size_t max_bytes = 64 * 1024) {
    FetchRequest request;
    request.url = url;
    request.body = OcspPki::Get().request();
    request.timeout = timeout;
    request.max_response_bytes = max_bytes;
    return fetcher_->PostAndWait(std::move(request));
  }

  Result<FetchResponse> Canned(const std::string& reply, size_t max_bytes = 64 * 1024) {
    CannedServer server(reply);
    if (!server.ok()) return Fail(ErrorKind::kIo, Errc::kIoFailed, "test server did not start");
    return Fetch(server.url(), milliseconds(5000), max_bytes);
  }

  std::unique_ptr<HttpFetcher> fetcher_;
};

std::string Text(const Bytes& b) { return std::string(b.begin(), b.end()); }

// --- OCSP through ocsp_responder.py -------------------------------------------------------------

TEST_F(HttpFetchTest, OcspRoundTripGivesAResponseOpensslVerifiesAsGood) {
  std::string responder_why;
  auto responder = Responder::Start("good", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  auto got = Fetch(responder->url());
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->content_type, "application/ocsp-response");
  const auto& pki = OcspPki::Get();
  testlib::TempDir dir;
  WriteFile(dir.File("resp.der"), got->body);
  std::string out;
  // The verifying command builds its own request (a fresh nonce), hence -no_nonce.
  int rc =
      Shell("openssl ocsp -respin " + dir.File("resp.der") + " -CAfile " + pki.File("ca.crt") +
                " -issuer " + pki.File("ca.crt") + " -cert " + pki.File("dev.crt") + " -no_nonce",
            &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Response verify OK"), std::string::npos) << out;
  EXPECT_NE(out.find("dev.crt: good"), std::string::npos) << out;
}

TEST_F(HttpFetchTest, ManyConcurrentFetchesEachCompleteExactlyOnce) {
  std::string responder_why;
  auto responder = Responder::Start("good", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  constexpr int kFetches = 8;
  std::atomic<int> calls{0};
  std::atomic<int> good{0};
  std::promise<void> all;
  for (int i = 0; i < kFetches; ++i) {
    FetchRequest request;
    request.url = responder->url();
    request.body = OcspPki::Get().request();
    request.timeout = milliseconds(10000);
    fetcher_->Post(std::move(request), [&](Result<FetchResponse> r) {
      if (r.has_value() && r->status == 200 && !r->body.empty()) ++good;
      if (++calls == kFetches) all.set_value();
    });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(15)), std::future_status::ready);
  EXPECT_EQ(good.load(), kFetches);
  fetcher_.reset();
  EXPECT_EQ(calls.load(), kFetches);
}

TEST_F(HttpFetchTest, SilentResponderTimesOutAtTheDeadlineWithoutHoldingUpOthers) {
  std::string silent_why;
  auto silent = Responder::Start("silent", &silent_why);
  ASSERT_NE(silent, nullptr) << silent_why;
  std::string good_why;
  auto good = Responder::Start("good", &good_why);
  ASSERT_NE(good, nullptr) << good_why;
  constexpr milliseconds kTimeout(1500);
  std::promise<std::pair<Result<FetchResponse>, long long>> slow_done;
  auto slow_future = slow_done.get_future();
  auto start = Steady::now();
  FetchRequest request;
  request.url = silent->url();
  request.body = OcspPki::Get().request();
  request.timeout = kTimeout;
  fetcher_->Post(std::move(request), [&](Result<FetchResponse> r) {
    slow_done.set_value({std::move(r), MsSince(start)});
  });

  // While the silent fetch is pending, another fetch completes promptly.
  auto quick_start = Steady::now();
  auto quick = Fetch(good->url());
  auto quick_ms = MsSince(quick_start);
  ASSERT_TRUE(Ok(quick));
  EXPECT_EQ(quick->status, 200);
  EXPECT_LT(quick_ms, kTimeout.count());
  EXPECT_EQ(slow_future.wait_for(milliseconds(0)), std::future_status::timeout)
      << "the silent fetch finished before the deadline";

  ASSERT_EQ(slow_future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto [slow, slow_ms] = slow_future.get();
  EXPECT_TRUE(IsError(slow, ErrorKind::kTimeout, Errc::kDeadline, "did not answer within 1500 ms"));
  EXPECT_GE(slow_ms, kTimeout.count() - 5);
  EXPECT_LE(slow_ms, kTimeout.count() + 1000);
}

TEST_F(HttpFetchTest, GarbageIsReturnedAsTheBody) {
  std::string responder_why;
  auto responder = Responder::Start("garbage", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  auto got = Fetch(responder->url());
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body.size(), 1024u);  // the caller's OCSP decoder rejects it
}

TEST_F(HttpFetchTest, HugeAnswerIsRefusedAtTheCapWithoutReadingIt) {
  std::string responder_why;
  auto responder = Responder::Start("huge", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  auto start = Steady::now();
  auto got = Fetch(responder->url());
  EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kTooLarge, "65536 body bytes"));
  EXPECT_LT(MsSince(start), 2000);  // refused on the Content-Length, not after 64 MiB
}

TEST_F(HttpFetchTest, Http500IsAResponseNotAnError) {
  std::string responder_why;
  auto responder = Responder::Start("http500", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  auto got = Fetch(responder->url());
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 500);
}

TEST_F(HttpFetchTest, ModeChangesAtRunTimeSlowThenGood) {
  std::string responder_why;
  auto responder = Responder::Start("good", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  responder->SetMode("slow");
  auto start = Steady::now();
  auto slow = Fetch(responder->url(), milliseconds(1000));
  auto ms = MsSince(start);
  EXPECT_TRUE(IsError(slow, ErrorKind::kTimeout, Errc::kDeadline));
  EXPECT_GE(ms, 995);
  EXPECT_LE(ms, 2000);
  responder->SetMode("good");
  auto got = Fetch(responder->url());
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 200);
  EXPECT_FALSE(got->body.empty());
}

TEST_F(HttpFetchTest, ResponderExitsOnSigterm) {
  std::string responder_why;
  auto responder = Responder::Start("silent", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  // A held (silent) connection must not keep it alive.
  std::promise<void> done;
  FetchRequest request;
  request.url = responder->url();
  request.timeout = milliseconds(5000);
  fetcher_->Post(std::move(request), [&](Result<FetchResponse>) { done.set_value(); });
  std::this_thread::sleep_for(milliseconds(200));  // let the request reach the handler
  ::kill(responder->pid(), SIGTERM);
  EXPECT_TRUE(responder->WaitExit(milliseconds(3000)));
  EXPECT_EQ(done.get_future().wait_for(std::chrono::seconds(6)), std::future_status::ready);
}

// --- connection failures
// --------------------------------------------------------------------------

TEST_F(HttpFetchTest, ConnectionRefused) {
  // A bound socket that does not listen: connecting to it is refused, and nobody else can take
  // the port meanwhile.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), len), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::string port = std::to_string(ntohs(a.sin_port));
  auto got = Fetch("http://127.0.0.1:" + port + "/");
  ::close(fd);
  EXPECT_TRUE(IsError(got, ErrorKind::kIo, Errc::kIoFailed,
                      "OCSP responder 127.0.0.1:" + port + " unreachable: Connection refused"));
}

TEST_F(HttpFetchTest, ResetAfterTheRequestIsAnIoError) {
  CannedServer server("", CannedServer::End::kReset);
  ASSERT_TRUE(server.ok());
  auto got = Fetch(server.url());
  EXPECT_TRUE(IsError(got, ErrorKind::kIo, Errc::kIoFailed, "reading the answer failed"));
}

TEST_F(HttpFetchTest, ClosedWithoutAnAnswer) {
  auto got = Canned("");
  EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kClosed));
}

// --- HTTP framing ------------------------------------------------------------------------------

TEST_F(HttpFetchTest, SendsAStrictPostWithTheRequiredHeaders) {
  CannedServer server(
      "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(server.ok());
  FetchRequest request;
  request.url = server.url("/ocsp/x?y=1#frag");
  request.body = Bytes{'a', 'b', 'c'};
  auto got = fetcher_->PostAndWait(std::move(request));
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->content_type, "application/ocsp-response");
  EXPECT_EQ(Text(got->body), "ok");
  std::string seen = server.request();
  const std::string port = std::to_string(server.port());
  EXPECT_EQ(seen.rfind("POST /ocsp/x?y=1 HTTP/1.1\r\n", 0), 0u) << seen;
  for (const std::string& header :
       {"\r\nHost: 127.0.0.1:" + port + "\r\n",
        std::string("\r\nContent-Type: application/ocsp-request\r\n"),
        std::string("\r\nAccept: application/ocsp-response\r\n"),
        std::string("\r\nContent-Length: 3\r\n"), std::string("\r\nConnection: close\r\n")}) {
    EXPECT_NE(seen.find(header), std::string::npos) << header << " missing in:\n" << seen;
  }
  ASSERT_GE(seen.size(), 7u);
  EXPECT_EQ(seen.substr(seen.size() - 7), "\r\n\r\nabc");
}

TEST_F(HttpFetchTest, ChunkedBody) {
  auto got = Canned(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "
      "world\r\n0\r\n\r\n");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(Text(got->body), "hello world");
  EXPECT_EQ(got->content_type, "");
}

TEST_F(HttpFetchTest, CloseDelimitedBody) {
  auto got = Canned("HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n\r\nabcdef");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(Text(got->body), "abcdef");
}

TEST_F(HttpFetchTest, Http10AnswerIsAccepted) {
  auto got = Canned("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 404);
  EXPECT_TRUE(got->body.empty());
}

TEST_F(HttpFetchTest, InterimResponsesAreSkipped) {
  auto got = Canned(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Text(got->body), "ok");
}

TEST_F(HttpFetchTest, SwitchingProtocolsUnaskedIsMalformed) {
  auto got =
      Canned("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n");
  EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kMalformed));
}

TEST_F(HttpFetchTest, MalformedStatusLine) {
  for (const char* reply : {"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                            "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "hello world\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    SCOPED_TRACE(reply);
    auto got = Canned(reply);
    EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kMalformed));
  }
}

TEST_F(HttpFetchTest, TruncatedBodyIsMalformed) {
  auto got = Canned("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kMalformed, "truncated"));
}

TEST_F(HttpFetchTest, HeaderSectionOver8KiBIsRefused) {
  auto got = Canned("HTTP/1.1 200 OK\r\nX-Pad: " + std::string(9000, 'a') +
                    "\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(IsError(got, ErrorKind::kPeerProtocol, Errc::kTooLarge, "header"));
  // Just under the cap is fine.
  auto fits = Canned("HTTP/1.1 200 OK\r\nX-Pad: " + std::string(8000, 'a') +
                     "\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(Ok(fits));
}

TEST_F(HttpFetchTest, BodyCapHoldsForEveryFraming) {
  const std::string body(100, 'x');
  // Content-Length over the cap, a chunked body that grows over it, and a close-delimited one.
  EXPECT_TRUE(IsError(Canned("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body, 64),
                      ErrorKind::kPeerProtocol, Errc::kTooLarge, "64 body bytes"));
  EXPECT_TRUE(
      IsError(Canned("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "32\r\n" +
                         body.substr(0, 50) + "\r\n32\r\n" + body.substr(0, 50) + "\r\n0\r\n\r\n",
                     64),
              ErrorKind::kPeerProtocol, Errc::kTooLarge));
  EXPECT_TRUE(IsError(Canned("HTTP/1.1 200 OK\r\n\r\n" + std::string(200 * 1024, 'x')),
                      ErrorKind::kPeerProtocol, Errc::kTooLarge));
  // Exactly at the cap is fine.
  auto at_cap = Canned("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body, 100);
  ASSERT_TRUE(Ok(at_cap));
  EXPECT_EQ(at_cap->body.size(), 100u);
}

TEST_F(HttpFetchTest, DnsNameAndIpv6Literal) {
  CannedServer v4("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv4");
  ASSERT_TRUE(v4.ok());
  auto named = Fetch("http://localhost:" + std::to_string(v4.port()) + "/");
  ASSERT_TRUE(Ok(named));
  EXPECT_EQ(Text(named->body), "v4");
  EXPECT_NE(v4.request().find("\r\nHost: localhost:" + std::to_string(v4.port()) + "\r\n"),
            std::string::npos);

  CannedServer v6("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6", CannedServer::End::kClose,
                  /*v6=*/true);
  if (!v6.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  auto got = Fetch("http://[::1]:" + std::to_string(v6.port()) + "/");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(Text(got->body), "v6");
}

// --- bad input
// ------------------------------------------------------------------------------------

TEST_F(HttpFetchTest, BadUrlsAreConfigErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"https://127.0.0.1/ocsp", "https is not supported"},
      {"HTTPS://127.0.0.1/ocsp", "https is not supported"},
      {"ftp://127.0.0.1/", "scheme must be http"},
      {"127.0.0.1:80/ocsp", "expected http://"},
      {"", "expected http://"},
      {"http://", "no host"},
      {"http:///ocsp", "no host"},
      {"http://:80/ocsp", "no host"},
      {"http://127.0.0.1:99999/", "port 99999 out of range"},
      {"http://127.0.0.1:0/", "port 0 out of range"},
      {"http://127.0.0.1:123456/", "port out of range"},
      {"http://127.0.0.1:/", "empty port"},
      {"http://127.0.0.1:8x/", "bad port"},
      {"http://user@127.0.0.1/", "userinfo"},
      {"http://[::1/", "unterminated IPv6"},
      {"http://[zz::1]/", "bad IPv6"},
      {"http://[fe80::1%25eth0]/", "bad IPv6"},
      {"http://[::1]x/", "unexpected characters"},
      {"http://999.1.1.1/", "bad IPv4"},
      {"http://127.1/", "bad IPv4"},
      {"http://ex_ample/", "bad character"},
      {"http://host name/", "space, control"},
      {"http://h\xc3\xa9/", "non-ASCII"},
  };
  for (const auto& [url, why] : cases) {
    SCOPED_TRACE(url);
    EXPECT_TRUE(IsError(Fetch(url), ErrorKind::kLocalUsage, Errc::kConfig, why));
  }
  EXPECT_TRUE(IsError(Fetch("http://127.0.0.1/" + std::string(3000, 'a')), ErrorKind::kLocalUsage,
                      Errc::kConfig, "longer than 2048"));
}

TEST_F(HttpFetchTest, BadRequestFieldsAreConfigErrors) {
  EXPECT_TRUE(IsError(Fetch("http://127.0.0.1:1/", milliseconds(0)), ErrorKind::kLocalUsage,
                      Errc::kConfig, "timeout"));
  FetchRequest request;
  request.url = "http://127.0.0.1:1/";
  request.content_type = "application/ocsp-request\r\nX-Injected: 1";
  EXPECT_TRUE(IsError(fetcher_->PostAndWait(std::move(request)), ErrorKind::kLocalUsage,
                      Errc::kConfig, "line break"));
}

// --- lifetime
// -------------------------------------------------------------------------------------

TEST_F(HttpFetchTest, DestructionFinishesInFlightFetchesWithClosed) {
  std::string responder_why;
  auto responder = Responder::Start("silent", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  std::atomic<int> calls{0};
  std::optional<Result<FetchResponse>> result;
  FetchRequest request;
  request.url = responder->url();
  request.timeout = milliseconds(20000);
  fetcher_->Post(std::move(request), [&](Result<FetchResponse> r) {
    ++calls;
    result = std::move(r);
  });
  // Not yet started or already waiting on the silent responder: both end the same way.
  auto start = Steady::now();
  fetcher_.reset();
  EXPECT_LT(MsSince(start), 1000);
  EXPECT_EQ(calls.load(), 1);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(IsError(*result, ErrorKind::kIo, Errc::kClosed, "shutting down"));
}

TEST_F(HttpFetchTest, PostFromACallbackDuringDestructionStillCompletesOnce) {
  std::string responder_why;
  auto responder = Responder::Start("silent", &responder_why);
  ASSERT_NE(responder, nullptr) << responder_why;
  std::atomic<int> inner_calls{0};
  std::optional<Result<FetchResponse>> inner;
  HttpFetcher* raw = fetcher_.get();
  FetchRequest request;
  request.url = responder->url();
  request.timeout = milliseconds(20000);
  raw->Post(std::move(request), [&, raw](Result<FetchResponse>) {
    FetchRequest again;
    again.url = "http://127.0.0.1:1/";
    raw->Post(std::move(again), [&](Result<FetchResponse> r) {
      ++inner_calls;
      inner = std::move(r);
    });
  });
  fetcher_.reset();
  EXPECT_EQ(inner_calls.load(), 1);
  ASSERT_TRUE(inner.has_value());
  EXPECT_TRUE(IsError(*inner, ErrorKind::kIo, Errc::kClosed));
}

TEST_F(HttpFetchTest, CallbacksRunOnTheFetcherThreadAndPostAndWaitThereIsRefused) {
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(server.ok());
  std::promise<std::pair<std::string, Result<FetchResponse>>> seen;
  FetchRequest request;
  request.url = server.url();
  fetcher_->Post(std::move(request), [&](Result<FetchResponse>) {
    char name[32] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    FetchRequest nested;
    nested.url = "http://127.0.0.1:1/";
    seen.set_value({name, fetcher_->PostAndWait(std::move(nested))});
  });
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto [name, nested] = future.get();
  EXPECT_EQ(name, "mte-fetch");
  EXPECT_TRUE(IsError(nested, ErrorKind::kLocalUsage, Errc::kConflict));
}

TEST_F(HttpFetchTest, ACallbackThatThrowsDoesNotStopTheFetcher) {
  CannedServer first("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(first.ok());
  FetchRequest request;
  request.url = first.url();
  fetcher_->Post(std::move(request),
                 [](Result<FetchResponse>) { throw std::runtime_error("callback failure"); });
  CannedServer second("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(second.ok());
  auto got = Fetch(second.url());
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(Text(got->body), "ok");
}

}  // namespace
}  // namespace mte::net
