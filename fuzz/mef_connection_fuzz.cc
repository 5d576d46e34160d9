// Fuzzes a MEF connection after a real handshake: proto::ServerConnection (TLS, HTTP decoding,
// the request -> response -> upgrade loop) with the MEF's per-connection handler, exactly as
// net/server.cc drives it from a socket, over an in-memory MEF (fuzz/mef_world.h).
//
// The first input octet chooses the connection and how the rest arrives:
//   bit 0  0: Flow A (TLS-PSK with the claimed device's Kpm)  1: Flow B's outer session
//   bit 1  0: the rest is application data, encrypted by the device's engine
//          1: the rest is raw ciphertext after the handshake (TLS records, or garbage)
//   bit 2  with application data: sent in chunks the input chooses, the MEF answering between
//          them, instead of in one write
// After an Upgrade (Flow B's 101) the application data that follows in the same write is the
// inner session's ciphertext, as the MEF receives it from a device that sends ahead.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "fuzz/mef_world.h"

namespace {

using mte::fuzz::MefConnection;

void SendPlaintext(MefConnection& connection, mte::ByteSpan data) {
  if (connection.mef->Finished()) return;
  if (!connection.device->WritePlaintext(data)) return;
  (void)mte::fuzz::Pump(connection);
}

void SendCiphertext(MefConnection& connection, mte::ByteSpan data) {
  if (connection.mef->Finished()) return;
  (void)connection.mef->FeedCiphertext(data);
  (void)connection.mef->TakeCiphertext();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mte::fuzz::MefWorld::Get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const mte::ByteSpan rest = mte::fuzz::Input(data + 1, size - 1);
  MefConnection connection = mte::fuzz::MefWorld::Get().Connect(
      (mode & 1) != 0 ? mte::fuzz::Flow::kBOuter : mte::fuzz::Flow::kA);
  if ((mode & 2) != 0) {
    mte::fuzz::ForEachChunk(rest, [&](mte::ByteSpan chunk) { SendCiphertext(connection, chunk); });
  } else if ((mode & 4) != 0) {
    mte::fuzz::ForEachChunk(rest, [&](mte::ByteSpan chunk) { SendPlaintext(connection, chunk); });
  } else {
    SendPlaintext(connection, rest);
  }
  // A PPSK enrolment answers at once; nothing may be left waiting.
  mte::fuzz::Require(connection.mef->pending() == nullptr, "no reply is left pending");
  connection.mef->Close();
  return 0;
}
