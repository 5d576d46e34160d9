#include "net/server.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <thread>
#include <vector>

#include "base/thread_name.h"
#include "proto/onem2m.h"
#include "proto/server_connection.h"

// GCC 12 reports -Wmismatched-new-delete for Asio's awaitable frames (their operator new and delete
// are a matching pair; the warning is a known false positive of GCC 12's coroutine lowering).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace mte::net {
namespace asio = boost::asio;
using asio::ip::tcp;
using Steady = std::chrono::steady_clock;

namespace {

// A connection reads into a small buffer first (a ClientHello fits), and into a full TLS record's
// worth once a read fills it: a silent or idle connection holds 2 KiB, not 16.
constexpr size_t kFirstReadChunk = 2 * 1024;
constexpr size_t kReadChunk = 16 * 1024;
constexpr auto kWriteTimeout = std::chrono::seconds(10);

// Runs `work` on the worker pool and resumes the calling coroutine on its own executor.
template <class F>
auto OnPool(asio::thread_pool& pool, F work) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [&pool](auto handler, F fn) {
        asio::post(pool, [handler = std::move(handler), fn = std::move(fn)]() mutable {
          thread_local bool named = false;
          if (!named) {
            SetThreadName("mte-worker");
            named = true;
          }
          fn();
          auto ex = asio::get_associated_executor(handler);
          asio::dispatch(ex, std::move(handler));
        });
      },
      asio::use_awaitable, std::move(work));
}

}  // namespace

// One connection's socket and its deadline. Usually the deadline moves later, and one timer wait
// covers a whole short connection: when the timer fires before the (meanwhile extended) deadline it
// simply waits again, and only a passed deadline cancels the socket's operations. A deadline moved
// earlier (idle after a write, a shorter request deadline) re-arms the timer. Everything here runs
// on the connection's strand.
struct Connection : std::enable_shared_from_this<Connection> {
  explicit Connection(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}

  void SetDeadline(Steady::time_point at) {
    timed_out = false;
    bool earlier = at < deadline;
    deadline = at;
    if (!armed || earlier) Arm();
  }

  void Arm() {
    armed = true;
    uint64_t mine = ++generation;
    timer.expires_at(deadline);  // cancels an earlier wait, whose handler then sees a newer generation
    timer.async_wait([self = shared_from_this(), mine](const boost::system::error_code&) {
      if (mine != self->generation) return;
      self->armed = false;
      if (self->closed) return;
      if (Steady::now() < self->deadline) {
        self->Arm();
        return;
      }
      self->timed_out = true;
      boost::system::error_code ignored;
      self->socket.cancel(ignored);
    });
  }

  void Close() {
    closed = true;
    boost::system::error_code ignored;
    timer.cancel();
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

  // Closes a connection that has not sent a byte, to admit a new one (runs on the strand).
  void Reap() {
    if (closed || received_any) return;
    reaped = true;
    timed_out = true;
    boost::system::error_code ignored;
    socket.cancel(ignored);
  }

  tcp::socket socket;
  asio::steady_timer timer;
  std::string peer_address;
  std::list<std::weak_ptr<Connection>>::iterator silent_entry;  // end() once heard or reaped
  bool received_any = false;
  bool reaped = false;
  Steady::time_point deadline = Steady::time_point::max();
  uint64_t generation = 0;
  bool armed = false;
  bool timed_out = false;
  bool closed = false;
};

// A listener's options plus its admission state: connections open in all and per client address,
// and those that have not sent a byte yet, oldest first (the ones reaped when the listener is
// full). Guarded by `mu`; the acceptor and the sessions' strands run on different threads.
struct Listener : ListenerOptions {
  explicit Listener(ListenerOptions options) : ListenerOptions(std::move(options)) {}

