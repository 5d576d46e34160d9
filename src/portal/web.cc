// The portal's web application: server-rendered HTML pages for the operations of the REST API
// (docs/web.md). Browser sessions are cookies (`__Host-mte_session`, HttpOnly, Secure,
// SameSite=Strict) with an idle and an absolute expiry; every state-changing form carries a
// CSRF token derived from the session; every page carries a Content-Security-Policy without
// 'unsafe-inline'. The only script is /static/app.js, which polls the enrolees' states.
#include <spdlog/spdlog.h>

#include <cctype>
#include <array>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <vector>
#include <string>
#include <string_view>

#include "base/log.h"
#include "crypto/keys.h"
#include "mte/enrolees.h"
#include "portal/portal.h"
#include "qr/image.h"

namespace mte {
namespace {

constexpr std::string_view kSessionCookie = "__Host-mte_session";
constexpr std::string_view kLoginCookie = "__Host-mte_login";
constexpr size_t kMaxFormBytes = 16 * 1024;
constexpr size_t kMaxFormFields = 16;
constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// --- HTTP pieces --------------------------------------------------------------------------------

// The headers every HTML page carries (docs/web.md "Security headers").
void SecurityHeaders(proto::HttpResponse& response) {
  response.headers.Set("Content-Security-Policy",
                       "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
                       " connect-src 'self'; form-action 'self'; base-uri 'none';"
                       " frame-ancestors 'none'");
  response.headers.Set("X-Content-Type-Options", "nosniff");
  response.headers.Set("X-Frame-Options", "DENY");
  // same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with its form
  // posts, and the origin check below could not tell our own forms from a sandboxed attacker.
  response.headers.Set("Referrer-Policy", "same-origin");
  response.headers.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains");
  response.headers.Set("Cross-Origin-Opener-Policy", "same-origin");
  response.headers.Set("Cache-Control", "no-store");
}

proto::HttpResponse Html(int status, std::string body) {
  proto::HttpResponse response;
  response.status = status;
  response.headers.Set("Content-Type", "text/html; charset=utf-8");
  SecurityHeaders(response);
  response.body = std::move(body);
  return response;
}

proto::HttpResponse SeeOther(std::string_view location) {
  proto::HttpResponse response;
  response.status = 303;
  response.headers.Set("Location", location);
  SecurityHeaders(response);
  return response;
}

std::string Cookie(std::string_view name, std::string_view value, int64_t max_age) {
  return std::string(name) + "=" + std::string(value) +
         "; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age);
}

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int hi = HexValue(text[i + 1]), lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// An application/x-www-form-urlencoded body (or query): name -> value; nullopt if malformed,
// oversized or a name repeats.
std::optional<std::map<std::string, std::string>> ParseForm(std::string_view body) {
  std::map<std::string, std::string> fields;
  if (body.size() > kMaxFormBytes) return std::nullopt;
  while (!body.empty()) {
    size_t amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto name = PercentDecode(pair.substr(0, eq));
    auto value = PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (!name || !value || fields.size() >= kMaxFormFields) return std::nullopt;
    if (!fields.emplace(std::move(*name), std::move(*value)).second) return std::nullopt;
  }
  return fields;
}

std::optional<std::string> CookieValue(const proto::HttpRequest& request, std::string_view name) {
  auto header = request.headers.Get("Cookie");
  if (!header) return std::nullopt;
  std::string_view rest = *header;
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view item = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (item.size() > name.size() && item.substr(0, name.size()) == name &&
        item[name.size()] == '=') {
      return std::string(item.substr(name.size() + 1));
    }
  }
  return std::nullopt;
}

// The CSRF token of a session (or of a sign-in page): SHA-256 over a purpose label and the
// cookie's secret value, base64url. A page from another origin can neither read the cookie nor
// this value, so a forged form cannot carry it.
std::string CsrfToken(std::string_view purpose, std::string_view secret) {
  std::string input = std::string(purpose) + "|" + std::string(secret);
  auto digest = crypto::Sha256(AsBytes(input));
  SecureWipe(input.data(), input.size());
  return Base64UrlEncode(digest);
}

bool CsrfMatches(const std::map<std::string, std::string>& form, std::string_view expected) {
  auto it = form.find("csrf");
  return it != form.end() && ConstantTimeEqual(AsBytes(it->second), AsBytes(expected));
}

// A request that names an origin must name ours (defence in depth next to the CSRF token and
// SameSite=Strict).
bool SameOrigin(const proto::HttpRequest& request) {
  auto origin = request.headers.Get("Origin");
  if (!origin) return true;
  auto host = request.headers.Get("Host");
  return host && *origin == "https://" + std::string(*host);
}

std::string Time(int64_t unix_seconds) {
  if (unix_seconds == 0) return "";
  char buf[32];
  return std::string(FormatRfc3339(unix_seconds, buf));
}

// --- the enrolee's state, as the stakeholder sees it ---------------------------------------------

struct DisplayState {
  const char* key;    // pending, token-issued, token-expired, enrolled, expired, revoked
  const char* label;  // what the page shows
};

DisplayState StateOf(const store::EnroleeRecord& e, int64_t now) {
  switch (e.state) {
    case store::EnroleeState::kRevoked:
      return {"revoked", "revoked"};
    case store::EnroleeState::kEnrolled:
      if (e.ke_expires_at != 0 && e.ke_expires_at <= now) return {"expired", "expired"};
      return {"enrolled", "enrolled"};
    case store::EnroleeState::kPending:
      break;
  }
  if (e.token_expires_at > now) return {"token-issued", "token issued"};
  if (e.token_expires_at != 0) return {"token-expired", "token expired"};
  return {"pending", "pending"};
}

// --- static assets ---------------------------------------------------------------------------

constexpr std::string_view kStyle = R"css(
:root { --fg: #1b1f24; --muted: #5b6470; --line: #d5dae0; --accent: #0b5cad; --bad: #a3261b;
  --good: #1d6b35; --bg: #ffffff; --panel: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .75rem 1.5rem;
  padding: .75rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header .brand { font-weight: 700; margin-right: auto; }
header nav a { margin-right: 1rem; }
header form { margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
a { color: var(--accent); }
table { width: 100%; border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
form.stack { display: grid; gap: .5rem; max-width: 28rem; margin: .5rem 0 1rem; }
form.inline { display: inline; }
label { display: grid; gap: .2rem; font-weight: 600; font-size: .9rem; }
input { font: inherit; padding: .45rem .55rem; border: 1px solid #9aa3ad; border-radius: 4px; }
button { font: inherit; padding: .45rem .9rem; border-radius: 4px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; justify-self: start; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
button:focus-visible, a:focus-visible, input:focus-visible { outline: 3px solid #f2b01e;
  outline-offset: 2px; }
.state { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .85rem;
  background: var(--panel); border: 1px solid var(--line); }
.state-enrolled { color: var(--good); border-color: var(--good); }
.state-revoked, .state-expired, .state-token-expired { color: var(--bad); border-color: var(--bad); }
.state-token-issued { color: var(--accent); border-color: var(--accent); }
.notice { padding: .6rem .8rem; border-radius: 4px; background: var(--panel);
  border-left: 4px solid var(--accent); margin: .5rem 0 1rem; }
.error { border-left-color: var(--bad); }
.qr { max-width: 30rem; background: #fff; }
.qr svg { display: block; width: 100%; height: auto; }
.secret { font-family: ui-monospace, monospace; overflow-wrap: anywhere; background: var(--panel);
  padding: .4rem .6rem; border-radius: 4px; }
.muted { color: var(--muted); font-size: .9rem; }
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 40rem) { .hide-narrow { display: none; } }
)css";

// Keeps every [data-enrolee-state] element in step with GET /states (same origin, the session
// cookie), so that an entry turns "enrolled" without a reload.
constexpr std::string_view kScript = R"js('use strict';
(function () {
  const cells = document.querySelectorAll('[data-enrolee-state]');
  if (cells.length === 0) return;
  async function refresh() {
    try {
      const response = await fetch('/states', { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) return;
      const states = await response.json();
      for (const cell of cells) {
        const now = states[cell.dataset.enroleeState];
        if (!now || cell.dataset.state === now.state) continue;
        cell.dataset.state = now.state;
        cell.textContent = now.label;
        cell.className = 'state state-' + now.state;
      }
    } catch (e) {
      // The next round tries again.
    }
  }
  setInterval(refresh, 2000);
})();
)js";

proto::HttpResponse Asset(std::string_view content_type, std::string_view body) {
  proto::HttpResponse response;
  response.headers.Set("Content-Type", content_type);
  SecurityHeaders(response);
  response.headers.Set("Cache-Control", "no-cache");
  response.body = std::string(body);
  return response;
}

}  // namespace

// One request's view of the web application.
class Portal::Web {
 public:
  Web(Portal& portal, const proto::HttpRequest& request, const std::string& peer_address)
      : p_(portal), request_(request), peer_(peer_address), now_(UnixSeconds(p_.clock_.Now())) {}

  proto::HttpResponse Route(std::string_view target) {
    const std::string& method = request_.method;
    if (target == "/static/style.css") return Asset("text/css; charset=utf-8", kStyle);
    if (target == "/static/app.js") return Asset("text/javascript; charset=utf-8", kScript);
    if (target == "/favicon.ico") {  // no icon, and no error in the browser's console either
      proto::HttpResponse none;
      none.status = 204;
      SecurityHeaders(none);
      return none;
    }
    if (target == "/login") {
      if (method == "GET") return LoginPage(200, "");
      if (method == "POST") return LoginSubmit();
      return Message(405, "Method not allowed", "Use the sign-in form.");
    }
    if (method != "GET" && method != "POST") {
      return Message(405, "Method not allowed", "This page takes GET and POST only.");
    }
    if (method == "POST" && !SameOrigin(request_)) {
      return Message(403, "Forbidden", "The form came from another site.");
    }
    if (!SignedIn()) {
      // The pages lead to the sign-in page; anything else (a favicon, say) is not found, so
      // that no stray request replaces the sign-in page's cookie.
      if (target == "/" || target == "/enrolees" || target == "/account" || target == "/audit" ||
          target == "/logout" || target.starts_with("/enrolees/") ||
          target.starts_with("/account/")) {
        return SeeOther("/login");
      }
      if (target == "/states" || target == "/audit.jsonl") {
        return Message(401, "Signed out", "Sign in first.");
      }
      return NotFound();
    }
    if (method == "POST") {
      form_ = ParseForm(request_.body);
      if (!form_) return Message(400, "Bad request", "The form could not be read.");
      if (!CsrfMatches(*form_, csrf_)) {
        spdlog::warn("portal: '{}' sent a form without a valid CSRF token from {}", who_.name,
                     peer_);
        return Message(403, "Forbidden",
                       "The form has expired or did not come from this portal. Go back, reload "
                       "the page and try again.");
      }
    }
    if (target == "/") return SeeOther("/enrolees");
    if (target == "/logout" && method == "POST") return Logout();
    if (target == "/states" && method == "GET") return States();
    if (target == "/enrolees") return method == "GET" ? EnroleesPage(200, "") : AddEnrolee();
    if (target == "/account") {
      return method == "GET" ? AccountPage(200, "", "") : NotFound();
    }
    if (target == "/account/tokens" && method == "POST") return CreateApiToken();
    if (target == "/account/password" && method == "POST") return ChangePassword();
    if (target == "/account/totp" && method == "POST") return BeginTotp();
    if (target == "/account/totp/confirm" && method == "POST") return ConfirmTotp();
    if (target == "/account/totp/disable" && method == "POST") return DisableTotp();
    if (target == "/account/recovery-codes" && method == "POST") return NewRecoveryCodes();
    constexpr std::string_view kTokens = "/account/tokens/";
    if (target.starts_with(kTokens) && target.ends_with("/revoke") && method == "POST") {
      return RevokeApiToken(
          target.substr(kTokens.size(), target.size() - kTokens.size() - 7));
    }
    if (target == "/audit" && method == "GET") return AuditPage();
    if (target == "/audit.jsonl" && method == "GET") return AuditExport();
    constexpr std::string_view kEnrolee = "/enrolees/";
    if (target.starts_with(kEnrolee)) {
      std::string_view rest = target.substr(kEnrolee.size());
      const size_t slash = rest.find('/');
      std::string_view id = rest.substr(0, slash);
      std::string_view action =
          slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
      auto enrolee = p_.OwnEnrolee(id, who_);
      if (!enrolee) {
        if (enrolee.error().code == Errc::kNotFound) return NotFound();
        return Internal(enrolee.error());
      }
      if (action.empty() && method == "GET") return EnroleePage(*enrolee, 200, "", false);
      if (method == "POST") {
        if (action == "tokens") return IssueToken(*enrolee);
        if (action == "revoke") return Revoke(*enrolee);
        if (action == "delete") return Delete(*enrolee);
      }
    }
    return NotFound();
  }

 private:
  // --- sessions ---

  bool SignedIn() {
    auto token = CookieValue(request_, kSessionCookie);
    if (!token || token->empty() || token->size() > 128) return false;
    auto found = p_.store_.FindSession(crypto::Sha256(AsBytes(*token)), now_);
    if (!found || !found->has_value()) {
      SecureWipe(token->data(), token->size());
      return false;
    }
    who_ = std::move(**found);
    session_hash_ = crypto::Sha256(AsBytes(*token));
    csrf_ = CsrfToken("session", *token);
    SecureWipe(token->data(), token->size());
    return true;
  }

  proto::HttpResponse LoginPage(int status, std::string_view error, bool ask_code = false) {
    // The sign-in secret the login form's CSRF token is bound to: the browser's own while it
    // has one (so that two open sign-in pages both work), else a fresh one.
    std::string secret_text;
    if (auto held = CookieValue(request_, kLoginCookie); held && held->size() == 43 &&
                                                           held->find_first_not_of(kBase64Url) ==
                                                               std::string::npos) {
      secret_text = std::move(*held);
    } else {
      Bytes secret(32);
      p_.rng_.Fill(secret);
      secret_text = Base64UrlEncode(secret);
      SecureWipe(secret.data(), secret.size());
    }
    std::string body = Layout("Sign in", false, [&](std::string& out) {
      out += "<h1>Sign in</h1>";
      if (!error.empty()) {
        out += "<p class=\"notice error\" role=\"alert\">" + Escape(error) + "</p>";
      }
      out += "<form class=\"stack\" method=\"post\" action=\"/login\">";
      out += Hidden(CsrfToken("login", secret_text));
      out += "<label for=\"name\">Name<input id=\"name\" name=\"name\" autocomplete=\"username\""
             " required maxlength=\"64\" autofocus></label>";
      out += "<label for=\"password\">Password<input id=\"password\" name=\"password\""
             " type=\"password\" autocomplete=\"current-password\" required"
             " maxlength=\"256\"></label>";
      out += std::string("<label for=\"code\">Authentication code") +
             (ask_code ? "" : " (only if you turned on two-step sign-in)") +
             "<input id=\"code\" name=\"code\" autocomplete=\"one-time-code\""
             " inputmode=\"text\" maxlength=\"64\"" + (ask_code ? " required" : "") +
             " aria-describedby=\"code-help\"></label><p id=\"code-help\" class=\"muted\">"
             "The 6 digits your authenticator app shows, or one of your recovery codes.</p>";
      out += "<button type=\"submit\">Sign in</button></form>";
    });
    auto response = Html(status, std::move(body));
    response.headers.Add("Set-Cookie", Cookie(kLoginCookie, secret_text, 3600));
    SecureWipe(secret_text.data(), secret_text.size());
    return response;
  }

  proto::HttpResponse LoginSubmit() {
    if (!SameOrigin(request_)) return Message(403, "Forbidden", "The form came from another site.");
    auto form = ParseForm(request_.body);
    if (!form) return LoginPage(400, "The form could not be read.");
    auto secret = CookieValue(request_, kLoginCookie);
    if (!secret || !CsrfMatches(*form, CsrfToken("login", *secret))) {
      return LoginPage(403, "The sign-in form has expired. Please try again.");
    }
    std::string name = (*form)["name"];
    SecretString password(std::move((*form)["password"]));
    if (name.empty() || name.size() > 64 || password.size() > 256) {
      return LoginPage(400, "Give your name and password.");
    }
    SecretString code(std::move((*form)["code"]));
    Portal::LoginAttempt attempt;
    auto who = p_.CheckLogin(name, password, &code, peer_, &attempt);
    if (!who) {
      if (who.error().code == Errc::kRateLimited) {
        auto response = LoginPage(429, "Too many failed sign-ins. Try again in " +
                                           std::to_string(attempt.retry_after) + " seconds.");
        response.headers.Set("Retry-After", std::to_string(attempt.retry_after));
        return response;
      }
      if (attempt.second_factor_required) {
        // The next step of a sign-in rather than a failure when no code was given yet.
        return LoginPage(code.size() == 0 ? 200 : 401,
                         code.size() == 0
                             ? "This account uses two-step sign-in: give your password again "
                               "with the code from your authenticator app."
                             : "The authentication code is wrong or has been used. Give your "
                               "password again with the app's current code.",
                         true);
      }
      if (who.error().code == Errc::kAuthFailed) {
        return LoginPage(401, "Name or password is wrong.");
      }
      return Internal(who.error());
    }
    // A new session id at every sign-in: nothing from before it is ever a session.
    int64_t expires_at = 0;
    auto token = p_.StartSession(*who, store::SessionKind::kBrowser, peer_, &expires_at);
    if (!token) return Internal(token.error());
    auto response = SeeOther("/enrolees");
    response.headers.Add("Set-Cookie",
                         Cookie(kSessionCookie, *token, p_.settings_.session_seconds));
    response.headers.Add("Set-Cookie", Cookie(kLoginCookie, "", 0));
    SecureWipe(token->data(), token->size());
    spdlog::info("portal: '{}' signed in from {}", who->name, peer_);
    return response;
  }

  proto::HttpResponse Logout() {
    auto ended = p_.store_.DeleteSession(
        session_hash_, {0, now_, "stakeholder:" + who_.name, "portal.logout",
                        "stakeholder " + who_.name, "browser session from " + peer_});
    if (!ended) return Internal(ended.error());
    auto response = SeeOther("/login");
    response.headers.Add("Set-Cookie", Cookie(kSessionCookie, "", 0));
    return response;
  }

  // --- pages ---

  proto::HttpResponse EnroleesPage(int status, std::string_view error) {
    auto list = VisibleEnrolees();
    if (!list) return Internal(list.error());
    std::string body = Layout("Enrolees", true, [&](std::string& out) {
      out += "<h1>Enrolees</h1>";
      if (!error.empty()) {
        out += "<p class=\"notice error\" role=\"alert\">" + Escape(error) + "</p>";
      }
      if (list->empty()) {
        out += "<p class=\"muted\">No enrolees yet. Add one below.</p>";
      } else {
        out += "<table><thead><tr><th>#</th><th>Label</th><th>Device</th><th>State</th>"
               "<th>RSPF</th>";
        if (who_.is_admin) out += "<th class=\"hide-narrow\">Stakeholder</th>";
        out += "<th class=\"hide-narrow\">Updated</th></tr></thead><tbody>";
        for (const auto& e : *list) {
          const std::string id = std::to_string(e.id);
          out += "<tr><td><a href=\"/enrolees/" + id + "\">" + id + "</a></td><td><a href=\"" +
                 "/enrolees/" + id + "\">" + Escape(e.label.empty() ? "(no label)" : e.label) +
                 "</a></td><td>" + Escape(e.device_id) + "</td><td>" + StateBadge(e) +
                 "</td><td>" + Escape(e.rspf) + "</td>";
          if (who_.is_admin) {
            out += "<td class=\"hide-narrow\">" + Escape(e.stakeholder_name) + "</td>";
          }
          out += "<td class=\"hide-narrow\">" + Time(e.updated_at) + "</td></tr>";
        }
        out += "</tbody></table>";
      }
      out += "<div class=\"grid\"><section><h2>Add a device you hold (Flow A)</h2>"
             "<p class=\"muted\">Proof of control: the device ID and the claim code from its "
             "label.</p><form class=\"stack\" method=\"post\" action=\"/enrolees\">" +
             Hidden(csrf_) +
             "<input type=\"hidden\" name=\"flow\" value=\"A\">"
             "<label for=\"a-device\">Device ID<input id=\"a-device\" name=\"deviceId\""
             " required maxlength=\"255\"></label>"
             "<label for=\"a-code\">Claim code<input id=\"a-code\" name=\"claimCode\""
             " type=\"password\" autocomplete=\"off\" required maxlength=\"128\"></label>"
             "<label for=\"a-label\">Label<input id=\"a-label\" name=\"label\""
             " maxlength=\"256\"></label>"
             "<button type=\"submit\">Add device</button></form></section>";
      out += "<section><h2>Add an entry for an OBF (Flow B)</h2>"
             "<p class=\"muted\">The technician's On-Boarding Function proves control at the "
             "device; the device is identified when it enrols.</p>"
             "<form class=\"stack\" method=\"post\" action=\"/enrolees\">" +
             Hidden(csrf_) +
             "<input type=\"hidden\" name=\"flow\" value=\"B\">"
             "<label for=\"b-label\">Label<input id=\"b-label\" name=\"label\""
             " maxlength=\"256\"></label>"
             "<label for=\"b-info\">Identifying information<input id=\"b-info\""
             " name=\"deviceInfo\" maxlength=\"1024\"></label>"
             "<label for=\"b-device\">Device ID (optional)<input id=\"b-device\""
             " name=\"deviceId\" maxlength=\"255\"></label>"
             "<button type=\"submit\">Add entry</button></form></section></div>";
    });
    return Html(status, std::move(body));
  }

  proto::HttpResponse AddEnrolee() {
    auto& form = *form_;
    Result<store::EnroleeRecord> added = store::EnroleeRecord{};
    if (form["flow"] == "A") {
      SecretString code(std::move(form["claimCode"]));
      if (code.size() > kMaxClaimCodeLength) return EnroleesPage(400, "The claim code is too long.");
      int64_t retry_after = 0;
      added = p_.Claim(who_, form["deviceId"], code, form["label"], peer_, &retry_after);
      if (!added && added.error().code == Errc::kRateLimited) {
        auto response = EnroleesPage(429, "Too many failed claims. Try again in " +
                                              std::to_string(retry_after) + " seconds.");
        response.headers.Set("Retry-After", std::to_string(retry_after));
        return response;
      }
    } else if (form["flow"] == "B") {
      added = p_.AddFlowBEntry(who_, form["label"], form["deviceInfo"], form["deviceId"]);
    } else {
      return EnroleesPage(400, "Choose Flow A or Flow B.");
    }
    if (!added) {
      const int status = p_.StatusOf(added.error());
      if (status == 500) return Internal(added.error());
      return EnroleesPage(status, added.error().detail);
    }
    return SeeOther("/enrolees/" + std::to_string(added->id));
  }

  proto::HttpResponse EnroleePage(const store::EnroleeRecord& e, int status,
                                  std::string_view notice, bool notice_is_error) {
    auto timeline = p_.Timeline(e);
    if (!timeline) return Internal(timeline.error());
    const std::string id = std::to_string(e.id);
    const std::string title = e.label.empty() ? "Enrolee " + id : e.label;
    std::string body = Layout(title, true, [&](std::string& out) {
      out += "<p><a href=\"/enrolees\">&larr; All enrolees</a></p>";
      out += "<h1>" + Escape(title) + "</h1>";
      if (!notice.empty()) {
        out += std::string("<p class=\"notice") + (notice_is_error ? " error" : "") +
               "\" role=\"status\">" + Escape(notice) + "</p>";
      }
      out += "<dl><dt>Enrolee</dt><dd>" + id + "</dd><dt>State</dt><dd>" + StateBadge(e) +
             "</dd><dt>Device ID</dt><dd>" +
             Escape(e.device_id.empty() ? "(identified when it enrols)" : e.device_id) +
             "</dd>";
      if (!e.device_info.empty()) {
        out += "<dt>Identifying information</dt><dd>" + Escape(e.device_info) + "</dd>";
      }
      out += "<dt>RSPF</dt><dd>" + Escape(e.rspf.empty() ? "-" : e.rspf) + "</dd>";
      if (!e.ke_id.empty()) out += "<dt>KeID</dt><dd>" + Escape(e.ke_id) + "</dd>";
      if (e.ke_expires_at) out += "<dt>Ke expires</dt><dd>" + Time(e.ke_expires_at) + "</dd>";
      if (e.token_expires_at) {
        out += "<dt>Token expires</dt><dd>" + Time(e.token_expires_at) + "</dd>";
      }
      if (who_.is_admin) {
        out += "<dt>Stakeholder</dt><dd>" + Escape(e.stakeholder_name) + "</dd>";
      }
      out += "<dt>MAF delivery</dt><dd>" + std::string(store::ToString(e.maf_delivery)) +
             "</dd></dl>";
      out += "<h2>Actions</h2><p>";
      out += "<form class=\"inline\" method=\"post\" action=\"/enrolees/" + id + "/tokens\">" +
             Hidden(csrf_) + "<button type=\"submit\">" +
             (e.state == store::EnroleeState::kRevoked ? "Re-arm with a new Enrolment-Token"
                                                       : "Issue an Enrolment-Token") +
             "</button></form> ";
      if (e.state != store::EnroleeState::kRevoked) {
        out += "<form class=\"inline\" method=\"post\" action=\"/enrolees/" + id +
               "/revoke\">" + Hidden(csrf_) +
               "<button type=\"submit\" class=\"danger\">Revoke</button></form> ";
      }
      if (e.state != store::EnroleeState::kEnrolled) {
        out += "<form class=\"inline\" method=\"post\" action=\"/enrolees/" + id +
               "/delete\">" + Hidden(csrf_) +
               "<button type=\"submit\" class=\"secondary\">Delete</button></form>";
      }
      out += "</p><h2>Timeline</h2>";
      out += "<table><thead><tr><th>When</th><th>Who</th><th>What</th><th>Detail</th></tr>"
             "</thead><tbody>";
      for (const auto& a : *timeline) {
        out += "<tr><td>" + Time(a.at) + "</td><td>" + Escape(a.actor) + "</td><td>" +
               Escape(a.action) + "</td><td>" + Escape(a.detail) + "</td></tr>";
      }
      out += "</tbody></table>";
    });
    return Html(status, std::move(body));
  }

  proto::HttpResponse IssueToken(const store::EnroleeRecord& e) {
    auto bundle = p_.NewTokenBundle(e, who_);
    if (!bundle) {
      const int status = p_.StatusOf(bundle.error());
      if (status == 500) return Internal(bundle.error());
      return EnroleePage(e, status, bundle.error().detail, true);
    }
    std::string bundle_text = bundle->dump();
    auto svg = qr::BundleQrSvg(*bundle);
    // The entry as the token left it (re-armed when it was revoked, with its token's expiry).
    store::EnroleeRecord now_e = e;
    if (auto fresh = p_.store_.GetEnrolee(e.id); fresh && fresh->has_value()) now_e = **fresh;
    auto* token = (*bundle)["token"].get_ptr<std::string*>();
    SecureWipe(token->data(), token->size());
    const std::string id = std::to_string(e.id);
    std::string body = Layout("Enrolment-Token", true, [&](std::string& out) {
      out += "<p><a href=\"/enrolees/" + id + "\">&larr; Back to the enrolee</a></p>";
      out += "<h1>Enrolment-Token for enrolee " + id + "</h1>";
      out += "<p class=\"notice\" role=\"status\">Shown once: hand it to the On-Boarding "
             "Function now. It expires at <time id=\"token-expiry\">" +
             Escape(bundle->value("expiresAt", "")) +
             "</time>. Issuing another token revokes this one.</p>";
      out += "<p>Enrolee state: " + StateBadge(now_e) + "</p>";
      if (svg) {
        out += "<figure><div id=\"bundle-qr\" class=\"qr\" role=\"img\" aria-label=\"QR code "
               "of the token bundle\">" +
               *svg +
               "</div><figcaption class=\"muted\">Scan it with the On-Boarding Function, or "
               "photograph it for <code>mte-obf deliver --qr PHOTO</code>.</figcaption></figure>";
        SecureWipe(svg->data(), svg->size());
      } else {
        spdlog::warn("portal: no QR code for enrolee {}: {}", e.id, Describe(svg.error()));
        out += "<p class=\"notice error\">No QR code: " + Escape(svg.error().detail) + "</p>";
      }
      out += "<p><a id=\"bundle-download\" download=\"enrolment-bundle-" + id +
             ".json\" href=\"data:application/json;charset=utf-8," +
             PercentEncode(bundle_text) +
             "\">Download the token bundle (JSON)</a> for <code>mte-obf deliver --bundle "
             "FILE</code>.</p>";
    });
    SecureWipe(bundle_text.data(), bundle_text.size());
    return Html(201, std::move(body));
  }

  proto::HttpResponse Revoke(const store::EnroleeRecord& e) {
    auto revoked = RevokeEnrolee(p_.store_, p_.kek_, p_.rng_, e.id, now_,
                                 "stakeholder:" + who_.name, "from " + peer_);
    if (!revoked) return Internal(revoked.error());
    if (revoked->revoked_now) spdlog::info("portal: '{}' revoked enrolee {}", who_.name, e.id);
    return EnroleePage(revoked->enrolee, 200,
                       "Revoked: its unused tokens are void, its Ke is invalid and the MAF "
                       "retires its credentials.",
                       false);
  }

  proto::HttpResponse Delete(const store::EnroleeRecord& e) {
    auto deleted = mte::DeleteEnrolee(p_.store_, e, now_, "stakeholder:" + who_.name);
    if (!deleted) {
      const int status = p_.StatusOf(deleted.error());
      if (status == 500) return Internal(deleted.error());
      return EnroleePage(e, status, deleted.error().detail, true);
    }
    spdlog::info("portal: '{}' deleted enrolee {}", who_.name, e.id);
    return SeeOther("/enrolees");
  }

  proto::HttpResponse States() {
    auto list = VisibleEnrolees();
    if (!list) return Internal(list.error());
    nlohmann::json states = nlohmann::json::object();
    for (const auto& e : *list) {
      DisplayState s = StateOf(e, now_);
      states[std::to_string(e.id)] = {{"state", s.key}, {"label", s.label}};
    }
    proto::HttpResponse response;
    response.headers.Set("Content-Type", "application/json");
    SecurityHeaders(response);
    response.body = states.dump();
    return response;
  }

  proto::HttpResponse AccountPage(int status, std::string_view notice, std::string_view secret,
                                  const std::vector<std::string>* recovery_codes = nullptr) {
    auto tokens = p_.store_.ListApiTokens(who_.id);
    if (!tokens) return Internal(tokens.error());
    auto totp = p_.store_.FindTotp(who_.id);
    if (!totp) return Internal(totp.error());
    const bool totp_on = totp->has_value() && (*totp)->confirmed;
    std::string body = Layout("Account", true, [&](std::string& out) {
      out += "<h1>Account: " + Escape(who_.name) + "</h1>";
      if (!notice.empty()) {
        out += "<p class=\"notice\" role=\"status\">" + Escape(notice) + "</p>";
      }
      if (!secret.empty()) {
        out += "<p>Your new API token, shown once (use it as <code>Authorization: Bearer "
               "&hellip;</code>):</p><p class=\"secret\" id=\"new-api-token\">" +
               Escape(secret) + "</p>";
      }
      if (recovery_codes != nullptr) {
        out += "<section aria-labelledby=\"codes-title\"><h2 id=\"codes-title\">Your recovery "
               "codes</h2><p>Shown once. Keep them somewhere safe: each signs you in once "
               "without the app.</p><ol class=\"secret\" id=\"recovery-codes\">";
        for (const auto& c : *recovery_codes) out += "<li>" + Escape(c) + "</li>";
        out += "</ol></section>";
      }
      out += "<h2>Two-step sign-in</h2>";
      if (totp_on) {
        out += "<p id=\"totp-state\">On: signing in asks for a code from your authenticator app. " +
               std::to_string((*totp)->recovery_codes_left) + " recovery codes left.</p>";
        for (auto [action, label, button] :
             {std::tuple{"/account/recovery-codes", "new-codes", "New recovery codes"},
              std::tuple{"/account/totp/disable", "disable", "Turn two-step sign-in off"}}) {
          const std::string id = std::string("code-") + label;
          out += "<form class=\"stack\" method=\"post\" action=\"" + std::string(action) + "\">" +
                 Hidden(csrf_) + "<label for=\"" + id + "\">Code from the app, or a recovery code"
                 "<input id=\"" + id + "\" name=\"code\" autocomplete=\"one-time-code\""
                 " required maxlength=\"64\"></label><button type=\"submit\"" +
                 (std::string_view(label) == "disable" ? " class=\"danger\"" : "") + ">" +
                 button + "</button></form>";
        }
      } else {
        out += "<p id=\"totp-state\">Off. With it on, signing in also asks for a 6-digit code "
               "from an authenticator app (TOTP, RFC 6238).</p><form method=\"post\""
               " action=\"/account/totp\">" + Hidden(csrf_) +
               "<button type=\"submit\">Set up two-step sign-in</button></form>";
      }
      out += "<h2>Personal API tokens</h2>";
      if (tokens->empty()) {
        out += "<p class=\"muted\">None. Scripts should use a token rather than your "
               "password.</p>";
      } else {
        out += "<table><thead><tr><th>Name</th><th>Created</th><th>Last used</th>"
               "<th>Expires</th><th></th></tr></thead><tbody>";
        for (const auto& t : *tokens) {
          out += "<tr><td>" + Escape(t.name) + "</td><td>" + Time(t.created_at) + "</td><td>" +
                 (t.last_used_at ? Time(t.last_used_at) : std::string("never")) + "</td><td>" +
                 (t.expires_at ? Time(t.expires_at) : std::string("never")) +
                 "</td><td><form class=\"inline\" method=\"post\" action=\"/account/tokens/" +
                 std::to_string(t.id) + "/revoke\">" + Hidden(csrf_) +
                 "<button type=\"submit\" class=\"danger\">Revoke</button></form></td></tr>";
        }
        out += "</tbody></table>";
      }
      out += "<form class=\"stack\" method=\"post\" action=\"/account/tokens\">" + Hidden(csrf_) +
             "<label for=\"token-name\">New token name<input id=\"token-name\" name=\"name\""
             " required maxlength=\"64\" pattern=\"[!-~]+\"></label>"
             "<button type=\"submit\">Create API token</button></form>";
      out += "<h2>Change password</h2>"
             "<form class=\"stack\" method=\"post\" action=\"/account/password\">" +
             Hidden(csrf_) +
             "<label for=\"current\">Current password<input id=\"current\""
             " name=\"currentPassword\" type=\"password\" autocomplete=\"current-password\""
             " required maxlength=\"256\"></label>"
             "<label for=\"new\">New password (12 characters or more)<input id=\"new\""
             " name=\"newPassword\" type=\"password\" autocomplete=\"new-password\" required"
             " minlength=\"12\" maxlength=\"256\"></label>"
             "<button type=\"submit\">Change password</button></form>"
             "<p class=\"muted\">Changing the password signs you out everywhere.</p>";
    });
    return Html(status, std::move(body));
  }

  proto::HttpResponse CreateApiToken() {
    auto created = p_.NewApiToken(who_, (*form_)["name"]);
    if (!created) {
      const int status = p_.StatusOf(created.error());
      if (status == 500) return Internal(created.error());
      return AccountPage(status, created.error().detail, "");
    }
    auto response = AccountPage(201, "Token '" + created->first.name + "' created.",
                                created->second);
    SecureWipe(created->second.data(), created->second.size());
    return response;
  }

  proto::HttpResponse RevokeApiToken(std::string_view id_text) {
    auto revoked = p_.RevokeApiToken(who_, id_text, peer_);
    if (!revoked) {
      if (revoked.error().code == Errc::kNotFound) return NotFound();
      return Internal(revoked.error());
    }
    return AccountPage(200, "Token revoked.", "");
  }

  proto::HttpResponse ChangePassword() {
    SecretString current(std::move((*form_)["currentPassword"]));
    SecretString replacement(std::move((*form_)["newPassword"]));
    auto changed = p_.ChangePassword(who_, current, replacement, peer_);
    if (!changed) {
      const int status = p_.StatusOf(changed.error());
      if (status == 500) return Internal(changed.error());
      return AccountPage(status, changed.error().detail, "");
    }
    auto response = Html(200, Layout("Password changed", false, [&](std::string& out) {
      out += "<h1>Password changed</h1><p class=\"notice\" role=\"status\">Every session has "
             "ended. <a href=\"/login\">Sign in</a> with the new password.</p>";
    }));
    response.headers.Add("Set-Cookie", Cookie(kSessionCookie, "", 0));
    return response;
  }

  proto::HttpResponse BeginTotp() {
    auto setup = p_.BeginTotp(who_, peer_);
    if (!setup) {
      const int status = p_.StatusOf(setup.error());
      if (status == 500) return Internal(setup.error());
      return AccountPage(status, setup.error().detail, "");
    }
    auto response = TotpSetupPage(201, *setup, "");
    SecureWipe(setup->secret_base32.data(), setup->secret_base32.size());
    SecureWipe(setup->otpauth_uri.data(), setup->otpauth_uri.size());
    return response;
  }

  // The QR code and the secret of an unconfirmed setup, and the form that confirms it.
  proto::HttpResponse TotpSetupPage(int status, const Portal::TotpSetup& setup,
                                    std::string_view error) {
    auto svg = qr::QrSvg(setup.otpauth_uri);
    if (!svg) return Internal(svg.error());
    std::string body = Layout("Set up two-step sign-in", true, [&](std::string& out) {
      out += "<h1>Set up two-step sign-in</h1>";
      if (!error.empty()) {
        out += "<p class=\"notice error\" role=\"alert\">" + Escape(error) + "</p>";
      }
      out += "<p>Scan this QR code with an authenticator app, or type the key into it (time "
             "based, 6 digits, 30 seconds).</p><figure><div id=\"totp-qr\" class=\"qr\""
             " role=\"img\" aria-label=\"QR code of the authenticator key\">" + *svg +
             "</div><figcaption>Key: <span class=\"secret\" id=\"totp-secret\">" +
             Escape(setup.secret_base32) + "</span></figcaption></figure>"
             "<form class=\"stack\" method=\"post\" action=\"/account/totp/confirm\">" +
             Hidden(csrf_) +
             "<label for=\"confirm-code\">The code the app shows now<input id=\"confirm-code\""
             " name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\""
             " pattern=\"[0-9]{6}\" required maxlength=\"6\"></label>"
             "<button type=\"submit\">Turn on</button></form>"
             "<p class=\"muted\">Until you turn it on, signing in does not ask for a code.</p>";
    });
    return Html(status, std::move(body));
  }

  proto::HttpResponse ConfirmTotp() {
    SecretString code(std::move((*form_)["code"]));
    int64_t retry_after = 0;
    auto codes = p_.ConfirmTotp(who_, code, peer_, &retry_after);
    if (!codes && codes.error().code == Errc::kAuthFailed) {
      // Same key again, so that the app need not be set up anew.
      auto pending = p_.PendingTotp(who_);
      if (!pending) return Internal(pending.error());
      auto response = TotpSetupPage(401, *pending, codes.error().detail);
      SecureWipe(pending->secret_base32.data(), pending->secret_base32.size());
      SecureWipe(pending->otpauth_uri.data(), pending->otpauth_uri.size());
      return response;
    }
    if (!codes) return SecondFactorRefused(codes.error(), retry_after);
    auto response = AccountPage(200, "Two-step sign-in is on.", "", &*codes);
    for (auto& c : *codes) SecureWipe(c.data(), c.size());
    return response;
  }

  proto::HttpResponse DisableTotp() {
    SecretString code(std::move((*form_)["code"]));
    int64_t retry_after = 0;
    auto disabled = p_.DisableTotp(who_, code, peer_, &retry_after);
    if (!disabled) return SecondFactorRefused(disabled.error(), retry_after);
    return AccountPage(200, "Two-step sign-in is off.", "");
  }

  proto::HttpResponse NewRecoveryCodes() {
    SecretString code(std::move((*form_)["code"]));
    int64_t retry_after = 0;
    auto codes = p_.NewRecoveryCodes(who_, code, peer_, &retry_after);
    if (!codes) return SecondFactorRefused(codes.error(), retry_after);
    auto response =
        AccountPage(200, "New recovery codes: the old ones no longer work.", "", &*codes);
    for (auto& c : *codes) SecureWipe(c.data(), c.size());
    return response;
  }

  // The account page with why a code was refused (429 with Retry-After while locked).
  proto::HttpResponse SecondFactorRefused(const Error& error, int64_t retry_after) {
    const int status = p_.StatusOf(error);
    if (status == 500) return Internal(error);
    auto response = AccountPage(status, error.detail, "");
    if (status == 429) response.headers.Set("Retry-After", std::to_string(retry_after));
    return response;
  }

  proto::HttpResponse AuditPage() {
    if (!who_.is_admin) return Message(403, "Forbidden", "The audit log needs the admin role.");
    auto entries = p_.store_.ListAudit();
    if (!entries) return Internal(entries.error());
    std::string body = Layout("Audit log", true, [&](std::string& out) {
      out += "<h1>Audit log</h1><p><a href=\"/audit.jsonl\" download=\"audit.jsonl\">Download "
             "as JSON Lines</a></p><table><thead><tr><th>When</th><th>Who</th><th>What</th>"
             "<th>Subject</th><th>Detail</th></tr></thead><tbody>";
      for (const auto& a : *entries) {
        out += "<tr><td>" + Time(a.at) + "</td><td>" + Escape(a.actor) + "</td><td>" +
               Escape(a.action) + "</td><td>" + Escape(a.subject) + "</td><td>" +
               Escape(a.detail) + "</td></tr>";
      }
      out += "</tbody></table>";
    });
    return Html(200, std::move(body));
  }

  proto::HttpResponse AuditExport() {
    if (!who_.is_admin) return Message(403, "Forbidden", "The audit log needs the admin role.");
    auto entries = p_.store_.ListAudit();
    if (!entries) return Internal(entries.error());
    proto::HttpResponse response;
    response.headers.Set("Content-Type", "application/x-ndjson");
    response.headers.Set("Content-Disposition", "attachment; filename=\"audit.jsonl\"");
    SecurityHeaders(response);
    for (const auto& a : *entries) response.body += AuditEntryJson(a).dump() + "\n";
    return response;
  }

  // --- building blocks ---

  // The caller's enrolees; an admin's are everyone's.
  Result<std::vector<store::EnroleeRecord>> VisibleEnrolees() {
    return p_.store_.ListEnrolees(who_.is_admin ? std::nullopt
                                                : std::optional<int64_t>(who_.id));
  }

  std::string StateBadge(const store::EnroleeRecord& e) const {
    DisplayState s = StateOf(e, now_);
    return "<span class=\"state state-" + std::string(s.key) + "\" data-enrolee-state=\"" +
           std::to_string(e.id) + "\" data-state=\"" + s.key + "\">" + s.label + "</span>";
  }

  static std::string Hidden(std::string_view csrf) {
    return "<input type=\"hidden\" name=\"csrf\" value=\"" + std::string(csrf) + "\">";
  }

  template <class Fn>
  std::string Layout(std::string_view title, bool signed_in, Fn&& content) const {
    std::string out =
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>" +
        Escape(title) +
        " - OpenMTE Enrolment Portal</title><link rel=\"stylesheet\" href=\"/static/style.css\">"
        "<script src=\"/static/app.js\" defer></script></head><body><header>"
        "<span class=\"brand\">OpenMTE Enrolment Portal</span>";
    if (signed_in) {
      out += "<nav aria-label=\"Main\"><a href=\"/enrolees\">Enrolees</a><a href=\"/account\">"
             "Account</a>";
      if (who_.is_admin) out += "<a href=\"/audit\">Audit log</a>";
      out += "</nav><span class=\"muted\">" + Escape(who_.name) +
             (who_.is_admin ? " (admin)" : "") +
             "</span><form method=\"post\" action=\"/logout\">" + Hidden(csrf_) +
             "<button type=\"submit\" class=\"secondary\">Sign out</button></form>";
    }
    out += "</header><main>";
    content(out);
    out += "</main></body></html>";
    return out;
  }

  proto::HttpResponse Message(int status, std::string_view title, std::string_view text) {
    std::string body = Layout(title, !who_.name.empty(), [&](std::string& out) {
      out += "<h1>" + Escape(title) + "</h1><p>" + Escape(text) + "</p>";
    });
    return Html(status, std::move(body));
  }

  proto::HttpResponse NotFound() {
    return Message(404, "Not found", "There is no such page, or it is not yours to see.");
  }

  proto::HttpResponse Internal(const Error& error) {
    spdlog::error("portal: web: {}", Describe(error));
    return Message(500, "Internal error", "Something went wrong on the portal; try again.");
  }

  Portal& p_;
  const proto::HttpRequest& request_;
  const std::string& peer_;
  const int64_t now_;
  store::StakeholderRecord who_;
  std::array<uint8_t, 32> session_hash_{};
  std::string csrf_;
  std::optional<std::map<std::string, std::string>> form_;
};

proto::HttpResponse Portal::HandleWeb(const proto::HttpRequest& request, std::string_view target,
                                      const std::string& peer_address) {
  Web web(*this, request, peer_address);
  return web.Route(target);
}

}  // namespace mte
