// mte: the M2M Trust Enabler's operator command (init, serve, admin, demo).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "base/file.h"
#include "base/log.h"
#include "client/https_client.h"
#include "crypto/aead.h"
#include "crypto/crl.h"
#include "crypto/device_cert.h"
#include "crypto/device_pki.h"
#include "crypto/keys.h"
#include "crypto/password.h"
#include "crypto/pki.h"
#include "crypto/random.h"
#include "demo.h"
#include "maf/maf.h"
#include "mef/mef.h"
#include "mef/ocsp_stapler.h"
#include "mef/outbox.h"
#include "mef/rspf/cert/cert_rspf.h"
#include "mef/rspf/ppsk/ppsk_rspf.h"
#include "mte/config.h"
#include "mte/enrolees.h"
#include "mte/lockout.h"
#include "mte/manifest.h"
#include "net/http_fetch.h"
#include "net/server.h"
#include "portal/portal.h"
#include "store/store.h"

namespace fs = std::filesystem;
using namespace mte;

namespace {

int Die(const std::string& message) {
  std::fprintf(stderr, "mte: %s\n", message.c_str());
  return 1;
}

int Die(const Error& error) { return Die(Describe(error)); }

std::string Time(int64_t t) {
  if (t == 0) return "-";
  char buf[32];
  return std::string(FormatRfc3339(t, buf));
}

// ---------------------------------------------------------------- init

struct InitArgs {
  std::string data;
  std::string mef_fqdn;
  std::string maf_fqdn;
  std::string maf_id;
  std::string bind = "127.0.0.1";
  std::string mef_public_host;
  int64_t token_lifetime_seconds = 7LL * 24 * 3600;
  std::vector<std::string> portal_names{"localhost"};
  uint16_t mef_port = 8443, maf_port = 8444, maf_delivery_port = 8445, portal_port = 8446;
  std::string store;  // "" = the embedded SQLite database; or a postgresql:// URI
  bool force = false;
};

int Init(const InitArgs& args) {
  Config config;
  config.data_dir = args.data;
  config.mef_fqdn = args.mef_fqdn;
  config.maf_fqdn = args.maf_fqdn;
  config.maf_id = args.maf_id.empty() ? args.maf_fqdn : args.maf_id;
  config.bind_address = args.bind;
  // Default MEF URI host: the listen address when it is a specific one, else the MEF FQDN.
  config.mef_public_host = !args.mef_public_host.empty() ? args.mef_public_host
                           : (args.bind == "0.0.0.0" || args.bind == "::") ? args.mef_fqdn
                                                                          : args.bind;
  config.token_lifetime_seconds = args.token_lifetime_seconds;
  if (config.token_lifetime_seconds <= 0) return Die("--token-lifetime must be positive");
  config.mef_port = args.mef_port;
  config.maf_port = args.maf_port;
  config.maf_delivery_port = args.maf_delivery_port;
  config.portal_port = args.portal_port;
  config.store = args.store;
  if (auto ok = CheckStoreLocation(config.store); !ok) return Die("--store: " + ok.error().detail);
  for (const auto* id : {&config.mef_fqdn, &config.maf_fqdn, &config.maf_id}) {
    if (auto ok = crypto::CheckIdentifier(*id, "FQDN"); !ok) return Die(ok.error());
    if (id->find('*') != std::string::npos) return Die("wildcard names are not allowed: " + *id);
  }
  std::error_code ec;
  if (fs::exists(args.data, ec) && !fs::is_empty(args.data, ec) && !args.force) {
    return Die(args.data + " exists and is not empty; use --force to replace it");
  }
  // Build everything in a staging directory beside the target and move it into place at the
  // end: a failure leaves nothing behind, and --force replaces the old directory only then.
  fs::path target = fs::absolute(args.data, ec);
  fs::path staging = target;
  staging += ".init-" + std::to_string(::getpid());
  fs::remove_all(staging, ec);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      if (!dir.empty()) fs::remove_all(dir, ignored);
    }
  } cleanup{staging};
  fs::create_directories(staging, ec);
  if (ec) return Die("cannot create " + staging.string() + ": " + ec.message());
  fs::permissions(staging, fs::perms::owner_all, fs::perm_options::replace, ec);
  Config staged = config;
  staged.data_dir = staging;
  crypto::SystemRng rng;
  if (auto ok = crypto::KeyEncryptionKey::CreateFile(staged.kek_file(), rng); !ok) {
    return Die(ok.error());
  }
  std::vector<crypto::LeafSpec> leaves;
  leaves.push_back({"mef", config.mef_fqdn, {config.mef_fqdn}, {}, true, true});
  leaves.push_back({"maf", config.maf_fqdn, {config.maf_fqdn}, {}, true, false});
  crypto::LeafSpec portal{"portal", args.portal_names.front(), {}, {"127.0.0.1", "::1"}, true,
                          false};
  for (const auto& n : args.portal_names) portal.dns_names.push_back(n);
  leaves.push_back(portal);
  if (auto ok = crypto::CreateDevPki(staged.pki_dir(), "OpenMTE development CA", leaves,
                                     std::chrono::system_clock::now());
      !ok) {
    return Die(ok.error());
  }
  {
    // The embedded database is created here; a PostgreSQL database (which the operator created)
    // gets the schema migrations, or is found up to date.
    auto store = store::OpenStore(staged.store_location());
    if (!store) return Die(store.error());
  }
  if (auto ok = SaveConfig(staged); !ok) return Die(ok.error());
  // Into place: an existing directory (--force) is swapped atomically with the new one, which
  // leaves the old one at the staging path for the cleanup. At no moment is there no directory.
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    if (err != ENOENT && err != EINVAL && err != ENOSYS) {
      return Die("cannot replace " + target.string() + ": " + std::strerror(err));
    }
    // No target yet (ENOENT), or a file system without RENAME_EXCHANGE: remove, then rename.
    if (err != ENOENT) {
      fs::remove_all(target, ec);
      if (ec) return Die("cannot replace " + target.string() + ": " + ec.message());
    }
    fs::rename(staging, target, ec);
    if (ec) {
      return Die("cannot move " + staging.string() + " to " + target.string() + ": " +
                 ec.message());
    }
    cleanup.dir.clear();
  }
  auto port = [](uint16_t p) { return p == 0 ? std::string("any free port") : std::to_string(p); };
  std::printf("initialised %s\n", args.data.c_str());
  std::printf("  MEF %s on %s, MAF %s on %s (delivery %s), portal on %s, address %s\n",
              config.mef_fqdn.c_str(), port(config.mef_port).c_str(), config.maf_fqdn.c_str(),
              port(config.maf_port).c_str(), port(config.maf_delivery_port).c_str(),
              port(config.portal_port).c_str(), config.bind_address.c_str());
  if (config.mef_port == 0 || config.portal_port == 0) {
    std::printf("  'mte serve' writes the ports it bound to %s/serve.json\n", args.data.c_str());
  }
  std::printf("  development CA: %s\n", config.ca_cert().c_str());
  return 0;
}

// ---------------------------------------------------------------- serve

// The PEM certificates in a file, one string each (the MEF trust anchors of a token bundle).
Result<std::vector<std::string>> ReadPemCertificates(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "cannot read " + file.string());
  std::vector<std::string> out;
  std::string line, current;
  while (std::getline(in, line)) {
    if (line.rfind("-----BEGIN CERTIFICATE-----", 0) == 0) current.clear();
    current += line + "\n";
    if (line.rfind("-----END CERTIFICATE-----", 0) == 0) out.push_back(current);
  }
  if (out.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no certificate in " + file.string());
  }
  return out;
}

struct Roles {
  bool portal = false, mef = false, maf = false;
};

Result<Roles> ParseRoles(const std::string& text) {
  Roles roles;
  std::stringstream ss(text);
  std::string role;
  while (std::getline(ss, role, ',')) {
    if (role == "portal") roles.portal = true;
    else if (role == "mef") roles.mef = true;
    else if (role == "maf") roles.maf = true;
    else return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                     "unknown role '" + role + "' (use portal, mef, maf)");
  }
  if (!roles.portal && !roles.mef && !roles.maf) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no role given");
  }
  return roles;
}

struct ServeArgs {
  std::string data;
  std::string roles = "portal,mef,maf";
  std::string log_level = "info";
  bool log_json = false;
};