  enum class Admission { kAdmitted, kAddressFull, kListenerFull };
  // Counts `conn` in, reaping the oldest silent connection if the listener is full.
  Admission Admit(const std::shared_ptr<Connection>& conn) {
    std::shared_ptr<Connection> victim;
    {
      std::lock_guard lock(mu);
      size_t& mine = per_address[conn->peer_address];
      if (mine >= max_connections_per_address) return Admission::kAddressFull;
      if (open >= max_connections) {
        while (!silent.empty() && !victim) {
          victim = silent.front().lock();
          silent.pop_front();
          if (victim) victim->silent_entry = silent.end();
        }
        if (!victim) {
          if (mine == 0) per_address.erase(conn->peer_address);
          return Admission::kListenerFull;
        }
      }
      ++mine;
      ++open;
      conn->silent_entry = silent.insert(silent.end(), conn);
    }
    if (victim) {
      spdlog::info("{}: {} connections open; closing a silent one from {} for a new one from {}",
                   name, max_connections, victim->peer_address, conn->peer_address);
      asio::post(victim->socket.get_executor(), [victim] { victim->Reap(); });
    }
    return Admission::kAdmitted;
  }

  // The connection sent its first byte: it is no longer a candidate for reaping.
  void Heard(Connection& conn) {
    std::lock_guard lock(mu);
    conn.received_any = true;
    if (conn.silent_entry != silent.end()) silent.erase(conn.silent_entry);
    conn.silent_entry = silent.end();
  }

  void Release(Connection& conn) {
    std::lock_guard lock(mu);
    if (conn.silent_entry != silent.end()) silent.erase(conn.silent_entry);
    conn.silent_entry = silent.end();
    --open;
    if (auto it = per_address.find(conn.peer_address); it != per_address.end() && --it->second == 0) {
      per_address.erase(it);
    }
  }

  std::mutex mu;
  size_t open = 0;
  std::unordered_map<std::string, size_t> per_address;
  std::list<std::weak_ptr<Connection>> silent;
  // Refusals are logged at most once a second per listener, with how many there were.
  Steady::time_point last_refusal_log{};
  size_t refusals_unlogged = 0;
};

struct Server::Impl {
  asio::io_context ioc;
  asio::thread_pool pool;
  int io_threads;
  std::list<tcp::acceptor> acceptors;
  std::atomic<size_t> sessions{0};
  std::atomic<bool> stopping{false};
  // Memory of closed connections goes back to the system in bulk: every kTrimInterval, when at
  // least kTrimAfter connections have closed since the most that were open at once.
  static constexpr size_t kTrimAfter = 256;
  static constexpr auto kTrimInterval = std::chrono::seconds(5);
  std::atomic<size_t> peak_sessions{0};
  std::optional<asio::steady_timer> trim_timer;
  void ScheduleTrim();

  Impl(int io, int workers) : ioc(io), pool(static_cast<size_t>(workers)), io_threads(io) {}

  asio::awaitable<void> Accept(tcp::acceptor& acceptor, std::shared_ptr<Listener> opts);
  asio::awaitable<void> Session(std::shared_ptr<Connection> conn, std::shared_ptr<Listener> opts);
  asio::awaitable<bool> WriteAll(Connection& conn, const Bytes& out, bool established);
  // Runs `work` where a listener's handlers run: inline, or on the worker pool (Argon2id).
  asio::awaitable<void> Run(bool offload, std::function<void()> work);
  void BeginShutdown(std::chrono::milliseconds grace);
};

Server::Server(int io_threads, int worker_threads)
    : impl_(std::make_unique<Impl>(io_threads, worker_threads)) {}

Server::~Server() {
  impl_->ioc.stop();
  impl_->pool.join();
}

Result<uint16_t> Server::Listen(ListenerOptions options) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options.address, ec);
  if (ec) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "bad listen address '" + options.address + "': " + ec.message());
  }
  tcp::endpoint endpoint(address, options.port);
  auto& acceptor = impl_->acceptors.emplace_back(impl_->ioc);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    impl_->acceptors.pop_back();
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                options.name + ": cannot listen on " + options.address + ":" +
                    std::to_string(options.port) + ": " + ec.message());
  }
  uint16_t port = acceptor.local_endpoint().port();
  auto opts = std::make_shared<Listener>(std::move(options));
  asio::co_spawn(impl_->ioc, impl_->Accept(acceptor, opts), asio::detached);
  return port;
}

