// Fuzzes the JSON bodies the MEF reads, through its real handlers on sessions whose handshakes
// completed once, at start-up (fuzz/mef_world.h). The input is a request body, given twice:
//   - as the Enrolment Indications of POST /enrolment on a Flow A session (docs/protocol.md
//     §6.1; Mef::Handle, which commits an enrolment for a valid body);
//   - as the {"token","rspfs"} body of POST /enrolment/token on a Flow B outer session
//     (docs/protocol.md §9.4; Mef::HandleRequest, each time on a fresh connection state).
// Whatever the body, the MEF must not answer 500: an internal error is a bug of ours, not the
// peer's. (501, RSC 5001, is the answer to a token presentation with no RSPF in common.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "fuzz/mef_world.h"
#include "proto/enrolment.h"
#include "proto/onem2m.h"

namespace {

using mte::fuzz::MefConnection;
using mte::fuzz::MefWorld;

MefConnection* flow_a = nullptr;
MefConnection* flow_b_outer = nullptr;

mte::proto::HttpRequest JsonPost(std::string_view target, std::string body) {
  mte::proto::HttpRequest request;
  request.method = "POST";
  request.target = std::string(target);
  request.headers.Set("Host", mte::fuzz::kMefFqdn);
  request.headers.Set("Content-Type", "application/json");
  request.headers.Set(mte::proto::kHeaderRequestId, "fuzz-1");
  request.body = std::move(body);
  return request;
}

void RequireAnswered(const mte::proto::HttpResponse& response) {
  mte::fuzz::Require(response.status != 500, "the MEF answers no body with an internal error");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flow_a = new MefConnection(MefWorld::Get().Connect(mte::fuzz::Flow::kA));
  flow_b_outer = new MefConnection(MefWorld::Get().Connect(mte::fuzz::Flow::kBOuter));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(mte::fuzz::InputText(data, size));
  mte::Mef& mef = MefWorld::Get().mef();
  RequireAnswered(
      mef.Handle(JsonPost(mte::proto::kEnrolmentPath, body), flow_a->mef->session().tls()));
  mte::MefConnectionState state;
  state.peer_address = std::string(mte::fuzz::kPeerAddress);
  auto reply = mef.HandleRequest(JsonPost(mte::proto::kTokenPath, body),
                                 flow_b_outer->mef->session(), state);
  mte::fuzz::Require(reply.pending == nullptr && reply.upgrade == nullptr,
                     "a token presentation answers at once, without an upgrade");
  RequireAnswered(reply.response);
  return 0;
}