void HardenProcess() {
  // Secrets live in this process: no core dumps, no ptrace by other users.
  rlimit none{0, 0};
  setrlimit(RLIMIT_CORE, &none);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int Serve(const ServeArgs& args) {
  if (auto ok = log::Init(args.log_level, args.log_json ? log::Format::kJson : log::Format::kText);
      !ok) {
    return Die(ok.error());
  }
  HardenProcess();
  auto roles = ParseRoles(args.roles);
  if (!roles) return Die(roles.error());
  auto config = LoadConfig(args.data);
  if (!config) return Die(config.error());
  // One process per role and data directory: a second one would share the store's leases and
  // overwrite serve.json. Held until this process ends.
  std::vector<UniqueFd> role_locks;
  for (auto [name, wanted] : {std::pair{"portal", roles->portal}, std::pair{"mef", roles->mef},
                              std::pair{"maf", roles->maf}}) {
    if (!wanted) continue;
    auto lock = HoldExclusiveLock(config->data_dir / (std::string("serve-") + name + ".lock"));
    if (!lock) {
      auto error = lock.error();
      if (error.code == Errc::kConflict) {
        error.detail = std::string("the ") + name + " role is already running on " + args.data +
                       ": " + error.detail + "; stop it first, or serve another data directory";
      }
      return Die(error);
    }
    role_locks.push_back(std::move(*lock));
  }
  auto kek = crypto::KeyEncryptionKey::LoadFile(config->kek_file());
  if (!kek) return Die(kek.error());
  auto store = store::OpenStore(config->store_location());
  if (!store) return Die(store.error());
  crypto::SystemRng rng;
  SystemClock clock;
  net::Server server(config->io_threads, config->worker_threads);
  // Every listener has the configured deadlines and connection limits (docs/protocol.md §13).
  auto with_limits = [&config](net::ListenerOptions& listener) {
    listener.handshake_timeout = std::chrono::milliseconds(config->handshake_timeout_ms);
    listener.idle_timeout = std::chrono::milliseconds(config->idle_timeout_ms);
    listener.request_timeout = std::chrono::milliseconds(config->request_timeout_ms);
    listener.max_connections = static_cast<size_t>(config->max_connections);
    listener.max_connections_per_address =
        static_cast<size_t>(config->max_connections_per_address);
  };
  nlohmann::json ready = {{"pid", ::getpid()}};
  // Destroyed in reverse order: the stapler, then the fetcher (whose pending callbacks still reach
  // the revocation checker), then the checker.
  std::unique_ptr<mef::RevocationChecker> revocation;
  std::unique_ptr<net::HttpFetcher> fetcher;
  std::unique_ptr<mef::OcspStapler> stapler;

  std::unique_ptr<Maf> maf;
  uint16_t maf_delivery_port = config->maf_delivery_port;
  if (roles->maf) {
    maf = std::make_unique<Maf>(**store, *kek, rng, clock,
                                MafSettings{config->maf_fqdn, config->mef_fqdn});
    crypto::TlsServerOptions psk;
    psk.server_name = config->maf_fqdn;
    psk.psk = true;
    auto psk_ctx = crypto::TlsContext::Server(psk);
    if (!psk_ctx) return Die(psk_ctx.error());
    net::ListenerOptions device;
    device.name = "maf";
    device.address = config->bind_address;
    device.port = config->maf_port;
    device.tls = *psk_ctx;
    device.psk_lookup = [m = maf.get()](std::string_view id) { return m->LookupKm(id); };
    device.handler = [m = maf.get()](const proto::HttpRequest& r, const crypto::TlsEngine& t,
                                     const net::ConnectionInfo&) { return m->HandleDevice(r, t); };
    with_limits(device);
    auto port = server.Listen(std::move(device));
    if (!port) return Die(port.error());
    ready["mafPort"] = *port;

    crypto::TlsServerOptions mtls;
    mtls.server_name = config->maf_fqdn;
    mtls.cert_chain_pem_file = config->cert("maf").string();
    mtls.key_pem_file = config->key("maf").string();
    mtls.client_ca_pem_file = config->ca_cert().string();
    auto mtls_ctx = crypto::TlsContext::Server(mtls);
    if (!mtls_ctx) return Die(mtls_ctx.error());
    net::ListenerOptions delivery;
    delivery.name = "maf-delivery";
    delivery.address = config->bind_address;
    delivery.port = config->maf_delivery_port;
    delivery.tls = *mtls_ctx;
    delivery.handler = [m = maf.get()](const proto::HttpRequest& r, const crypto::TlsEngine& t,
                                       const net::ConnectionInfo&) {
      return m->HandleDelivery(r, t);
    };
    with_limits(delivery);
    auto dport = server.Listen(std::move(delivery));
    if (!dport) return Die(dport.error());
    maf_delivery_port = *dport;
    ready["mafDeliveryPort"] = *dport;
  }

  std::unique_ptr<Mef> mef;
  std::unique_ptr<OutboxWorker> outbox;
  uint16_t mef_port = config->mef_port;
  if (roles->mef) {
    MefSettings settings{config->mef_fqdn, config->maf_id, config->maf_fqdn,
                         config->enrolment_expiry_seconds};
    settings.rspf_preference = config->rspfs;
    mef = std::make_unique<Mef>(**store, *kek, rng, clock, settings);
    // Certificate status requests run on the fetcher's own thread, never on an I/O thread, each
    // within ocspTimeoutMs (RFC 6960 Appendix A over HTTP).
    auto made = net::HttpFetcher::Create();
    if (!made) return Die(made.error());
    fetcher = std::move(*made);
    mef::OcspTransport transport = [f = fetcher.get(),
                                    timeout = std::chrono::milliseconds(config->ocsp_timeout_ms)](
                                       const std::string& url, Bytes body,
                                       std::function<void(Result<Bytes>)> done) {
      net::FetchRequest request;
      request.url = url;
      request.body = std::move(body);
      request.timeout = timeout;
      f->Post(std::move(request), [done = std::move(done)](Result<net::FetchResponse> response) {
        if (!response) return done(Fail(response.error()));
        if (response->status != 200) {
          return done(Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                           "answered HTTP " + std::to_string(response->status)));
        }
        done(std::move(response->body));
      });
    };
    revocation = std::make_unique<mef::RevocationChecker>(transport, rng, clock);
    // Stapling the MEF certificate's own status (RFC 6066 §8), when it has a responder.
    auto staple_url = mef::OcspStapler::ResponderUrl(config->cert("mef").string(),
                                                     config->mef_ocsp_url);
    if (!staple_url) return Die(staple_url.error());
    crypto::OcspStapleSource staple;
    if (!staple_url->empty()) {
      auto made_stapler = mef::OcspStapler::Create(config->cert("mef").string(),
                                                   config->ca_cert().string(), *staple_url,
                                                   transport, rng, clock);
      if (!made_stapler) return Die(made_stapler.error());
      stapler = std::move(*made_stapler);
      if (auto first = stapler->RefreshNow(); !first) {
        spdlog::warn("mef: no OCSP staple yet from {}: {}", *staple_url, Describe(first.error()));
      } else {
        spdlog::info("mef: stapling the MEF certificate's OCSP status from {}", *staple_url);
      }
      stapler->Start();
      staple = [s = stapler.get()] { return s->Current(); };
    }
    for (const auto& name : config->rspfs) {
      if (name == "PPSK") {
        auto ppsk = mef::PpskRspf::Create(**store, *kek, config->mef_fqdn);
        if (!ppsk) return Die(ppsk.error());
        mef->AddRspf(std::move(*ppsk));
      } else if (name == "CERT") {
        mef::CertRspfOptions cert;
        cert.mef_fqdn = config->mef_fqdn;
        cert.cert_chain_pem_file = config->cert("mef").string();
        cert.key_pem_file = config->key("mef").string();
        cert.ocsp_staple = staple;
        auto rspf = mef::CertRspf::Create(**store, *revocation, cert);
        if (!rspf) return Die(rspf.error());
        mef->AddRspf(std::move(*rspf));
      }
    }
    // One MEF port: server-authenticated TLS with the MEF's FQDN certificate (the outer session
    // of Flow B), plus what each RSPF adds for Flow A (PPSK: TLS-PSK, psk_identity = KpmID;
    // CERT: a CertificateRequest).
    crypto::TlsServerOptions outer;
    outer.server_name = config->mef_fqdn;
    outer.cert_chain_pem_file = config->cert("mef").string();
    outer.key_pem_file = config->key("mef").string();
    outer.ocsp_staple = staple;
    mef->ConfigureDirect(outer);
    auto ctx = crypto::TlsContext::Server(outer);
    if (!ctx) return Die(ctx.error());
    net::ListenerOptions listener;
    listener.name = "mef";
    listener.address = config->bind_address;
    listener.port = config->mef_port;
    listener.tls = *ctx;
    listener.psk_lookup = [m = mef.get()](std::string_view id) { return m->LookupPsk(id); };
    listener.connection_factory = [m = mef.get()](const net::ConnectionInfo& info) {
      return m->NewConnection(info.peer_address);
    };
    with_limits(listener);
    auto port = server.Listen(std::move(listener));
    if (!port) return Die(port.error());
    ready["mefPort"] = *port;
    mef_port = *port;

    // MEF -> MAF delivery client: mutual TLS with the MEF's certificate.
    crypto::TlsClientOptions client;
    client.server_name = config->maf_fqdn;
    client.trust_pem_file = config->ca_cert().string();
    client.cert_chain_pem_file = config->cert("mef").string();
    client.key_pem_file = config->key("mef").string();
    auto client_ctx = crypto::TlsContext::Client(client);
    if (!client_ctx) return Die(client_ctx.error());
    if (maf_delivery_port == 0) {
      return Die("the MAF runs in another process but mafDeliveryPort is 0 in " +
                 config->config_file().string() + ": set the port the MAF listens on");
    }
    client::Endpoint endpoint{config->maf_delivery_host, maf_delivery_port};
    std::string maf_host = config->maf_fqdn;
    std::string mef_fqdn = config->mef_fqdn;
    // One persistent mutual-TLS connection, used only by the outbox thread: one handshake for
    // many deliveries (deliveries are idempotent, so a resend after a dead connection is safe).
    auto connection = std::make_shared<client::KeepAliveClient>(
        endpoint, [ctx = *client_ctx] { return crypto::TlsEngine::Client(ctx); },
        std::chrono::seconds(10));
    // One delivery request (docs/protocol.md §10.1) to `target` with `body`, which is wiped.
    auto post = [connection, maf_host, mef_fqdn](const char* target, std::string body) {
      proto::HttpRequest request;
      request.method = "POST";
      request.target = target;
      request.headers.Set("Host", maf_host);
      request.headers.Set("Content-Type", "application/json");
      request.headers.Set("X-M2M-Origin", mef_fqdn);
      request.headers.Set("X-M2M-RVI", "3");
      request.body = std::move(body);
      auto response = connection->RoundTrip(request);
      SecureWipe(request.body.data(), request.body.size());
      return response;
    };
    DeliverFn deliver_one = [post](const SecretBytes& payload) -> Result<void> {
      auto response = post("/maf/v1/credentials",
                           std::string(AsText(payload.Expose(SecretAccess::ForCrypto()))));
      if (!response) return Fail(response.error());
      return DeliveryResult(response->status, response->body);
    };
    // A batch is one request and one durable commit at the MAF for all its items (§10.5). A MAF
    // that does not know batches (404) is sent single deliveries from then on.
    auto batches = std::make_shared<bool>(true);
    DeliverBatchFn deliver = [post, deliver_one,
                              batches](const std::vector<SecretBytes>& payloads) -> BatchOutcome {
      if (payloads.size() < 2 || !*batches) return DeliverEach(deliver_one, payloads);
      auto response = post("/maf/v1/credentials/batch", BatchBody(payloads));
      if (!response) return {{Fail(response.error())}, true};
      if (response->status == 404) {
        spdlog::warn("outbox: the MAF does not take batches (HTTP 404); delivering one by one");
        *batches = false;
      }
      auto outcome = BatchResult(response->status, response->body, payloads.size());
      return outcome ? std::move(*outcome) : DeliverEach(deliver_one, payloads);
    };
    outbox = std::make_unique<OutboxWorker>(**store, *kek, clock, deliver);
    // A PostgreSQL store may have several MEF processes: each pass claims its items.
    if (!config->store.empty()) outbox->set_claim_lease(config->outbox_lease_seconds);
    mef->set_on_commit([o = outbox.get()] { o->Wake(); });
  }

  std::unique_ptr<Portal> portal;
  if (roles->portal) {
    PortalSettings settings;
    settings.session_seconds = config->portal_session_seconds;
    settings.token_seconds = config->token_lifetime_seconds;
    settings.mef_fqdn = config->mef_fqdn;
    std::string host = config->mef_public_host;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    settings.mef_uri = "https://" + host + ":" + std::to_string(mef_port);
    auto anchors = ReadPemCertificates(config->ca_cert());
    if (!anchors) return Die(anchors.error());
    settings.mef_trust_anchors = std::move(*anchors);
    portal = std::make_unique<Portal>(**store, *kek, rng, clock, settings);
    crypto::TlsServerOptions tls;
    tls.server_name = "portal";
    tls.require_sni = false;
    tls.cert_chain_pem_file = config->cert("portal").string();
    tls.key_pem_file = config->key("portal").string();
    auto ctx = crypto::TlsContext::Server(tls);
    if (!ctx) return Die(ctx.error());
    net::ListenerOptions listener;
    listener.name = "portal";
    listener.address = config->bind_address;
    listener.port = config->portal_port;
    listener.tls = *ctx;
    listener.handler = [p = portal.get()](const proto::HttpRequest& r, const crypto::TlsEngine&,
                                          const net::ConnectionInfo& info) {
      return p->Handle(r, info.peer_address);
    };
    listener.offload = true;  // login runs Argon2id
    with_limits(listener);
    auto port = server.Listen(std::move(listener));
    if (!port) return Die(port.error());
    ready["portalPort"] = *port;
  }

  if (outbox) outbox->Start();
  // Readiness file for scripts and tests: the bound ports (useful with port 0).
  fs::path ready_file = config->data_dir / "serve.json";
  {
    std::ofstream out(ready_file.string() + ".tmp");
    out << ready.dump() << "\n";
  }
  fs::rename(ready_file.string() + ".tmp", ready_file);
  spdlog::info("serving roles {} from {}: {}", args.roles, args.data, ready.dump());
  server.Run(/*handle_signals=*/true);
  if (outbox) outbox->Stop();
  // Removed only while it is still ours (a process serving other roles may have replaced it).
  auto current = ReadBoundedFile(ready_file, 4096);
  auto written = current ? nlohmann::json::parse(*current, nullptr, false) : nlohmann::json();
  if (written.is_object() && written.value("pid", 0) == ::getpid()) {
    std::error_code ec;
    fs::remove(ready_file, ec);
  }
  return 0;
}