namespace {

void LogRefusal(Listener& opts, const Connection& conn, Listener::Admission why) {
  std::lock_guard lock(opts.mu);
  ++opts.refusals_unlogged;
  auto now = Steady::now();
  if (now - opts.last_refusal_log < std::chrono::seconds(1)) return;
  opts.last_refusal_log = now;
  if (why == Listener::Admission::kAddressFull) {
    spdlog::warn("{}: {} holds {} connections (maxConnectionsPerAddress); refused {} new ones",
                 opts.name, conn.peer_address, opts.max_connections_per_address,
                 opts.refusals_unlogged);
  } else {
    spdlog::warn("{}: {} connections open, none of them silent (maxConnections); refused {} new ones",
                 opts.name, opts.max_connections, opts.refusals_unlogged);
  }
  opts.refusals_unlogged = 0;
}

}  // namespace

asio::awaitable<void> Server::Impl::Accept(tcp::acceptor& acceptor,
                                           std::shared_ptr<Listener> opts) {
  while (!stopping) {
    auto [ec, socket] =
        co_await acceptor.async_accept(asio::make_strand(ioc), asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping) co_return;
      spdlog::warn("{}: accept failed: {}", opts->name, ec.message());
      continue;
    }
    auto conn = std::make_shared<Connection>(std::move(socket));
    boost::system::error_code remote_ec;
    auto remote = conn->socket.remote_endpoint(remote_ec);
    conn->peer_address = remote_ec ? "?" : remote.address().to_string();
    if (auto admission = opts->Admit(conn); admission != Listener::Admission::kAdmitted) {
      LogRefusal(*opts, *conn, admission);
      conn->Close();
      continue;
    }
    auto executor = conn->socket.get_executor();
    asio::co_spawn(executor, Session(std::move(conn), opts), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("session ended by an exception: {}", ex.what());
      }
    });
  }
}

asio::awaitable<bool> Server::Impl::WriteAll(Connection& conn, const Bytes& out,
                                             bool established) {
  if (out.empty()) co_return true;
  // A handshake flight is written within the handshake deadline; a response gets its own.
  if (established) conn.SetDeadline(Steady::now() + kWriteTimeout);
  auto [ec, n] = co_await asio::async_write(conn.socket, asio::buffer(out),
                                            asio::as_tuple(asio::use_awaitable));
  co_return !ec;
}

asio::awaitable<void> Server::Impl::Run(bool offload, std::function<void()> work) {
  if (offload) {
    co_await OnPool(pool, std::move(work));
  } else {
    work();
  }
}

// glibc keeps freed memory in its arenas: thousands of closed connections (a flood, a burst of
// devices) would otherwise stay resident for good (docs/performance.md §7).
void Server::Impl::ScheduleTrim() {
  trim_timer->expires_after(kTrimInterval);
  trim_timer->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping) return;
    size_t open_now = sessions.load();
    if (peak_sessions.load() >= open_now + kTrimAfter) {
      peak_sessions.store(open_now);
      // It walks the whole heap: on the worker pool, not on an I/O thread.
      asio::post(pool, [] { ::malloc_trim(0); });
    }
    ScheduleTrim();
  });
}

