// The MEF of the mef_* fuzz targets, as `mte serve` runs it: the PPSK RSPF, the MEF port's TLS
// context (TLS-PSK for Flow A, the MEF's certificate for Flow B's outer session), over a SQLite
// ":memory:" store holding a claimed device (Flow A enrols it) and a Flow B entry with an active
// Enrolment-Token (kFlowBToken). It is built once per process (LLVMFuzzerInitialize); each
// Connect() runs a real handshake in memory. Lockouts are set out of reach so that earlier inputs
// cannot change what later ones reach.
#pragma once

#include <memory>
#include <string_view>

#include "base/bytes.h"
#include "base/result.h"
#include "crypto/tls_engine.h"
#include "mef/mef.h"
#include "proto/server_connection.h"

namespace mte::fuzz {

inline constexpr std::string_view kMefFqdn = "mef.example.com";
inline constexpr std::string_view kPeerAddress = "192.0.2.10";
// The claimed device's PPSK credential: Flow A sessions authenticate with it.
inline constexpr std::string_view kFlowADevice = "sensor-0001";
inline constexpr std::string_view kFlowAKpmId = "kpm-0001@maker.example.com";
// The Flow B entry's device and its active Enrolment-Token (43 base64url characters).
inline constexpr std::string_view kFlowBDevice = "sensor-0002";
inline constexpr std::string_view kFlowBKpmId = "kpm-0002@maker.example.com";
inline constexpr std::string_view kFlowBToken = "fuzzTOKENfuzzTOKENfuzzTOKENfuzzTOKENfuzzTOK";

enum class Flow {
  kA,       // TLS-PSK with the claimed device's Kpm: the Enrolment Exchange directly
  kBOuter,  // server-authenticated TLS: Flow B's token and RSPF selection
};

// One MEF connection after a completed handshake: the device's engine and the MEF's side.
struct MefConnection {
  std::unique_ptr<crypto::TlsEngine> device;
  std::unique_ptr<proto::ServerConnection> mef;
};

class MefWorld {
 public:
  // The world of this process, built on first use. Exits when it cannot be built.
  static MefWorld& Get();

  Mef& mef() { return *mef_; }
  // A fresh connection from kPeerAddress whose handshake has completed.
  MefConnection Connect(Flow flow);

  struct Parts;

 private:
  explicit MefWorld(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
  Mef* mef_ = nullptr;
};

// Moves ciphertext both ways between the two ends until neither has anything to send or the MEF
// ends the connection. The device's decrypted plaintext (the MEF's responses) is dropped.
// Returns the MEF side's first error.
Result<void> Pump(MefConnection& connection);

}  // namespace mte::fuzz