// ---------------------------------------------------------------- admin

struct AdminContext {
  Config config;
  std::unique_ptr<store::Store> store;
};

Result<AdminContext> OpenAdmin(const std::string& data) {
  MTE_TRY_ASSIGN(auto config, LoadConfig(data));
  MTE_TRY_ASSIGN(auto store, store::OpenStore(config.store_location()));
  return AdminContext{std::move(config), std::move(store)};
}

// The manufacturer manifest (docs/protocol.md §16.1, mte/manifest.h): all of it or nothing.
int ImportDevices(const std::string& data, const std::string& file) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto kek = crypto::KeyEncryptionKey::LoadFile(ctx->config.kek_file());
  if (!kek) return Die(kek.error());
  std::ifstream in(file);
  if (!in) return Die("cannot read " + file);
  std::stringstream text;
  text << in.rdbuf();
  auto manifest = ParseManifest(text.str());
  if (!manifest) return Die(file + ": " + manifest.error().detail + "; nothing imported");
  if (!manifest->problems.empty()) {
    for (const auto& p : manifest->problems) {
      std::fprintf(stderr, "mte: %s: %s\n", file.c_str(), p.c_str());
    }
    return Die(std::to_string(manifest->problems.size()) + " problem(s); nothing imported");
  }
  crypto::SystemRng rng;
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  std::vector<store::DeviceRecord> records;
  size_t kpm_count = 0, cert_count = 0, spki_count = 0;
  for (auto& entry : manifest->devices) {
    store::DeviceRecord record;
    record.device_id = entry.device_id;
    if (!entry.kpm_id.empty()) {
      auto sealed = kek->Seal(entry.kpm, "kpm|" + entry.device_id, rng);
      if (!sealed) return Die(sealed.error());
      record.credentials.push_back(
          {store::CredentialKind::kKpm, entry.kpm_id, std::move(*sealed)});
      ++kpm_count;
    }
    if (!entry.cert_sha256.empty()) {
      record.credentials.push_back({store::CredentialKind::kCertSha256, entry.cert_sha256, {}});
      ++cert_count;
    }
    if (!entry.spki_sha256.empty()) {
      record.credentials.push_back({store::CredentialKind::kSpkiSha256, entry.spki_sha256, {}});
      ++spki_count;
    }
    SecretString claim(std::move(entry.claim_code));
    auto hash = crypto::HashPassword(claim, rng);
    if (!hash) return Die(hash.error());
    record.claim_hash = std::move(*hash);
    record.created_at = now;
    records.push_back(std::move(record));
  }
  const std::string counts = std::to_string(kpm_count) + " kpm, " + std::to_string(cert_count) +
                             " cert-sha256, " + std::to_string(spki_count) + " spki-sha256";
  if (auto ok = ctx->store->ImportDevices(
          records, {0, now, "admin", "device.import",
                    std::to_string(records.size()) + " devices from " + file, counts});
      !ok) {
    return Die(Describe(ok.error()) + "; nothing imported");
  }
  std::printf("imported %zu device(s) (credentials: %s)\n", records.size(), counts.c_str());
  return 0;
}

