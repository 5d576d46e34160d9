#include "demo.h"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"
#include "base/secret.h"
#include "client/https_client.h"
#include "crypto/device_cert.h"
#include "crypto/random.h"
#include "crypto/tls_engine.h"

extern char** environ;

namespace mte {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;
using client::Deadline;

constexpr char kMefFqdn[] = "mef.demo.test";
constexpr char kMafFqdn[] = "maf.demo.test";
constexpr char kStakeholder[] = "alice";
constexpr char kDevice1[] = "sensor-0001";
constexpr char kDevice2[] = "sensor-0002";
constexpr char kDevice3[] = "sensor-0003";
constexpr char kDevice4[] = "sensor-0004";
constexpr char kDevice5[] = "sensor-0005";
constexpr char kKpmId1[] = "kpm-0001@maker.demo.test";
constexpr char kKpmId2[] = "kpm-0002@maker.demo.test";
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr auto kShutdownGrace = std::chrono::seconds(10);

volatile sig_atomic_t g_interrupted = 0;
extern "C" void OnInterrupt(int) { g_interrupted = 1; }

tl::unexpected<Error> Problem(std::string detail) {
  return Fail(ErrorKind::kIo, Errc::kIoFailed, std::move(detail));
}

tl::unexpected<Error> OutOfTime(std::string what) {
  if (g_interrupted) return Fail(ErrorKind::kTimeout, Errc::kDeadline, "interrupted " + what);
  return Fail(ErrorKind::kTimeout, Errc::kDeadline, "timed out " + what);
}

std::string Hex(Rng& rng, size_t n) {
  Bytes bytes(n);
  rng.Fill(bytes);
  std::string hex = HexLower(bytes);
  SecureWipe(bytes.data(), bytes.size());
  return hex;
}

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void WipeString(std::string& s) { SecureWipe(s.data(), s.size()); }

// A string member of a JSON object, or "" when absent or not a string.
std::string Str(const nlohmann::json& j, const char* name) {
  if (!j.is_object()) return "";
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string Joined(const nlohmann::json& j, const char* name) {
  std::string out;
  if (!j.is_object() || !j.contains(name) || !j[name].is_array()) return out;
  for (const auto& item : j[name]) {
    if (!item.is_string()) continue;
    if (!out.empty()) out += ", ";
    out += item.get<std::string>();
  }
  return out;
}

// The word after `marker` on the first line containing it ("" when absent).
std::string WordAfter(const std::string& text, std::string_view marker) {
  auto at = text.find(marker);
  if (at == std::string::npos) return "";
  at += marker.size();
  auto end = text.find_first_of(" \t\r\n),", at);
  return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::string LastLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto nl = text.rfind('\n');
  return nl == std::string::npos ? text : text.substr(nl + 1);
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

// ---------------------------------------------------------------- narration

// Prints the narration: titles, indented lines, commands. Everything shown passes through Mask(),
// which replaces registered secrets by placeholders and the work directory by $DEMO.
class Narrator {
 public:
  Narrator() {
    const char* term = std::getenv("TERM");
    bold_ = ::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr &&
            !(term && std::string_view(term) == "dumb");
  }
  ~Narrator() {
    for (auto& [secret, placeholder] : secrets_) WipeString(secret);
  }
  Narrator(const Narrator&) = delete;
  Narrator& operator=(const Narrator&) = delete;

  void AddSecret(const std::string& value, std::string placeholder) {
    if (!value.empty()) secrets_.emplace_back(value, std::move(placeholder));
  }
  void SetWorkDir(const fs::path& dir) { work_dir_ = dir.string(); }

  std::string Mask(std::string text) const {
    for (const auto& [secret, placeholder] : secrets_) Replace(text, secret, placeholder);
    // Kpm values are hex: also catch an upper-case rendering.
    for (const auto& [secret, placeholder] : secrets_) Replace(text, Upper(secret), placeholder);
    if (!work_dir_.empty()) Replace(text, work_dir_, "$DEMO");
    return text;
  }

  void Title(std::string_view text) const {
    if (bold_) {
      std::printf("\n\033[1m%s\033[0m\n", Mask(std::string(text)).c_str());
    } else {
      std::printf("\n%s\n", Mask(std::string(text)).c_str());
    }
    std::fflush(stdout);
  }
  // A narration or child-output line, indented under its title.
  void Line(std::string_view text) const { Unmasked(Mask(std::string(text))); }
  // The same for text that holds no secret and should show the real work directory.
  void Unmasked(const std::string& text) const {
    std::printf("    %s\n", text.c_str());
    std::fflush(stdout);
  }
  // A command or request as the user would type it.
  void Prompt(std::string_view text) const {
    std::printf("  %s\n", Mask(std::string(text)).c_str());
    std::fflush(stdout);
  }
  void Lines(const std::string& text) const {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) Line(line);
  }

 private:
  static void Replace(std::string& text, const std::string& what, const std::string& with) {
    if (what.empty()) return;
    for (size_t at = text.find(what); at != std::string::npos;
         at = text.find(what, at + with.size())) {
      text.replace(at, what.size(), with);
    }
  }

  bool bold_ = false;
  std::string work_dir_;
  std::vector<std::pair<std::string, std::string>> secrets_;
};

// ---------------------------------------------------------------- processes

struct Child {
  pid_t pid = -1;
  std::string name;  // e.g. "mte serve"
  bool reaped = false;
  int status = 0;

  // True once the process has exited (reaped; status valid).
  bool Exited() {
    if (reaped || pid <= 0) return true;
    int s = 0;
    pid_t r = ::waitpid(pid, &s, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      reaped = true;
      status = s;
    }
    return reaped;
  }
  bool WaitUntil(Deadline deadline) {
    while (!Exited()) {
      if (Steady::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  void Kill() {
    if (Exited()) return;
    ::kill(pid, SIGKILL);
    int s = 0;
    if (::waitpid(pid, &s, 0) == pid) status = s;
    reaped = true;
  }
  // SIGTERM, then SIGKILL after `grace`. True when it stopped on SIGTERM.
  bool Stop(std::chrono::milliseconds grace) {
    if (Exited()) return true;
    ::kill(pid, SIGTERM);
    if (WaitUntil(Steady::now() + grace)) return true;
    Kill();
    return false;
  }
};

// Starts argv[0] with stdin from `in_fd` (or /dev/null when < 0) and stdout and stderr to
// `out_fd`. The child gets default signal dispositions and an empty signal mask.
Result<pid_t> Spawn(const std::vector<std::string>& argv, int in_fd, int out_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  if (in_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, in_fd, STDIN_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDERR_FILENO);
  sigset_t defaults, mask;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) sigaddset(&defaults, sig);
  sigemptyset(&mask);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Problem("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

// ---------------------------------------------------------------- the demo

class Demo {
 public:
  explicit Demo(const DemoOptions& options)
      : options_(options), deadline_(Steady::now() + options.timeout) {}
  ~Demo() { Cleanup(); }
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;

  Result<void> Run() {
    MTE_TRY(Prepare());
    MTE_TRY(Setup());
    MTE_TRY(StartServer());
    MTE_TRY(FlowA());
    MTE_TRY(FlowB());
    MTE_TRY(Certificates());
    MTE_TRY(Revocation());
    MTE_TRY(OperatorView());
    MTE_TRY(StopServer());
    say_.Title("Demo complete: " + std::string(kDevice1) + " and " + kDevice3 +
               " (8.y.3, without an OBF; PPSK and certificate RSPF), " + kDevice2 + " and " +
               kDevice4 + " (8.y.4, via the OBF) are enrolled and their master credentials work "
               "at the MAF; the revoked " + kDevice5 + " was refused; " + kDevice2 +
               " was revoked afterwards and its master credential no longer opens the MAF.");
    if (options_.keep) say_.Unmasked("kept " + work_.string() + " (server log: serve.log)");
    return {};
  }

  // Called after a failure, before cleanup: the last lines of the server log help.
  void ShowServerLogTail() const {
    std::ifstream in(work_ / "serve.log");
    if (!in) return;
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    if (lines.empty()) return;
    std::printf("\n  last lines of the MTE's log (%s/serve.log):\n",
                options_.keep ? work_.c_str() : "$DEMO");
    for (size_t i = lines.size() > 12 ? lines.size() - 12 : 0; i < lines.size(); ++i) {
      say_.Line(lines[i]);
    }
  }

 private:
  // ------------------------------------------------------------ helpers

  std::chrono::milliseconds Remaining() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Steady::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
  }
  bool TimeUp() const { return g_interrupted || Steady::now() >= deadline_; }

  std::string Bin(const char* name) const { return (bin_dir_ / name).string(); }
  std::string Data() const { return (work_ / "mte").string(); }

  static std::string Shown(const std::vector<std::string>& argv) {
    std::string out = "$";
    for (size_t i = 0; i < argv.size(); ++i) {
      std::string a = i == 0 ? fs::path(argv[i]).filename().string() : argv[i];
      if (a.find_first_of(" \"'$") != std::string::npos) a = "'" + a + "'";
      out += " " + a;
    }
    return out;
  }

  // Runs a command to completion within the demo's deadline, showing it (secrets masked) and its
  // output (stdout and stderr, indented) as it arrives. Returns the output; a non-zero exit is
  // an error carrying the command's last output line.
  Result<std::string> Exec(const std::vector<std::string>& argv, std::string input = {},
                           std::string_view note = {}) {
    std::string shown = Shown(argv);
    if (!note.empty()) shown += "   " + std::string(note);
    say_.Prompt(shown);
    std::string name = fs::path(argv[0]).filename().string();
    if (argv.size() > 1) name += " " + argv[1];
    if (name == "mte admin" && argv.size() > 4) name += " " + argv[4];
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return Problem(std::string("pipe: ") + std::strerror(errno));
    int in[2] = {-1, -1};
    if (!input.empty() && ::pipe2(in, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      return Problem(std::string("pipe: ") + std::strerror(errno));
    }
    auto pid = Spawn(argv, in[0], out[1]);
    ::close(out[1]);
    if (in[0] >= 0) ::close(in[0]);
    if (!pid) {
      ::close(out[0]);
      if (in[1] >= 0) ::close(in[1]);
      WipeString(input);
      return Fail(pid.error());
    }
    Child child{*pid, name};
    if (in[1] >= 0) {
      // Small (a password line): fits the pipe buffer, so this cannot block on a full pipe.
      size_t off = 0;
      while (off < input.size()) {
        ssize_t n = ::write(in[1], input.data() + off, input.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::close(in[1]);
      WipeString(input);
    }
    std::string captured, partial;
    for (;;) {
      if (TimeUp()) {
        ::close(out[0]);
        child.Kill();
        return OutOfTime("waiting for " + name);
      }
      pollfd p{out[0], POLLIN, 0};
      int r = ::poll(&p, 1, 100);
      if (r < 0 && errno != EINTR) break;
      if (r <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      captured.append(buf, static_cast<size_t>(n));
      partial.append(buf, static_cast<size_t>(n));
      for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
        say_.Line(partial.substr(0, nl));
        partial.erase(0, nl + 1);
      }
    }
    ::close(out[0]);
    if (!partial.empty()) say_.Line(partial);
    if (!child.WaitUntil(deadline_)) {
      child.Kill();
      return OutOfTime("waiting for " + name + " to exit");
    }
    if (!WIFEXITED(child.status) || WEXITSTATUS(child.status) != 0) {
      std::string last = say_.Mask(LastLine(captured));
      return Problem(name + " " + DescribeStatus(child.status) + (last.empty() ? "" : ": " + last));
    }
    return captured;
  }

  // Starts a long-running child with stdout and stderr to `log` (mode 0600).
  Result<Child> Background(const std::vector<std::string>& argv, const fs::path& log,
                           std::string name) {
    say_.Prompt(Shown(argv) + " &");
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Problem("cannot create " + log.string() + ": " + std::strerror(errno));
    auto pid = Spawn(argv, -1, fd);
    ::close(fd);
    if (!pid) return Fail(pid.error());
    return Child{*pid, std::move(name)};
  }

  static std::string ReadFile(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Waits until `file` exists and is complete (written via rename by its producer), while
  // `producer` is running.
  Result<void> WaitForFile(const fs::path& file, Child& producer) {
    std::error_code ec;
    while (!fs::exists(file, ec)) {
      if (producer.Exited()) {
        return Problem(producer.name + " " + DescribeStatus(producer.status) +
                       " before writing " + file.filename().string());
      }
      if (TimeUp()) return OutOfTime("waiting for " + producer.name + " to start");
      std::this_thread::sleep_for(kPollInterval);
    }
    return {};
  }

  static Result<void> WriteSecretFile(const fs::path& file, const std::string& text) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Problem("cannot create " + file.string() + ": " + std::strerror(errno));
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(fd, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return Problem("cannot write " + file.string() + ": " + std::strerror(errno));
      }
      off += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) return Problem("cannot write " + file.string());
    return {};
  }

  // One portal REST call (HTTPS to 127.0.0.1, certificate verified against the MTE's CA for the
  // name "localhost"), with the bearer token once logged in. `show`: print the request line.
  Result<nlohmann::json> Api(const std::string& method, const std::string& path,
                             const nlohmann::json* body, int expect, bool show = true) {
    proto::HttpRequest request;
    request.method = method;
    request.target = "/api/v1" + path;
    request.headers.Set("Host", "localhost:" + std::to_string(portal_port_));
    request.headers.Set("Accept", "application/json");
    if (!bearer_.empty()) request.headers.Set("Authorization", "Bearer " + bearer_);
    if (body) {
      request.headers.Set("Content-Type", "application/json");
      request.body = body->dump();
    }
    request.keep_alive = false;
    if (show) {
      say_.Prompt("> " + method + " https://localhost:" + std::to_string(portal_port_) +
                  request.target + (body ? " " + request.body : ""));
    }
    auto engine = crypto::TlsEngine::Client(portal_tls_);
    if (!engine) return Fail(engine.error());
    client::ExchangeOptions exchange;
    exchange.deadline = std::min(Remaining(), std::chrono::milliseconds(15000));
    auto result = client::Exchange({"127.0.0.1", portal_port_}, std::move(*engine), request,
                                   exchange);
    WipeString(request.body);
    if (!result) return Fail(Context(result.error(), method + " " + request.target));
    auto reply = nlohmann::json::parse(result->response.body, nullptr, false);
    WipeString(result->response.body);
    if (result->response.status != expect) {
      std::string why = reply.is_discarded() ? "" : Str(reply, "error");
      return Problem(method + " " + request.target + " answered HTTP " +
                     std::to_string(result->response.status) + (why.empty() ? "" : ": " + why));
    }
    if (reply.is_discarded() || !reply.is_object()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  method + " " + request.target + ": the answer is not a JSON object");
    }
    if (show) say_.Prompt("< HTTP " + std::to_string(expect));
    return reply;
  }

  // Polls GET /api/v1/enrolees/{id} until the entry is enrolled with a KeID and credential IDs
  // and its MAF delivery is done (the MEF's outbox runs asynchronously).
  Result<nlohmann::json> AwaitDelivered(int64_t id) {
    std::string path = "/enrolees/" + std::to_string(id);
    say_.Prompt("> GET https://localhost:" + std::to_string(portal_port_) + "/api/v1" + path +
                "   (until mafDelivery is \"delivered\")");
    for (;;) {
      MTE_TRY_ASSIGN(auto view, Api("GET", path, nullptr, 200, /*show=*/false));
      if (Str(view, "state") == "enrolled" && !Str(view, "keId").empty() &&
          !Joined(view, "credentialIds").empty() && Str(view, "mafDelivery") == "delivered") {
        return view;
      }
      if (TimeUp()) {
        return OutOfTime("waiting for enrolee " + std::to_string(id) +
                         " to be enrolled and delivered to the MAF (state " + Str(view, "state") +
                         ", mafDelivery " + Str(view, "mafDelivery") + ")");
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  void ShowView(const nlohmann::json& view) {
    say_.Line("portal view: enrolee " + std::to_string(view.value("id", int64_t{0})) +
              " (device " + Str(view, "deviceId") + ", \"" + Str(view, "label") + "\"), state " +
              Str(view, "state") + ", KeID " + Str(view, "keId"));
    say_.Line("             credential IDs " + Joined(view, "credentialIds") + ", RSPF " +
              Str(view, "rspf") + ", MAF delivery " + Str(view, "mafDelivery"));
  }

  static Result<void> SameKeId(const std::string& device_says, const nlohmann::json& view,
                               const char* device) {
    if (device_says.empty()) return Problem(std::string(device) + " reported no KeID");
    if (device_says != Str(view, "keId")) {
      return Problem(std::string(device) + " reports KeID " + device_says +
                     " but the portal shows " + Str(view, "keId"));
    }
    return {};
  }

  // ------------------------------------------------------------ stages

  Result<void> Prepare() {
    std::error_code ec;
    auto self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return Problem("cannot locate the mte executable: " + ec.message());
    bin_dir_ = self.parent_path();
    for (const char* name : {"mte", "mte-enrolee", "mte-obf"}) {
      if (::access(Bin(name).c_str(), X_OK) != 0) {
        return Problem(std::string(name) + " not found in " + bin_dir_.string() +
                       " (build all targets: make build)");
      }
    }
    auto tmp = fs::temp_directory_path(ec);
    if (ec) tmp = "/tmp";
    std::string pattern = (tmp / "openmte-demo.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return Problem("cannot create a temporary directory in " + tmp.string() + ": " +
                     std::strerror(errno));
    }
    work_ = pattern;
    say_.SetWorkDir(work_);
    return {};
  }

  Result<void> Setup() {
    say_.Title("Setting up an M2M Trust Enabler (portal, MEF, MAF) in $DEMO/mte");
    say_.Unmasked("DEMO=" + work_.string() +
                  (options_.keep ? " (kept: --keep)" : " (removed at the end)"));
    MTE_TRY(Exec({Bin("mte"), "init", "--data", Data(), "--mef-fqdn", kMefFqdn, "--maf-fqdn",
                  kMafFqdn, "--mef-port", "0", "--maf-port", "0", "--maf-delivery-port", "0",
                  "--portal-port", "0"}));

    say_.Title("The device maker's manifest: two devices with pre-provisioned Kpm/KpmID; claim "
               "codes and setup codes are printed on their labels");
    crypto::SystemRng rng;
    kpm1_ = Hex(rng, 32);
    kpm2_ = Hex(rng, 32);
    say_.AddSecret(kpm1_, "<Kpm1>");
    say_.AddSecret(kpm2_, "<Kpm2>");
    claim1_ = "CLAIM-" + Upper(Hex(rng, 4));
    // The manifest format asks for a claim code for every device; sensor-0002 is enrolled via
    // the OBF (8.y.4) and never uses it.
    std::string claim2 = "CLAIM-" + Upper(Hex(rng, 4));
    nlohmann::json manifest = nlohmann::json::array(
        {{{"deviceId", kDevice1}, {"kpmId", kKpmId1}, {"kpmHex", kpm1_}, {"claimCode", claim1_}},
         {{"deviceId", kDevice2}, {"kpmId", kKpmId2}, {"kpmHex", kpm2_}, {"claimCode", claim2}}});
    std::string text = manifest.dump(2);
    fs::path manifest_file = work_ / "manifest.json";
    auto written = WriteSecretFile(manifest_file, text);
    WipeString(text);
    if (!written) return written;
    say_.Line(std::string(kDevice1) + ": KpmID " + kKpmId1 + ", claim code " + claim1_ +
              " (label)");
    say_.Line(std::string(kDevice2) + ": KpmID " + kKpmId2 + ", setup code on the label (below)");
    say_.Line("(the Kpm values are secret and are shown as <Kpm1>, <Kpm2>)");
    auto imported = Exec({Bin("mte"), "admin", "--data", Data(), "device", "import",
                          manifest_file.string()});
    std::error_code ec;
    fs::remove(manifest_file, ec);  // it holds the Kpm values; the MTE keeps them encrypted
    if (!imported) return Fail(imported.error());
    MTE_TRY_ASSIGN(auto code, Exec({Bin("mte-enrolee"), "new-setup-code"}));
    setup_code_ = LastLine(code);
    if (setup_code_.empty()) return Problem("mte-enrolee new-setup-code printed nothing");
    say_.Line("(the setup code for " + std::string(kDevice2) + "'s label)");

    say_.Title("The enrolling stakeholder already has an account with the MTE (seed 8.y.2)");
    password_ = "demo-" + Hex(rng, 12);
    say_.AddSecret(password_, "<password>");
    MTE_TRY(Exec({Bin("mte"), "admin", "--data", Data(), "stakeholder", "add", kStakeholder,
                  "--password-stdin"},
                 password_ + "\n", "(a random password on stdin)"));
    return {};
  }

  Result<void> StartServer() {
    say_.Title("Starting the MTE: mte serve (portal, MEF, MAF) on 127.0.0.1, ephemeral ports");
    fs::path ready = fs::path(Data()) / "serve.json";
    MTE_TRY_ASSIGN(server_, Background({Bin("mte"), "serve", "--data", Data()},
                                       work_ / "serve.log", "mte serve"));
    MTE_TRY(WaitForFile(ready, *server_));
    auto ports = nlohmann::json::parse(ReadFile(ready), nullptr, false);
    auto port = [&ports](const char* name) -> uint16_t {
      if (!ports.is_object() || !ports.contains(name) || !ports[name].is_number_unsigned()) {
        return 0;
      }
      auto v = ports[name].get<uint64_t>();
      return v > 0 && v <= 65535 ? static_cast<uint16_t>(v) : 0;
    };
    portal_port_ = port("portalPort");
    mef_port_ = port("mefPort");
    maf_port_ = port("mafPort");
    if (!portal_port_ || !mef_port_ || !maf_port_) {
      return Problem("serve.json lacks portalPort, mefPort or mafPort");
    }
    say_.Line("ready (serve.json): portal https://localhost:" + std::to_string(portal_port_) +
              ", MEF 127.0.0.1:" + std::to_string(mef_port_) + " (" + kMefFqdn +
              "), MAF 127.0.0.1:" + std::to_string(maf_port_) + " (" + kMafFqdn + ")");
    crypto::TlsClientOptions tls;
    tls.server_name = "localhost";
    tls.trust_pem_file = CaFile();
    MTE_TRY_ASSIGN(portal_tls_, crypto::TlsContext::Client(tls));
    return {};
  }

  std::string CaFile() const { return (fs::path(Data()) / "pki" / "ca.crt").string(); }
  std::string Mef() const { return "127.0.0.1:" + std::to_string(mef_port_); }
  std::string Maf() const { return "127.0.0.1:" + std::to_string(maf_port_); }

  Result<void> FlowA() {
    say_.Title("=== Flow A: enrolment without an OBF (seed 8.y.3, PPSK-RSPF), device " +
               std::string(kDevice1) + " ===");

    say_.Title("8.y.3 steps 1-2: the stakeholder's browser opens server-authenticated TLS to the "
               "portal and logs in");
    nlohmann::json login = {{"name", kStakeholder}, {"password", password_}};
    auto reply = Api("POST", "/login", &login, 200);
    WipeString(*login["password"].get_ptr<std::string*>());
    if (!reply) return Fail(reply.error());
    bearer_ = Str(*reply, "token");
    say_.AddSecret(bearer_, "<bearer token>");
    if (reply->contains("token")) WipeString(*(*reply)["token"].get_ptr<std::string*>());
    if (bearer_.empty()) return Problem("POST /api/v1/login returned no token");
    say_.Line("logged in as " + std::string(kStakeholder) + " (bearer token received, expires " +
              Str(*reply, "expiresAt") + ")");
    FlowADevice device{kDevice1, claim1_, "Greenhouse", "device-1",
                       {"--kpm-id", kKpmId1, "--kpm-hex", kpm1_},
                       "the PPSK-RSPF with the MEF",
                       "(TLS-PSK with psk_identity = KpmID, SNI = MEF FQDN; Enrolment Exchange POST "
                       "/enrolment;"};
    return EnrolFlowA(device);
  }

  // A device enrolled without an OBF, and how it authenticates to the MEF.
  struct FlowADevice {
    std::string device_id;
    std::string claim_code;
    std::string label;
    std::string state_dir;                 // below $DEMO
    std::vector<std::string> credential;  // mte-enrolee's credential options
    std::string rspf_text;                // "the PPSK-RSPF with the MEF"
    std::string handshake_text;           // one narration line about the handshake
  };

  // Seed 8.y.3 steps 3-7 for one device, then its MAF handshake.
  Result<void> EnrolFlowA(const FlowADevice& device) {
    say_.Title("8.y.3 steps 3-4: proof of control (device ID + claim code from the label) and "
               "adding the enrolee with a label");
    nlohmann::json claim = {
        {"deviceId", device.device_id}, {"claimCode", device.claim_code}, {"label", device.label}};
    MTE_TRY_ASSIGN(auto entry, Api("POST", "/enrolees", &claim, 201));
    int64_t id = entry.value("id", int64_t{0});
    say_.Line("enrolee " + std::to_string(id) + " added: device " + Str(entry, "deviceId") +
              ", \"" + Str(entry, "label") + "\", stakeholder " + Str(entry, "stakeholder") +
              ", state " + Str(entry, "state"));

    say_.Title("8.y.3 steps 5-6: the device decides to enrol and runs " + device.rspf_text);
    say_.Line(device.handshake_text);
    say_.Line(" Ke and KeID from the exporter EXPORTER-oneM2M-Bootstrap)");
    fs::path state = work_ / device.state_dir;
    std::vector<std::string> argv = {Bin("mte-enrolee"), "enrol",  "--mef", Mef(), "--mef-fqdn",
                                     kMefFqdn,           "--ca",   CaFile()};
    argv.insert(argv.end(), device.credential.begin(), device.credential.end());
    argv.insert(argv.end(), {"--state", state.string()});
    MTE_TRY(Exec(argv));

    say_.Title("8.y.3 step 7: the MEF recorded the credential IDs and forwards Km to the MAF "
               "(durable outbox, mutual TLS)");
    MTE_TRY_ASSIGN(auto view, AwaitDelivered(id));
    ShowView(view);
    MTE_TRY(SameKeId(StateKeId(state), view, device.device_id.c_str()));

    say_.Title("Using the result: the MAF handshake with KmID/Km (TLS-PSK)");
    MTE_TRY(Exec({Bin("mte-enrolee"), "maf-check", "--maf", Maf(), "--maf-fqdn", kMafFqdn,
                  "--state", state.string()}));
    return {};
  }

  // The KeID the device recorded in its state (enrolment.json).
  static std::string StateKeId(const fs::path& state) {
    auto j = nlohmann::json::parse(ReadFile(state / "enrolment.json"), nullptr, false);
    return Str(j, "keId");
  }

  Result<void> FlowB() {
    say_.Title("=== Flow B: enrolment via an On-Boarding Function (seed 8.y.4), device " +
               std::string(kDevice2) + " ===");
    FlowBDevice device{kDevice2, setup_code_, "device-2", {"--kpm-id", kKpmId2, "--kpm-hex", kpm2_},
                       "Barn door", "white box, north barn door, bought 2024"};
    return EnrolFlowB(device);
  }

  // A device enrolled via the OBF.
  struct FlowBDevice {
    std::string device_id;
    std::string setup_code;
    std::string state_dir;                 // below $DEMO
    std::vector<std::string> credential;  // mte-enrolee's credential options
    std::string label;
    std::string info;                      // identifying information the stakeholder gives
  };

  // Seed 8.y.4 steps 1-18 for one device, then its MAF handshake.
  Result<void> EnrolFlowB(const FlowBDevice& device) {
    const std::string& device_id = device.device_id;

    say_.Title("The device " + device_id +
               " is powered on and waits for its OBF (local link authenticated by the setup code)");
    fs::path port_file = work_ / (device.state_dir + ".port");
    fs::path device_log = work_ / (device.state_dir + ".log");
    // The device gives up on its own if no OBF comes; the demo's deadline bounds it anyway.
    int64_t wait_s = options_.timeout.count();
    std::vector<std::string> argv = {Bin("mte-enrolee"), "await-obf", "--listen", "127.0.0.1:0",
                                     "--port-file", port_file.string(), "--device-id", device_id,
                                     "--setup-code", device.setup_code};
    argv.insert(argv.end(), device.credential.begin(), device.credential.end());
    argv.insert(argv.end(), {"--state", (work_ / device.state_dir).string(), "--timeout-s",
                             std::to_string(wait_s)});
    MTE_TRY_ASSIGN(device_, Background(argv, device_log, "mte-enrolee await-obf"));
    MTE_TRY(WaitForFile(port_file, *device_));
    std::string device_port = LastLine(ReadFile(port_file));
    if (device_port.empty()) return Problem("mte-enrolee await-obf wrote an empty port file");
    say_.Line("listening on 127.0.0.1:" + device_port);

    say_.Title("8.y.4 step 1: the stakeholder proves control of " + device_id +
               " to the OBF with the setup code from its label");
    say_.Line("setup code: " + device.setup_code);

    say_.Title("8.y.4 steps 2-4: the stakeholder's app directs the browser to the MTE's "
               "Enrolment Portal (server-authenticated TLS) and is authenticated");
    say_.Line("already logged in as " + std::string(kStakeholder) +
              " (the bearer token from steps 1-2 of Flow A is reused)");

    say_.Title("8.y.4 steps 5-6: the stakeholder asks the portal to add the enrolee with "
               "identifying information; the MTE stores it with the stakeholder's identity");
    nlohmann::json add = {{"label", device.label}, {"deviceInfo", device.info}};
    MTE_TRY_ASSIGN(auto entry, Api("POST", "/enrolees", &add, 201));
    int64_t id = entry.value("id", int64_t{0});
    flow_b_ids_[device_id] = id;
    say_.Line("enrolee " + std::to_string(id) + " added: \"" + Str(entry, "label") +
              "\", stakeholder " + Str(entry, "stakeholder") + ", state " + Str(entry, "state") +
              " (device not yet known)");

    say_.Title("8.y.4 steps 7-8: the MTE generates an Enrolment-Token and returns it with the "
               "MEF URI and the MEF trust anchors");
    MTE_TRY_ASSIGN(auto bundle,
                   Api("POST", "/enrolees/" + std::to_string(id) + "/tokens", nullptr, 201));
    std::string token = Str(bundle, "token");
    say_.AddSecret(token, "<Enrolment-Token>");
    if (token.empty()) return Problem("the token bundle has no token");
    size_t anchors = bundle.contains("mefTrustAnchors") && bundle["mefTrustAnchors"].is_array()
                         ? bundle["mefTrustAnchors"].size()
                         : 0;
    say_.Line("Enrolment-Token (" + std::to_string(token.size()) +
              " characters, single use, shown as <Enrolment-Token>), expires " +
              Str(bundle, "expiresAt"));
    say_.Line("MEF URI " + Str(bundle, "mefUri") + " (" + Str(bundle, "mefFqdn") + "), " +
              std::to_string(anchors) + " MEF trust anchor(s)");
    fs::path bundle_file = work_ / "bundle.json";
    std::string text = bundle.dump(2);
    auto saved = WriteSecretFile(bundle_file, text);
    WipeString(text);
    WipeString(token);
    if (!saved) return saved;
    say_.Line("saved as $DEMO/bundle.json (mode 0600) for the OBF");

    say_.Title("8.y.4 steps 9-11: the app hands the bundle to the OBF, which opens the "
               "setup-code-authenticated link to the device and delivers it");
    MTE_TRY_ASSIGN(auto obf, Exec({Bin("mte-obf"), "deliver", "--bundle", bundle_file.string(),
                                   "--device", "127.0.0.1:" + device_port, "--setup-code",
                                   device.setup_code}));
    std::error_code ec;
    fs::remove(bundle_file, ec);  // the token is spent; the bundle is no longer needed

    say_.Title("8.y.4 steps 12-17, as reported by the device (its output)");
    if (!device_->WaitUntil(std::min(deadline_, Steady::now() + std::chrono::seconds(10)))) {
      return OutOfTime("waiting for mte-enrolee await-obf to exit after reporting");
    }
    std::string device_out = ReadFile(device_log);
    say_.Lines(device_out);
    if (!WIFEXITED(device_->status) || WEXITSTATUS(device_->status) != 0) {
      return Problem("mte-enrolee await-obf " + DescribeStatus(device_->status) + ": " +
                     say_.Mask(LastLine(device_out)));
    }

    say_.Title("8.y.4 step 18: the MEF provided the credential IDs to the Enrolee Database and "
               "forwarded the credential to the MAF");
    MTE_TRY_ASSIGN(auto view, AwaitDelivered(id));
    ShowView(view);
    MTE_TRY(SameKeId(StateKeId(work_ / device.state_dir), view, device_id.c_str()));
    MTE_TRY(SameKeId(WordAfter(obf, "enrolled with KeID "), view, "mte-obf"));
    if (Str(view, "deviceId") != device_id) {
      return Problem("the portal records device '" + Str(view, "deviceId") + "' for enrolee " +
                     std::to_string(id) + ", expected " + device_id);
    }

    say_.Title("Using the result: " + device_id +
               "'s MAF handshake with KmID/Km (TLS-PSK)");
    MTE_TRY(Exec({Bin("mte-enrolee"), "maf-check", "--maf", Maf(), "--maf-fqdn", kMafFqdn,
                  "--state", (work_ / device.state_dir).string()}));
    return {};
  }

  // The certificate RSPF (TS-0003 §8.3.2.2): devices whose maker issued them a factory
  // certificate from its device CA, no pre-shared key; the MTE trusts that CA and checks each
  // certificate's revocation status (here from the CA's CRL) before it accepts it.
  Result<void> Certificates() {
    say_.Title("=== The certificate RSPF (TS-0003 §8.3.2.2): devices with a factory certificate "
               "and no pre-shared key ===");
    say_.Title("The device maker's CA issues a certificate to each device at the factory (here "
               "the development device PKI)");
    fs::path ca = work_ / "maker-ca";
    MTE_TRY(Exec({Bin("mte"), "admin", "pki", "init-device-ca", "--out", ca.string(), "--name",
                  "Demo Maker Device CA"}));
    crypto::SystemRng rng;
    nlohmann::json manifest = nlohmann::json::array();
    for (const char* device : {kDevice3, kDevice4, kDevice5}) {
      fs::path dir = work_ / (std::string(device) + "-cert");
      MTE_TRY(Exec({Bin("mte"), "admin", "pki", "issue-device", "--ca", ca.string(),
                    "--device-id", device, "--out", dir.string()}));
      auto pem = crypto::CertificatesFromPem(ReadFile(dir / "device.crt"));
      if (!pem) return Problem(std::string(device) + ": " + pem.error().detail);
      MTE_TRY_ASSIGN(auto facts, crypto::DescribeCertificate(pem->front()));
      std::string claim = "CLAIM-" + Upper(Hex(rng, 4));
      cert_claims_[device] = claim;
      manifest.push_back(
          {{"deviceId", device}, {"certSha256", facts.cert_sha256}, {"claimCode", claim}});
    }
    say_.Title("The maker revokes " + std::string(kDevice5) +
               "'s certificate (it was stolen) and publishes its CRL");
    MTE_TRY(Exec({Bin("mte"), "admin", "pki", "revoke-device", "--ca", ca.string(), "--cert",
                  (work_ / (std::string(kDevice5) + "-cert") / "device.crt").string()}));

    say_.Title("The operator trusts the maker's device CA (revocation from its CRL) and imports "
               "the manifest: certificate fingerprints and claim codes, no secrets");
    MTE_TRY(Exec({Bin("mte"), "admin", "--data", Data(), "device-ca", "add",
                  (ca / "ca.crt").string(), "--name", "demo-maker", "--crl",
                  (ca / "crl.pem").string()}));
    fs::path manifest_file = work_ / "cert-manifest.json";
    MTE_TRY(WriteSecretFile(manifest_file, manifest.dump(2)));
    MTE_TRY(Exec({Bin("mte"), "admin", "--data", Data(), "device", "import",
                  manifest_file.string()}));

    auto credential = [this](const char* device) -> std::vector<std::string> {
      fs::path dir = work_ / (std::string(device) + "-cert");
      return {"--cert", (dir / "device.crt").string(), "--key", (dir / "device.key").string()};
    };
    say_.Title("--- Flow A with the certificate RSPF, device " + std::string(kDevice3) + " ---");
    FlowADevice direct{kDevice3, cert_claims_[kDevice3], "Cold store", "device-3",
                       credential(kDevice3), "the certificate RSPF with the MEF",
                       "(mutual TLS: the device certificate and the MEF's FQDN certificate; the MEF "
                       "checks the chain and the CRL;"};
    MTE_TRY(EnrolFlowA(direct));

    say_.Title("--- Flow B with the certificate RSPF inside the outer session, device " +
               std::string(kDevice4) + " ---");
    MTE_TRY_ASSIGN(auto code, Exec({Bin("mte-enrolee"), "new-setup-code"}));
    FlowBDevice via_obf{kDevice4, LastLine(code), "device-4", credential(kDevice4), "Loading bay",
                        "grey box above the loading bay door"};
    MTE_TRY(EnrolFlowB(via_obf));

    say_.Title("--- A revoked device certificate is refused, device " + std::string(kDevice5) +
               " ---");
    nlohmann::json claim = {{"deviceId", kDevice5},
                            {"claimCode", cert_claims_[kDevice5]},
                            {"label", "Stolen unit"}};
    MTE_TRY_ASSIGN(auto entry, Api("POST", "/enrolees", &claim, 201));
    int64_t id = entry.value("id", int64_t{0});
    std::vector<std::string> argv = {Bin("mte-enrolee"), "enrol", "--mef", Mef(), "--mef-fqdn",
                                     kMefFqdn, "--ca", CaFile()};
    auto creds = credential(kDevice5);
    argv.insert(argv.end(), creds.begin(), creds.end());
    argv.insert(argv.end(), {"--state", (work_ / "device-5").string()});
    if (Exec(argv)) return Problem(std::string(kDevice5) + " enrolled with a revoked certificate");
    MTE_TRY_ASSIGN(auto view, Api("GET", "/enrolees/" + std::to_string(id), nullptr, 200));
    if (Str(view, "state") != "pending" || !Str(view, "keId").empty()) {
      return Problem("the refused enrolment of " + std::string(kDevice5) + " changed its entry");
    }
    say_.Line("refused as above (RSC 4103); the portal still shows enrolee " +
              std::to_string(id) + " " + Str(view, "state") + ", with no KeID");
    return {};
  }

  // The stakeholder revokes an enrolled device (it went missing): the MTE retires its Km at the MAF
  // through the outbox, and the device's master credential stops working.
  Result<void> Revocation() {
    const int64_t id = flow_b_ids_[kDevice2];
    const fs::path state = work_ / "device-2";
    say_.Title("=== Revocation: " + std::string(kDevice2) +
               " went missing from the barn; its stakeholder revokes it ===");
    MTE_TRY_ASSIGN(auto revoked,
                   Api("POST", "/enrolees/" + std::to_string(id) + "/revoke", nullptr, 200));
    say_.Line("enrolee " + std::to_string(id) + " is " + Str(revoked, "state") +
              ": its unused tokens and its Ke are invalid; the MEF queued the retirement of its Km "
              "(generation " + std::to_string(revoked.value("generation", int64_t{0})) +
              ") for the MAF");
    say_.Prompt("> GET https://localhost:" + std::to_string(portal_port_) + "/api/v1/enrolees/" +
                std::to_string(id) + "   (until mafDelivery is \"delivered\")");
    for (;;) {
      MTE_TRY_ASSIGN(auto view,
                     Api("GET", "/enrolees/" + std::to_string(id), nullptr, 200, /*show=*/false));
      if (Str(view, "state") == "revoked" && Str(view, "mafDelivery") == "delivered") break;
      if (TimeUp()) return OutOfTime("waiting for the MAF retirement of enrolee " + std::to_string(id));
      std::this_thread::sleep_for(kPollInterval);
    }
    say_.Line("the MAF retired the credential");
    say_.Title("The missing device's MAF handshake with its old KmID/Km is refused");
    if (Exec({Bin("mte-enrolee"), "maf-check", "--maf", Maf(), "--maf-fqdn", kMafFqdn, "--state",
              state.string()})) {
      return Problem(std::string(kDevice2) + "'s revoked Km still opens the MAF");
    }
    say_.Line("refused as above: the MAF no longer knows the KmID");
    return {};
  }

  Result<void> OperatorView() {
    say_.Title("The operator's view (while mte serve runs)");
    MTE_TRY(Exec({Bin("mte"), "admin", "--data", Data(), "enrolee", "list"}));
    return {};
  }

  Result<void> StopServer() {
    say_.Title("Stopping the MTE (SIGTERM)");
    auto grace = std::max(Remaining(), std::chrono::milliseconds(1000));
    bool clean = server_->Stop(std::min<std::chrono::milliseconds>(grace, kShutdownGrace));
    if (!clean) return Problem("mte serve did not stop within its grace period after SIGTERM");
    if (!WIFEXITED(server_->status) || WEXITSTATUS(server_->status) != 0) {
      return Problem("mte serve " + DescribeStatus(server_->status) + " on SIGTERM");
    }
    say_.Line("mte serve stopped cleanly");
    return {};
  }

  void Cleanup() {
    if (device_) device_->Kill();
    if (server_) server_->Stop(std::chrono::seconds(5));
    if (!work_.empty() && !options_.keep) {
      std::error_code ec;
      fs::remove_all(work_, ec);
    }
    for (auto* s : {&kpm1_, &kpm2_, &password_, &bearer_}) WipeString(*s);
  }

  DemoOptions options_;
  Deadline deadline_;
  Narrator say_;
  fs::path bin_dir_;
  fs::path work_;
  std::optional<Child> server_;
  std::optional<Child> device_;
  uint16_t portal_port_ = 0, mef_port_ = 0, maf_port_ = 0;
  std::shared_ptr<const crypto::TlsContext> portal_tls_;
  std::string kpm1_, kpm2_, password_, bearer_, claim1_, setup_code_;
  std::map<std::string, std::string> cert_claims_;  // device -> claim code (label data)
  std::map<std::string, int64_t> flow_b_ids_;        // device -> its Flow B entry
};

}  // namespace

int RunDemo(const DemoOptions& options) {
  // Interrupts end the demo through its normal failure path, so children are stopped and the
  // temporary directory removed. Children get default dispositions back (see Spawn).
  struct sigaction on_interrupt {};
  on_interrupt.sa_handler = OnInterrupt;
  sigemptyset(&on_interrupt.sa_mask);
  sigaction(SIGINT, &on_interrupt, nullptr);
  sigaction(SIGTERM, &on_interrupt, nullptr);
  sigaction(SIGHUP, &on_interrupt, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::optional<Error> failure;
  {
    Demo demo(options);
    try {
      auto ok = demo.Run();
      if (!ok) failure = ok.error();
    } catch (const std::exception& e) {
      failure = Error{ErrorKind::kInternal, Errc::kInvariant, e.what()};
    }
    if (failure) demo.ShowServerLogTail();
  }
  if (failure) {
    std::fflush(stdout);
    std::fprintf(stderr, "mte demo: %s\n", failure->detail.c_str());
    return 1;
  }
  return 0;
}

}  // namespace mte
