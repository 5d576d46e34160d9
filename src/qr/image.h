// QR code images of the payloads of qr/payload.h: SVG for the portal's page, PNG for labels, and
// reading a PNG or JPEG picture (a screenshot or a photo) back to the payload text.
//
// Codes are made by libqrencode at error correction level M, the smallest version that holds the
// payload (alphanumeric mode for an alphanumeric payload), with a quiet zone of 4 modules
// (ISO/IEC 18004 §6.3.8). Pictures are read by libpng / libjpeg into 8-bit grey and scanned by
// zbar.
// Thread-safety: free functions, no shared state.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "base/result.h"

namespace mte::qr {

inline constexpr int kQuietZoneModules = 4;
inline constexpr int kPngModulePixels = 8;
// Pictures larger than these are refused before decoding.
inline constexpr size_t kMaxImageFileBytes = 32 * 1024 * 1024;
inline constexpr size_t kMaxImagePixels = 64 * 1024 * 1024;

// An SVG document showing `payload` as a QR code: one <path> of the dark modules on a white
// <rect>, viewBox in modules, shape-rendering="crispEdges", no script, no external reference.
// kLocalUsage/kTooLarge when the payload does not fit one QR code at level M.
Result<std::string> QrSvg(std::string_view payload);

// QrSvg of EncodeBundlePayload(bundle): what the portal's page embeds inline. Errors as both.
Result<std::string> BundleQrSvg(const nlohmann::json& bundle);

// Writes `payload` as an 8-bit greyscale PNG, kPngModulePixels pixels per module, to `path`
// (replaced atomically, mode 0600: a label payload holds the setup code).
Result<void> WritePng(std::string_view payload, const std::string& path);

// The text of the one QR code in the PNG or JPEG picture at `path` (the format is told by its
// magic bytes, not its name). Errors: kLocalUsage/kConfig for an unreadable file;
// kLocalUsage/kUnsupported for another format; kLocalUsage/kTooLarge beyond the limits above;
// kLocalUsage/kMalformed for a broken picture, no QR code, or more than one.
Result<std::string> DecodeQrImage(const std::string& path);

}  // namespace mte::qr