// ---------------------------------------------------------------- device CAs


// The default name of a device CA: its commonName with every character outside [A-Za-z0-9._-]
// replaced by '-', else "ca-" and the first 8 hex digits of its SHA-256.
std::string DefaultDeviceCaName(const std::string& common_name, const std::string& sha256) {
  std::string name;
  for (const char c : common_name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (ok) {
      name += c;
    } else if (name.empty() || name.back() != '-') {
      name += '-';  // one '-' per run of other characters (and per multi-byte UTF-8 character)
    }
  }
  while (!name.empty() && name.front() == '-') name.erase(name.begin());
  if (name.size() > store::kMaxDeviceCaNameLength) name.resize(store::kMaxDeviceCaNameLength);
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name.empty() ? "ca-" + sha256.substr(0, 8) : name;
}

// An operator-configured OCSP responder: http:// (RFC 6960 Appendix A.1), printable ASCII
// without spaces, a host, at most 2048 characters.
bool IsOcspUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() > 2048 || url.size() <= kScheme.size() || url.rfind(kScheme, 0) != 0) {
    return false;
  }
  for (const char c : url) {
    if (c <= ' ' || c > '~') return false;
  }
  return url[kScheme.size()] != '/';
}

struct DeviceCaArgs {
  std::string file;
  std::string name;
  std::string ocsp_url;
  std::string crl;
  int max_chain_depth = 2;
  bool ocsp_fail_open = false;
};

int AddDeviceCa(const std::string& data, const DeviceCaArgs& args) {
  auto pem = ReadBoundedFile(args.file, crypto::kMaxPemFileSize);
  if (!pem) return Die(pem.error());
  auto ca_cert = crypto::ReadDeviceCaCertificate(*pem);
  if (!ca_cert) return Die(args.file + ": " + ca_cert.error().detail);
  store::DeviceCaRecord ca;
  ca.cert_sha256 = ca_cert->facts.cert_sha256;
  ca.name = args.name.empty() ? DefaultDeviceCaName(ca_cert->common_name, ca.cert_sha256)
                              : args.name;
  // The PEM block alone, without whatever text surrounded it in the file.
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  const size_t begin = pem->find("-----BEGIN CERTIFICATE-----");
  const size_t end = pem->find(kEnd, begin);
  if (begin == std::string::npos || end == std::string::npos) {
    return Die(args.file + ": no PEM certificate block");
  }
  ca.cert_pem = pem->substr(begin, end + kEnd.size() - begin) + "\n";
  if (!args.ocsp_url.empty()) {
    if (!IsOcspUrl(args.ocsp_url)) {
      return Die("--ocsp-url must be an http:// URL with a host, printable ASCII without spaces");
    }
    ca.ocsp_url = args.ocsp_url;
  }
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  if (!args.crl.empty()) {
    std::error_code ec;
    const fs::path crl = fs::absolute(args.crl, ec).lexically_normal();
    if (ec) return Die("--crl " + args.crl + ": " + ec.message());
    auto bytes = ReadBoundedFile(crl.string(), crypto::kMaxCrlSize);
    if (!bytes) return Die(bytes.error());
    // RFC 5280 §6.3.3: the CRL must be this CA's, correctly signed and current.
    auto parsed = crypto::Crl::Parse(AsBytes(*bytes), ca_cert->der, now);
    if (!parsed) return Die("--crl " + crl.string() + ": " + parsed.error().detail);
    ca.crl_file = crl.string();
  }
  ca.max_chain_depth = args.max_chain_depth;
  ca.ocsp_fail_open = args.ocsp_fail_open;
  ca.created_at = now;
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  std::string detail = "sha256 " + ca.cert_sha256 + ", max chain depth " +
                       std::to_string(ca.max_chain_depth);
  if (!ca.ocsp_url.empty()) detail += ", OCSP " + ca.ocsp_url;
  if (!ca.crl_file.empty()) detail += ", CRL " + ca.crl_file;
  if (ca.ocsp_fail_open) {
    detail += ", OCSP FAIL-OPEN: devices are accepted when no revocation status can be had";
  }
  if (auto ok = ctx->store->AddDeviceCa(ca, {0, now, "admin", "device-ca.add", ca.name, detail});
      !ok) {
    return Die(ok.error());
  }
  if (ca.ocsp_fail_open) {
    std::fprintf(stderr, "mte: warning: device CA %s is OCSP fail-open: its devices are accepted "
                         "when no revocation status can be had\n",
                 ca.name.c_str());
  }
  std::printf("added device CA %s (sha256 %s)\n", ca.name.c_str(), ca.cert_sha256.c_str());
  return 0;
}

int ListDeviceCas(const std::string& data, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto list = ctx->store->ListDeviceCas();
  if (!list) return Die(list.error());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& ca : *list) {
      out.push_back({{"name", ca.name},
                     {"certSha256", ca.cert_sha256},
                     {"ocspUrl", ca.ocsp_url},
                     {"crlFile", ca.crl_file},
                     {"maxChainDepth", ca.max_chain_depth},
                     {"ocspFailOpen", ca.ocsp_fail_open},
                     {"createdAt", ca.created_at},
                     {"certPem", ca.cert_pem}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-24s %-16s %-32s %-32s %-5s %s\n", "NAME", "SHA256", "OCSP URL", "CRL", "DEPTH",
              "FAIL-OPEN");
  for (const auto& ca : *list) {
    std::printf("%-24s %-16s %-32s %-32s %-5d %s\n", ca.name.c_str(),
                ca.cert_sha256.substr(0, 16).c_str(),
                ca.ocsp_url.empty() ? "-" : ca.ocsp_url.c_str(),
                ca.crl_file.empty() ? "-" : ca.crl_file.c_str(), ca.max_chain_depth,
                ca.ocsp_fail_open ? "yes" : "no");
  }
  return 0;
}

int RemoveDeviceCa(const std::string& data, const std::string& name) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  if (auto ok = ctx->store->RemoveDeviceCa(name, {0, now, "admin", "device-ca.remove", name, ""});
      !ok) {
    return Die(ok.error());
  }
  std::printf("removed device CA %s\n", name.c_str());
  return 0;
}

// ---------------------------------------------------------------- development device PKI

int InitDeviceCa(const std::string& out, const std::string& name) {
  if (auto ok = crypto::CreateDeviceCa(out, name, std::chrono::system_clock::now()); !ok) {
    return Die(ok.error());
  }
  const std::string cert = (fs::path(out) / "ca.crt").string();
  auto pem = ReadBoundedFile(cert, crypto::kMaxPemFileSize);
  if (!pem) return Die(pem.error());
  auto facts = crypto::DescribePemCertificate(*pem);
  if (!facts) return Die(cert + ": " + facts.error().detail);
  std::printf("created device CA '%s': %s, %s (sha256 %s)\n", name.c_str(), cert.c_str(),
              (fs::path(out) / "ca.key").c_str(), facts->cert_sha256.c_str());
  return 0;
}

int RevokeDevice(const std::string& ca, const std::string& cert, int valid_days) {
  if (auto ok = crypto::RevokeDeviceCert(ca, cert, std::chrono::system_clock::now(), valid_days);
      !ok) {
    return Die(ok.error());
  }
  std::printf("%s%s (valid %d days)\n",
              cert.empty() ? "reissued " : ("revoked " + cert + "; wrote ").c_str(),
              (fs::path(ca) / "crl.pem").c_str(), valid_days);
  return 0;
}

struct IssueDeviceArgs {
  std::string ca;
  std::string device_id;
  std::string out;
  std::string ocsp_url;
  int64_t valid_days = 730;
};

int IssueDevice(const IssueDeviceArgs& args) {
  if (!args.ocsp_url.empty() && !IsOcspUrl(args.ocsp_url)) {
    return Die("--ocsp-url must be an http:// URL with a host, printable ASCII without spaces");
  }
  crypto::DeviceCertSpec spec;
  spec.device_id = args.device_id;
  spec.ocsp_url = args.ocsp_url;
  spec.valid_seconds = args.valid_days * 86400;
  if (auto ok = crypto::IssueDeviceCert(args.ca, spec, args.out, std::chrono::system_clock::now());
      !ok) {
    return Die(ok.error());
  }
  const std::string cert = (fs::path(args.out) / "device.crt").string();
  auto pem = ReadBoundedFile(cert, crypto::kMaxPemFileSize);
  if (!pem) return Die(pem.error());
  auto facts = crypto::DescribePemCertificate(*pem);
  if (!facts) return Die(cert + ": " + facts.error().detail);
  std::printf("issued device certificate for %s: %s, %s\n", args.device_id.c_str(), cert.c_str(),
              (fs::path(args.out) / "device.key").c_str());
  std::printf("certSha256 %s\n", facts->cert_sha256.c_str());
  std::printf("spkiSha256 %s\n", facts->spki_sha256.c_str());
  return 0;
}