asio::awaitable<void> Server::Impl::Session(std::shared_ptr<Connection> conn,
                                            std::shared_ptr<Listener> opts) {
  size_t open_now = ++sessions;
  for (size_t peak = peak_sessions.load();
       open_now > peak && !peak_sessions.compare_exchange_weak(peak, open_now);) {
  }
  struct Count {
    std::atomic<size_t>& n;
    Listener& listener;
    Connection& conn;
    ~Count() {
      listener.Release(conn);
      --n;
    }
  } count{sessions, *opts, *conn};
  struct CloseOnExit {
    Connection& conn;
    ~CloseOnExit() { conn.Close(); }
  } close_on_exit{*conn};

  ConnectionInfo info;
  info.listener = opts->name;
  info.peer_address = conn->peer_address;
  boost::system::error_code ec;
  conn->socket.set_option(tcp::no_delay(true), ec);

  auto engine = crypto::TlsEngine::Server(opts->tls, opts->psk_lookup);
  if (!engine) {
    spdlog::error("{}: cannot create TLS engine: {}", opts->name, Describe(engine.error()));
    co_return;
  }
  std::unique_ptr<proto::ConnectionHandler> handler;
  if (opts->connection_factory) {
    handler = opts->connection_factory(info);
  } else {
    handler = proto::StatelessHandler(
        [fn = opts->handler, info](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
          return fn(request, tls, info);
        });
  }
  proto::ServerConnection connection(std::move(*engine), opts->http_limits, std::move(handler));
  connection.set_observer([&](const proto::HttpRequest& request, const proto::HttpResponse&) {
    spdlog::debug("{}: {} {} from {}", opts->name, request.method, request.target,
                  info.peer_address);
  });
  conn->SetDeadline(Steady::now() + opts->handshake_timeout);
  std::vector<uint8_t> buf(kFirstReadChunk);
  spdlog::debug("{}: connection from {}", opts->name, info.peer_address);

  // Says why a connection failed: the outer handshake, the inner (RSPF) one, or a request.
  auto log_failure = [&](const Error& error) {
    const proto::TlsHttpSession& session = connection.session();
    const auto& failure = session.tls().failure();
    if (!session.HandshakeComplete()) {
      spdlog::info("{}: TLS handshake from {} failed: {}", opts->name, info.peer_address,
                   failure.empty() ? Describe(error) : failure);
    } else if (session.depth() > 1 && !session.tls().HandshakeComplete()) {
      spdlog::info("{}: inner RSPF handshake from {} failed: {}", opts->name, info.peer_address,
                   failure.empty() ? Describe(error) : failure);
    } else {
      spdlog::info("{}: request from {} rejected: {}", opts->name, info.peer_address,
                   Describe(error));
    }
  };

  // After the handshake the connection alternates between idle (nothing of the next request yet:
  // `idle_timeout` from the last answer) and receiving (the first bytes of a request, or of an inner
  // handshake flight, have arrived: all of it within `request_timeout` of them, however slowly it
  // drips). Every answer written ends a receiving phase.
  bool receiving = false;
  while (!stopping || connection.session().HandshakeComplete()) {
    bool established = connection.session().HandshakeComplete();
    if (established && !receiving) conn->SetDeadline(Steady::now() + opts->idle_timeout);
    auto [read_ec, n] = co_await conn->socket.async_read_some(asio::buffer(buf),
                                                              asio::as_tuple(asio::use_awaitable));
    if (conn->reaped) break;  // logged by Admit
    if (conn->timed_out) {
      if (!established) {
        spdlog::info("{}: {} did not complete the TLS handshake within {} ms; closed", opts->name,
                     info.peer_address, opts->handshake_timeout.count());
      } else if (receiving) {
        spdlog::info("{}: {} did not complete a request within {} ms; closed", opts->name,
                     info.peer_address, opts->request_timeout.count());
      } else {
        spdlog::debug("{}: {} idle; closed", opts->name, info.peer_address);
      }
      break;
    }
    if (read_ec) {
      if (!established && read_ec == asio::error::eof) {
        spdlog::info("{}: {} closed the connection during the TLS handshake", opts->name,
                     info.peer_address);
      }
      break;
    }
    if (!conn->received_any) opts->Heard(*conn);
    const bool filled = n == buf.size();
    if (established && !receiving) {
      receiving = true;
      conn->SetDeadline(Steady::now() + opts->request_timeout);
    }
    co_await Run(opts->offload, [&] {
      if (auto fed = connection.FeedCiphertext(ByteSpan(buf.data(), n)); !fed) {
        log_failure(fed.error());
      }
    });
    // A reply that waits for work elsewhere (a certificate status request): wait for its wake-up
    // without holding the thread, within the idle deadline, then let the handler answer.
    bool gave_up = false;
    while (auto pending = connection.pending()) {
      auto wake = std::make_shared<asio::steady_timer>(conn->socket.get_executor());
      auto until = Steady::now() + opts->idle_timeout;
      wake->expires_at(until);
      pending->OnComplete([wake, ex = conn->socket.get_executor()] {
        asio::post(ex, [wake] { wake->cancel(); });
      });
      while (!pending->done() && Steady::now() < until && !conn->closed) {
        co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (!pending->done()) {
        spdlog::warn("{}: a reply to {} was not ready within {} ms; closed", opts->name,
                     info.peer_address, opts->idle_timeout.count());
        gave_up = true;
        break;
      }
      co_await Run(opts->offload, [&] {
        if (auto resumed = connection.Resume(); !resumed) log_failure(resumed.error());
      });
    }
    if (filled && buf.size() < kReadChunk) buf.resize(kReadChunk);
    if (gave_up) break;
    Bytes out = connection.TakeCiphertext();
    if (!out.empty()) receiving = false;
    if (!co_await WriteAll(*conn, out, connection.session().HandshakeComplete())) break;
    if (connection.Finished()) break;
  }
  connection.Close();
}

void Server::Impl::BeginShutdown(std::chrono::milliseconds grace) {
  if (stopping.exchange(true)) return;
  for (auto& acceptor : acceptors) {
    boost::system::error_code ec;
    acceptor.close(ec);
  }
  // Let open connections finish, then stop the loop.
  // The poll holds itself only weakly: the pending wait owns it, so it is freed once it stops
  // rescheduling (a strong self-reference would leak it and the timer).
  auto timer = std::make_shared<asio::steady_timer>(ioc);
  auto deadline = Steady::now() + grace;
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [this, timer, deadline, self = std::weak_ptr<std::function<void()>>(poll)]() {
    if (sessions.load() == 0 || Steady::now() >= deadline) {
      ioc.stop();
      return;
    }
    timer->expires_after(std::chrono::milliseconds(50));
    timer->async_wait([next = self.lock()](const boost::system::error_code&) { (*next)(); });
  };
  asio::post(ioc, [poll] { (*poll)(); });
}

void Server::Run(bool handle_signals, std::chrono::milliseconds grace) {
  std::optional<asio::signal_set> signals;
  if (handle_signals) {
    signals.emplace(impl_->ioc, SIGINT, SIGTERM);
    signals->async_wait([this, grace](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      spdlog::info("received signal {}; shutting down", signo);
      impl_->BeginShutdown(grace);
    });
  }
  impl_->trim_timer.emplace(impl_->ioc);
  impl_->ScheduleTrim();
  // Work guard: keep running while only timers/acceptors exist.
  auto guard = asio::make_work_guard(impl_->ioc);
  std::vector<std::thread> threads;
  for (int i = 1; i < impl_->io_threads; ++i) {
    threads.emplace_back([this] {
      SetThreadName("mte-io");
      impl_->ioc.run();
    });
  }
  impl_->ioc.run();
  for (auto& t : threads) t.join();
  impl_->pool.join();
  spdlog::info("stopped");
}

void Server::Stop() {
  asio::post(impl_->ioc, [this] { impl_->BeginShutdown(std::chrono::seconds(3)); });
}

}  // namespace mte::net