std::string ReadSecretLine(const char* what) {
  std::string line;
  std::getline(std::cin, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  (void)what;
  return line;
}

// A new password from standard input, checked and hashed (Argon2id).
Result<std::string> NewPasswordHash() {
  SecretString password(ReadSecretLine("password"));
  if (password.size() < 8 || password.size() > 256) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "password must be 8..256 characters");
  }
  crypto::SystemRng rng;
  return crypto::HashPassword(password, rng);
}

int AddStakeholder(const std::string& data, const std::string& name, bool password_stdin,
                   bool is_admin) {
  if (!password_stdin) return Die("give the password on standard input with --password-stdin");
  if (auto v = crypto::CheckIdentifier(name, "stakeholder name"); !v || name.size() > 64) {
    return Die("stakeholder name must be 1..64 printable ASCII characters without spaces");
  }
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto hash = NewPasswordHash();
  if (!hash) return Die(hash.error());
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  auto id = ctx->store->AddStakeholder(name, *hash, now,
                                      {0, now, "admin", "stakeholder.add", name, ""});
  if (!id) return Die(id.error());
  if (is_admin) {
    if (auto ok = ctx->store->SetStakeholderAdmin(name, true,
                                                  {0, now, "admin", "stakeholder.admin", name, "on"});
        !ok) {
      return Die(ok.error());
    }
  }
  std::printf("added %s %s (id %lld)\n", is_admin ? "administrator" : "stakeholder", name.c_str(),
              static_cast<long long>(*id));
  return 0;
}

int SetStakeholderPassword(const std::string& data, const std::string& name,
                           bool password_stdin) {
  if (!password_stdin) return Die("give the password on standard input with --password-stdin");
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto hash = NewPasswordHash();
  if (!hash) return Die(hash.error());
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  if (auto ok = ctx->store->SetStakeholderPassword(
          name, *hash, {0, now, "admin", "stakeholder.passwd", name, "sessions ended"});
      !ok) {
    return Die(ok.error());
  }
  std::printf("changed the password of %s; its sessions have ended\n", name.c_str());
  return 0;
}

int RemoveStakeholder(const std::string& data, const std::string& name) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  if (auto ok = ctx->store->RemoveStakeholder(name, {0, now, "admin", "stakeholder.remove", name, ""});
      !ok) {
    return Die(ok.error());
  }
  std::printf("removed stakeholder %s\n", name.c_str());
  return 0;
}

int ResetStakeholderTotp(const std::string& data, const std::string& name) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto who = ctx->store->FindStakeholder(name);
  if (!who) return Die(who.error());
  if (!*who) return Die("stakeholder " + name + " not found");
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  auto removed = ctx->store->RemoveTotp(
      (*who)->id, {0, now, "admin", "totp.reset", "stakeholder " + name,
                   "two-step sign-in turned off by an operator"});
  if (!removed) return Die(removed.error());
  std::printf(*removed ? "turned off two-step sign-in for %s; it signs in with the password alone\n"
                       : "%s has no two-step sign-in; nothing changed\n",
              name.c_str());
  return 0;
}

int DeleteEnroleeCommand(const std::string& data, int64_t id) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto enrolee = ctx->store->GetEnrolee(id);
  if (!enrolee) return Die(enrolee.error());
  if (!*enrolee) return Die("enrolee " + std::to_string(id) + " not found");
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  if (auto ok = DeleteEnrolee(*ctx->store, **enrolee, now, "admin"); !ok) {
    return Die(ok.error());
  }
  std::printf("deleted enrolee %lld\n", static_cast<long long>(id));
  return 0;
}

int AddEnrolee(const std::string& data, const std::string& stakeholder_name,
               const std::string& device, std::string claim_code, bool claim_stdin,
               const std::string& label) {
  if (claim_stdin) claim_code = ReadSecretLine("claim code");
  if (claim_code.empty()) return Die("give --claim-code CODE or --claim-code-stdin");
  SecretString code(std::move(claim_code));
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto who = ctx->store->FindStakeholder(stakeholder_name);
  if (!who) return Die(who.error());
  if (!who->has_value()) return Die("no stakeholder named '" + stakeholder_name + "'");
  int64_t now = UnixSeconds(std::chrono::system_clock::now());
  auto enrolee = ClaimDevice(*ctx->store, **who, device, code, label, now);
  if (!enrolee) return Die(enrolee.error());
  std::printf("added enrolee %lld for device %s (stakeholder %s)\n",
              static_cast<long long>(enrolee->id), enrolee->device_id.c_str(),
              stakeholder_name.c_str());
  return 0;
}

int RevokeEnroleeCommand(const std::string& data, int64_t id, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto kek = crypto::KeyEncryptionKey::LoadFile(ctx->config.kek_file());
  if (!kek) return Die(kek.error());
  crypto::SystemRng rng;
  auto revoked = RevokeEnrolee(*ctx->store, *kek, rng, id,
                               UnixSeconds(std::chrono::system_clock::now()), "admin", "");
  if (!revoked) return Die(revoked.error());
  if (json) {
    std::printf("%s\n", EnroleeJson(revoked->enrolee).dump(2).c_str());
  } else if (revoked->revoked_now) {
    std::printf("revoked enrolee %lld%s; %s\n", static_cast<long long>(id),
                revoked->enrolee.device_id.empty()
                    ? ""
                    : (" (device " + revoked->enrolee.device_id + ")").c_str(),
                revoked->enrolee.maf_delivery == store::DeliveryStatus::kPending
                    ? "the MAF retires its Km when the outbox delivers"
                    : "it had nothing at the MAF");
  } else {
    std::printf("enrolee %lld was already revoked\n", static_cast<long long>(id));
  }
  return 0;
}

int ListEnrolees(const std::string& data, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto list = ctx->store->ListEnrolees(std::nullopt);
  if (!list) return Die(list.error());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : *list) out.push_back(EnroleeJson(e));
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-4s %-20s %-16s %-12s %-9s %-9s %-50s %s\n", "ID", "DEVICE", "LABEL",
              "STAKEHOLDER", "STATE", "MAF", "KEID", "ENROLLED");
  auto fit = [](const std::string& text, size_t width) {
    if (text.empty()) return std::string("-");
    return text.size() <= width ? text : text.substr(0, width - 3) + "...";
  };
  for (const auto& e : *list) {
    std::printf("%-4lld %-20s %-16s %-12s %-9s %-9s %-50s %s\n", static_cast<long long>(e.id),
                fit(e.device_id, 20).c_str(), fit(e.label, 16).c_str(),
                fit(e.stakeholder_name, 12).c_str(),
                std::string(store::ToString(e.state)).c_str(),
                std::string(store::ToString(e.maf_delivery)).c_str(),
                e.ke_id.empty() ? "-" : e.ke_id.c_str(), Time(e.enrolled_at).c_str());
    for (const auto& c : e.credential_ids) std::printf("     credential %s\n", c.c_str());
  }
  return 0;
}

// `--since`/`--until`: Unix seconds, or RFC 3339 UTC ("2026-12-03T10:00:00Z").
std::optional<int64_t> ParseTimeArg(const std::string& text) {
  if (text.empty()) return std::nullopt;
  if (text.find_first_not_of("0123456789") == std::string::npos && text.size() <= 12) {
    return std::stoll(text);
  }
  std::tm tm{};
  char zone = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &zone, &consumed) != 7 ||
      zone != 'Z' || static_cast<size_t>(consumed) != text.size()) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm));
}

struct AuditFilter {
  std::string action;   // prefix, e.g. "enrolee." or "enrolment.commit"
  std::string actor;    // exact
  std::string subject;  // substring
  std::string since, until;
  bool json = false;
};

int ListAudit(const std::string& data, const AuditFilter& filter) {
  const auto since = ParseTimeArg(filter.since), until = ParseTimeArg(filter.until);
  if ((!filter.since.empty() && !since) || (!filter.until.empty() && !until)) {
    return Die("audit list: --since/--until take Unix seconds or RFC 3339 UTC "
               "(2026-12-03T10:00:00Z)");
  }
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto list = ctx->store->ListAudit();
  if (!list) return Die(list.error());
  for (const auto& a : *list) {
    if (a.action.rfind(filter.action, 0) != 0) continue;
    if (!filter.actor.empty() && a.actor != filter.actor) continue;
    if (a.subject.find(filter.subject) == std::string::npos) continue;
    if ((since && a.at < *since) || (until && a.at > *until)) continue;
    if (filter.json) {
      std::printf("%s\n", AuditEntryJson(a).dump().c_str());
    } else {
      std::printf("%s %-22s %-24s %s %s\n", Time(a.at).c_str(), a.actor.c_str(),
                  a.action.c_str(), a.subject.c_str(), a.detail.c_str());
    }
  }
  return 0;
}

int ListDevices(const std::string& data, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto devices = ctx->store->ListDevices();
  if (!devices) return Die(devices.error());
  auto enrolees = ctx->store->ListEnrolees(std::nullopt);
  if (!enrolees) return Die(enrolees.error());
  std::map<std::string, const store::EnroleeRecord*> by_device;
  for (const auto& e : *enrolees) {
    if (!e.device_id.empty()) by_device[e.device_id] = &e;
  }
  nlohmann::json out = nlohmann::json::array();
  if (!json) {
    std::printf("%-24s %-9s %-12s %-20s %s\n", "DEVICE", "ENROLEE", "STATE", "ADDED",
                "CREDENTIALS");
  }
  for (const auto& d : *devices) {
    auto it = by_device.find(d.device_id);
    const store::EnroleeRecord* e = it == by_device.end() ? nullptr : it->second;
    nlohmann::json credentials = nlohmann::json::array();
    std::string listed;
    for (const auto& c : d.credentials) {  // identifiers only, never the sealed secret
      credentials.push_back({{"kind", std::string(store::ToString(c.kind))}, {"id", c.id}});
      listed += (listed.empty() ? "" : " ") + std::string(store::ToString(c.kind)) + ":" +
                (c.kind == store::CredentialKind::kKpm ? c.id : c.id.substr(0, 16) + "...");
    }
    if (json) {
      out.push_back({{"deviceId", d.device_id},
                     {"credentials", credentials},
                     {"enroleeId", e ? nlohmann::json(e->id) : nlohmann::json(nullptr)},
                     {"state", e ? std::string(store::ToString(e->state)) : "unclaimed"},
                     {"createdAt", Time(d.created_at)}});
    } else {
      std::printf("%-24s %-9s %-12s %-20s %s\n", d.device_id.c_str(),
                  e ? std::to_string(e->id).c_str() : "-",
                  e ? std::string(store::ToString(e->state)).c_str() : "unclaimed",
                  Time(d.created_at).c_str(), listed.c_str());
    }
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int ListStakeholders(const std::string& data, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto stakeholders = ctx->store->ListStakeholders();
  if (!stakeholders) return Die(stakeholders.error());
  auto enrolees = ctx->store->ListEnrolees(std::nullopt);
  if (!enrolees) return Die(enrolees.error());
  std::map<int64_t, int> count;
  for (const auto& e : *enrolees) ++count[e.stakeholder_id];
  nlohmann::json out = nlohmann::json::array();
  if (!json) {
    std::printf("%-4s %-32s %-6s %-5s %-8s %s\n", "ID", "NAME", "ADMIN", "TOTP", "ENROLEES",
                "CREATED");
  }
  for (const auto& s : *stakeholders) {  // never the password hash or the TOTP secret
    auto totp = ctx->store->FindTotp(s.id);
    if (!totp) return Die(totp.error());
    const bool totp_on = totp->has_value() && (*totp)->confirmed;
    if (json) {
      out.push_back({{"id", s.id},
                     {"name", s.name},
                     {"admin", s.is_admin},
                     {"totp", totp_on},
                     {"enrolees", count[s.id]},
                     {"createdAt", Time(s.created_at)}});
    } else {
      std::printf("%-4lld %-32s %-6s %-5s %-8d %s\n", static_cast<long long>(s.id),
                  s.name.c_str(), s.is_admin ? "yes" : "no", totp_on ? "on" : "off", count[s.id],
                  Time(s.created_at).c_str());
    }
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

// The lockout keys of an account or an address (docs/protocol.md §9.4, §12): its login and its
// claim failures, and for an address also its Enrolment-Token guesses at the MEF.
std::vector<std::string> LockoutKeys(const std::string& account, const std::string& address) {
  if (!account.empty()) return {"account:" + account, "claim-account:" + account};
  return {"address:" + address, "claim:" + address, "mef-address:" + address};
}

// An IP address in the text form the portal records (RFC 5952 for IPv6); empty if it is none.
std::string CanonicalAddress(const std::string& text) {
  unsigned char buf[sizeof(struct in6_addr)];
  char out[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, text.c_str(), buf) == 1 &&
        inet_ntop(family, buf, out, sizeof out) != nullptr) {
      return out;
    }
  }
  return "";
}

int ListLockouts(const std::string& data, bool json) {
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  auto records = ctx->store->ListFailures();
  if (!records) return Die(records.error());
  const int64_t now = UnixSeconds(std::chrono::system_clock::now());
  nlohmann::json out = nlohmann::json::array();
  if (!json) std::printf("%-40s %-8s %-6s %-9s %s\n", "KEY", "FAILURES", "LOCKS", "RETRY(s)",
                         "LAST FAILURE");
  for (const auto& [key, r] : *records) {
    const int64_t retry = FailurePolicy::RetryAfter(r, now);
    if (json) {
      out.push_back({{"key", key},
                     {"failures", r.count},
                     {"locks", r.locks},
                     {"locked", retry > 0},
                     {"retryAfterSeconds", retry},
                     {"lastFailureAt", Time(r.last_failure)}});
    } else {
      std::printf("%-40s %-8d %-6d %-9lld %s\n", log::Printable(key).c_str(), r.count, r.locks,
                  static_cast<long long>(retry), Time(r.last_failure).c_str());
    }
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int ClearLockout(const std::string& data, const std::string& account, std::string address,
                 bool json) {
  if (account.empty() == address.empty()) return Die("give --account NAME or --address IP");
  if (!address.empty()) {
    std::string canonical = CanonicalAddress(address);
    if (canonical.empty()) return Die("--address: not an IPv4 or IPv6 address");
    address = canonical;
  }
  auto ctx = OpenAdmin(data);
  if (!ctx) return Die(ctx.error());
  const int64_t now = UnixSeconds(std::chrono::system_clock::now());
  const std::string subject = account.empty() ? "address " + address : "account " + account;
  auto cleared = ctx->store->ClearFailures(LockoutKeys(account, address),
                                           {0, now, "admin", "lockout.clear", subject, ""});
  if (!cleared) return Die(cleared.error());
  if (json) {
    std::printf("%s\n", nlohmann::json{{"cleared", *cleared}, {"subject", subject}}.dump(2).c_str());
  } else {
    std::printf("cleared %d failure record%s of %s\n", *cleared, *cleared == 1 ? "" : "s",
                log::Printable(subject).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mte: OpenMTE M2M Trust Enabler (Enrolment Portal, MEF, MAF) for oneM2M enrolment"};
  app.require_subcommand(1);

  InitArgs init;
  auto* init_cmd = app.add_subcommand(
      "init", "Create a data directory: config, key-encryption key (0600), development CA with\n"
              "P-256 FQDN certificates for MEF, MAF and portal, and an empty SQLite store.");
  init_cmd->add_option("--data", init.data, "data directory")->required();
  init_cmd->add_option("--mef-fqdn", init.mef_fqdn, "MEF FQDN (SNI, certificate SAN, KeID domain)")
      ->required();
  init_cmd->add_option("--maf-fqdn", init.maf_fqdn, "MAF FQDN (SNI, certificate SAN)")->required();
  init_cmd->add_option("--maf-id", init.maf_id, "MAF-ID for Km derivation (default: MAF FQDN)");
  init_cmd->add_option("--mef-port", init.mef_port, "MEF port (0 = any free port)")
      ->default_val(8443);
  init_cmd->add_option("--maf-port", init.maf_port, "MAF handshake port")->default_val(8444);
  init_cmd->add_option("--maf-delivery-port", init.maf_delivery_port,
                       "MAF credential delivery port (mutual TLS)")
      ->default_val(8445);
  init_cmd->add_option("--portal-port", init.portal_port, "portal HTTPS port")->default_val(8446);
  init_cmd->add_option("--bind", init.bind, "listen address")->default_val("127.0.0.1");
  init_cmd->add_option("--portal-name", init.portal_names, "portal certificate DNS names")
      ->default_val(std::vector<std::string>{"localhost"});
  init_cmd->add_option("--mef-public-host", init.mef_public_host,
                       "host of the MEF URI in Flow B bundles (default: --bind unless it is a "
                       "wildcard, then the MEF FQDN)");
  init_cmd->add_option("--token-lifetime", init.token_lifetime_seconds,
                       "Enrolment-Token lifetime in seconds")
      ->default_val(7LL * 24 * 3600);
  init_cmd->add_option(
      "--store", init.store,
      "the store: a PostgreSQL libpq URI (postgresql://[user@]host[:port]/dbname[?param=...],\n"
      "no password: use a libpq password file) of an existing database, which gets the schema;\n"
      "several data directories may share one database (docs/scaling.md). Default: the\n"
      "embedded SQLite database DIR/mte.db");
  init_cmd->add_flag("--force", init.force, "replace an existing data directory");

  ServeArgs serve;
  auto* serve_cmd = app.add_subcommand(
      "serve", "Run the MTE roles until SIGINT/SIGTERM. Writes DIR/serve.json (bound ports) when\n"
               "ready and removes it on a clean shutdown. Each role runs in one process per data\n"
               "directory: a role another process runs there (DIR/serve-<role>.lock) is refused.");
  serve_cmd->add_option("--data", serve.data, "data directory")->required();
  serve_cmd->add_option("--roles", serve.roles, "comma-separated roles: portal,mef,maf")
      ->default_val("portal,mef,maf");
  serve_cmd->add_option("--log-level", serve.log_level, "trace, debug, info, warn, error, off")
      ->default_val("info");
  serve_cmd->add_flag("--log-json", serve.log_json, "log one JSON object per line");

  std::string admin_data;
  auto* admin = app.add_subcommand("admin", "Operator commands on a data directory (they work "
                                            "while 'mte serve' runs).");
  admin->add_option("--data", admin_data,
                    "data directory (required by every command except 'pki')");
  admin->require_subcommand(1);

  auto* device = admin->add_subcommand("device", "Manufacturer manifests");
  device->require_subcommand(1);
  std::string manifest;
  auto* device_import = device->add_subcommand(
      "import",
      "Import a manufacturer manifest, all or nothing: a JSON array of {deviceId, claimCode}\n"
      "objects, each with one or more credentials: kpmId + kpmHex (PPSK), certSha256 (SHA-256\n"
      "of the DER device certificate) and/or spkiSha256 (SHA-256 of its DER\n"
      "SubjectPublicKeyInfo), in hex.");
  device_import->add_option("FILE", manifest, "manifest file")->required();
  bool device_list_json = false;
  auto* device_list = device->add_subcommand(
      "list", "List the manifest's devices: credential identifiers (never secrets), enrolee, state");
  device_list->add_flag("--json", device_list_json, "JSON output");

  auto* device_ca = admin->add_subcommand(
      "device-ca", "The device makers' CAs trusted for the certificate RSPF (device certificates)");
  device_ca->require_subcommand(1);
  DeviceCaArgs ca_args;
  auto* device_ca_add = device_ca->add_subcommand(
      "add", "Trust a device CA: FILE holds exactly one PEM CA certificate (basicConstraints\n"
             "CA:TRUE, EC P-256, ecdsa-with-SHA256). Prints 'added device CA NAME (sha256 ...)'.");
  device_ca_add->add_option("FILE", ca_args.file, "PEM file with the CA certificate")->required();
  device_ca_add->add_option("--name", ca_args.name,
                            "1-64 of [A-Za-z0-9._-] (default: the certificate's CN with other "
                            "characters replaced by '-', else ca-<first 8 hex of its SHA-256>)");
  device_ca_add->add_option("--ocsp-url", ca_args.ocsp_url,
                            "http:// OCSP responder for device certificates without an AIA OCSP "
                            "URL");
  device_ca_add->add_option("--crl", ca_args.crl,
                            "CRL file (PEM or DER) issued by this CA; must verify and be current "
                            "now; stored as an absolute path");
  device_ca_add->add_option("--max-chain-depth", ca_args.max_chain_depth,
                            "intermediate CAs allowed between a device certificate and this CA")
      ->default_val(2)
      ->check(CLI::Range(0, store::kMaxDeviceCaChainDepth));
  device_ca_add->add_flag("--ocsp-fail-open", ca_args.ocsp_fail_open,
                          "accept this CA's devices when no revocation status can be had "
                          "(recorded in the audit log)");
  bool ca_list_json = false;
  auto* device_ca_list = device_ca->add_subcommand(
      "list", "List the device CAs: name, SHA-256 prefix, OCSP URL, CRL, depth, fail-open");
  device_ca_list->add_flag("--json", ca_list_json, "JSON output (with the full SHA-256 and PEM)");
  std::string ca_remove_name;
  auto* device_ca_remove = device_ca->add_subcommand("remove", "Stop trusting a device CA");
  device_ca_remove->add_option("NAME", ca_remove_name, "device CA name")->required();

  auto* pki = admin->add_subcommand(
      "pki", "Development device PKI (no --data needed): a device CA and device certificates");
  pki->require_subcommand(1);
  std::string pki_ca_out, pki_ca_name = "OpenMTE development device CA";
  auto* pki_init = pki->add_subcommand(
      "init-device-ca", "Create DIR/ca.crt and DIR/ca.key (0600): a self-signed P-256 device CA");
  pki_init->add_option("--out", pki_ca_out, "output directory (created if needed)")->required();
  pki_init->add_option("--name", pki_ca_name, "CA common name (1-64 printable ASCII)")
      ->default_val("OpenMTE development device CA");
  IssueDeviceArgs issue;
  auto* pki_issue = pki->add_subcommand(
      "issue-device",
      "Issue DIR/device.crt and DIR/device.key (0600) for a device, signed by the CA in --ca.\n"
      "Prints the certSha256 and spkiSha256 values of its manifest entry.");
  pki_issue->add_option("--ca", issue.ca, "directory with ca.crt and ca.key")->required();
  pki_issue->add_option("--device-id", issue.device_id,
                        "device ID (the certificate's CN, 1-64 printable ASCII)")
      ->required();
  pki_issue->add_option("--out", issue.out, "output directory (created if needed)")->required();
  pki_issue->add_option("--ocsp-url", issue.ocsp_url, "http:// OCSP URL for the AIA extension");
  pki_issue->add_option("--valid-days", issue.valid_days, "validity in days")
      ->default_val(730)
      ->check(CLI::Range(int64_t{1}, int64_t{3650}));

  std::string revoke_ca, revoke_cert;
  int revoke_days = 30;
  auto* pki_revoke = pki->add_subcommand(
      "revoke-device",
      "Revoke a device certificate of the CA in --ca and rewrite DIR/crl.pem (RFC 5280 CRL,\n"
      "signed by that CA, listing every certificate revoked so far); without --cert only\n"
      "reissue the CRL. Give the file to 'device-ca add --crl'; the MEF rereads it on change.");
  pki_revoke->add_option("--ca", revoke_ca, "directory with ca.crt and ca.key")->required();
  pki_revoke->add_option("--cert", revoke_cert, "the device certificate to revoke (PEM)")
      ->check(CLI::ExistingFile);
  pki_revoke->add_option("--valid-days", revoke_days, "days until the CRL's nextUpdate")
      ->default_val(30)
      ->check(CLI::Range(1, 3650));

  auto* stakeholder = admin->add_subcommand("stakeholder", "Enrolling stakeholder accounts");
  stakeholder->require_subcommand(1);
  std::string stakeholder_name;
  bool password_stdin = false;
  bool stakeholder_admin = false;
  auto* stakeholder_add = stakeholder->add_subcommand("add", "Add an account");
  stakeholder_add->add_option("NAME", stakeholder_name, "account name")->required();
  stakeholder_add->add_flag("--admin", stakeholder_admin,
                            "an administrator: sees every stakeholder's enrolees and the audit log");
  stakeholder_add->add_flag("--password-stdin", password_stdin,
                            "read the password from standard input");
  auto* stakeholder_passwd = stakeholder->add_subcommand(
      "passwd", "Set an account's password (from standard input) and end all its sessions");
  stakeholder_passwd->add_option("NAME", stakeholder_name, "account name")->required();
  stakeholder_passwd->add_flag("--password-stdin", password_stdin,
                               "read the password from standard input");
  auto* stakeholder_remove = stakeholder->add_subcommand(
      "remove", "Remove an account that has no enrolees, and its sessions");
  stakeholder_remove->add_option("NAME", stakeholder_name, "account name")->required();
  auto* stakeholder_totp_reset = stakeholder->add_subcommand(
      "totp-reset",
      "Turn off an account's two-step sign-in (TOTP) and its recovery codes, for an owner who\n"
      "has lost both; the owner can set it up again from the account page");
  stakeholder_totp_reset->add_option("NAME", stakeholder_name, "account name")->required();
  bool stakeholder_list_json = false;
  auto* stakeholder_list =
      stakeholder->add_subcommand("list", "List the accounts and how many enrolees each has");
  stakeholder_list->add_flag("--json", stakeholder_list_json, "JSON output");

  auto* enrolee = admin->add_subcommand("enrolee", "The MTE Enrolee Database");
  enrolee->require_subcommand(1);
  std::string en_stakeholder, en_device, en_code, en_label;
  bool en_code_stdin = false;
  auto* enrolee_add = enrolee->add_subcommand(
      "add", "Proof of control (seed 8.y.3 steps 3-4): add a device to a stakeholder");
  enrolee_add->add_option("--stakeholder", en_stakeholder, "stakeholder name")->required();
  enrolee_add->add_option("--device", en_device, "device ID")->required();
  enrolee_add->add_option("--claim-code", en_code, "claim code printed on the device");
  enrolee_add->add_flag("--claim-code-stdin", en_code_stdin,
                        "read the claim code from standard input");
  enrolee_add->add_option("--label", en_label, "friendly name");
  int64_t revoke_id = 0;
  bool revoke_json = false;
  auto* enrolee_revoke = enrolee->add_subcommand(
      "revoke",
      "Revoke an enrolee: its unused Enrolment-Tokens and its Ke become invalid, the MEF refuses\n"
      "its device until a new Enrolment-Token re-arms it, and the MAF retires its Km through\n"
      "the outbox (delivered by the running MEF)");
  enrolee_revoke->add_option("ID", revoke_id, "enrolee id (see 'enrolee list')")
      ->required()
      ->check(CLI::PositiveNumber);
  enrolee_revoke->add_flag("--json", revoke_json, "print the enrolee as JSON");
  int64_t delete_id = 0;
  auto* enrolee_delete = enrolee->add_subcommand(
      "delete",
      "Delete an enrolee that is not enrolled (pending, or revoked with its retirement\n"
      "delivered); its device can then be claimed again");
  enrolee_delete->add_option("ID", delete_id, "enrolee id")->required()->check(CLI::PositiveNumber);
  bool list_json = false;
  auto* enrolee_list = enrolee->add_subcommand("list", "List all enrolees");
  enrolee_list->add_flag("--json", list_json, "JSON output");

  auto* lockout = admin->add_subcommand(
      "lockout",
      "The failure counters: the portal's logins and claims, the MEF's Enrolment-Token guesses\n"
      "and failed RSPF runs (in the store, shared by every process)");
  lockout->require_subcommand(1);
  bool lockout_json = false;
  std::string lockout_account, lockout_address;
  auto* lockout_list = lockout->add_subcommand(
      "list",
      "Every counted key (account:, address:, claim-account:, claim:, mef-address:, mef-token:)\n"
      "and its lock");
  lockout_list->add_flag("--json", lockout_json, "JSON output");
  auto* lockout_clear = lockout->add_subcommand(
      "clear",
      "End the lock and forget the failures of one account or one client address (an\n"
      "address: its portal and its MEF keys) (recorded in the audit log)");
  auto* clear_account = lockout_clear->add_option("--account", lockout_account, "account name");
  lockout_clear->add_option("--address", lockout_address, "client IP address")
      ->excludes(clear_account);
  lockout_clear->add_flag("--json", lockout_json, "JSON output");

  auto* audit = admin->add_subcommand("audit", "The append-only audit log");
  audit->require_subcommand(1);
  AuditFilter audit_filter;
  auto* audit_list = audit->add_subcommand(
      "list", "Print the audit log in time order, optionally filtered (all filters must match)");
  auto add_filters = [&](CLI::App* cmd) {
    cmd->add_option("--action", audit_filter.action,
                    "action or action prefix, e.g. enrolee. or enrolment.commit");
    cmd->add_option("--actor", audit_filter.actor, "actor, e.g. admin or stakeholder:alice");
    cmd->add_option("--subject", audit_filter.subject, "text the subject contains");
    cmd->add_option("--since", audit_filter.since, "from this time (Unix seconds or RFC 3339 UTC)");
    cmd->add_option("--until", audit_filter.until, "up to this time (same forms)");
  };
  add_filters(audit_list);
  audit_list->add_flag("--json", audit_filter.json, "one JSON object per line (JSON Lines)");
  auto* audit_export = audit->add_subcommand(
      "export", "The audit log as JSON Lines (one object per entry: id, at, actor, action,\n"
                "subject, detail), with the filters of 'audit list'");
  add_filters(audit_export);

  DemoOptions demo;
  int64_t demo_timeout_s = demo.timeout.count();
  auto* demo_cmd = app.add_subcommand(
      "demo", "What 'make demo' runs: both enrolment flows through the real binaries on\n"
              "loopback, narrated with the seed's step numbers.");
  demo_cmd->footer(
      "Sets up an MTE in a temporary directory, starts 'mte serve' on 127.0.0.1 (ephemeral\n"
      "ports) and enrols simulated devices with the real binaries (mte-enrolee and mte-obf,\n"
      "next to this one): with the PPSK-RSPF sensor-0001 without an OBF (8.y.3) and sensor-0002\n"
      "via the On-Boarding Function (8.y.4); with the certificate RSPF (factory certificates\n"
      "from a development device CA, revocation from its CRL) sensor-0003 (8.y.3) and\n"
      "sensor-0004 (8.y.4); and shows the revoked sensor-0005 refused. Exits 0 when all four\n"
      "are enrolled, their credentials work at the MAF and the revoked one was refused;\n"
      "otherwise non-zero with one line on stderr. Kpm values, the password and tokens are\n"
      "never printed.");
  demo_cmd->add_flag("--keep", demo.keep,
                     "keep the temporary directory (data directory, server log, device state)");
  demo_cmd->add_option("--timeout-s", demo_timeout_s, "bound on the whole demo in seconds")
      ->default_val(demo.timeout.count())
      ->check(CLI::Range(int64_t{5}, int64_t{3600}));

  CLI11_PARSE(app, argc, argv);

  if (demo_cmd->parsed()) {
    demo.timeout = std::chrono::seconds(demo_timeout_s);
    return RunDemo(demo);
  }
  if (init_cmd->parsed()) return Init(init);
  if (serve_cmd->parsed()) return Serve(serve);
  if (pki_init->parsed()) return InitDeviceCa(pki_ca_out, pki_ca_name);
  if (pki_issue->parsed()) return IssueDevice(issue);
  if (pki_revoke->parsed()) return RevokeDevice(revoke_ca, revoke_cert, revoke_days);
  if (admin->parsed() && admin_data.empty()) {
    return Die("admin: --data DIR is required (give it right after 'admin')");
  }
  if (device_import->parsed()) return ImportDevices(admin_data, manifest);
  if (device_ca_add->parsed()) return AddDeviceCa(admin_data, ca_args);
  if (device_ca_list->parsed()) return ListDeviceCas(admin_data, ca_list_json);
  if (device_ca_remove->parsed()) return RemoveDeviceCa(admin_data, ca_remove_name);
  if (stakeholder_add->parsed()) {
    return AddStakeholder(admin_data, stakeholder_name, password_stdin, stakeholder_admin);
  }
  if (enrolee_add->parsed()) {
    return AddEnrolee(admin_data, en_stakeholder, en_device, en_code, en_code_stdin, en_label);
  }
  if (enrolee_list->parsed()) return ListEnrolees(admin_data, list_json);
  if (enrolee_revoke->parsed()) return RevokeEnroleeCommand(admin_data, revoke_id, revoke_json);
  if (enrolee_delete->parsed()) return DeleteEnroleeCommand(admin_data, delete_id);
  if (stakeholder_passwd->parsed()) {
    return SetStakeholderPassword(admin_data, stakeholder_name, password_stdin);
  }
  if (stakeholder_remove->parsed()) return RemoveStakeholder(admin_data, stakeholder_name);
  if (stakeholder_totp_reset->parsed()) {
    return ResetStakeholderTotp(admin_data, stakeholder_name);
  }
  if (audit_list->parsed()) return ListAudit(admin_data, audit_filter);
  if (lockout_list->parsed()) return ListLockouts(admin_data, lockout_json);
  if (lockout_clear->parsed()) {
    return ClearLockout(admin_data, lockout_account, lockout_address, lockout_json);
  }
  if (audit_export->parsed()) {
    audit_filter.json = true;
    return ListAudit(admin_data, audit_filter);
  }
  if (device_list->parsed()) return ListDevices(admin_data, device_list_json);
  if (stakeholder_list->parsed()) return ListStakeholders(admin_data, stakeholder_list_json);
  return 2;
}
