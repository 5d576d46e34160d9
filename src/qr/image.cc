#include "qr/image.h"

#include <png.h>
#include <qrencode.h>
#include <zbar.h>  // C++: the C API in namespace zbar

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include "base/file.h"
#include "base/secret.h"
#include "qr/payload.h"

namespace mte::qr {
namespace {

struct QrFree {
  void operator()(QRcode* code) const { QRcode_free(code); }
};
using QrPtr = std::unique_ptr<QRcode, QrFree>;

// The module matrix of `payload` with the quiet zone: size x size, true = dark.
struct Matrix {
  int size = 0;
  std::vector<bool> dark;
  bool at(int x, int y) const { return dark[static_cast<size_t>(y) * size + x]; }
};

Result<Matrix> Encode(std::string_view payload) {
  std::string text(payload);
  errno = 0;
  // Version 0: the smallest that fits. QR_MODE_8 is only the hint for characters outside the
  // alphanumeric set; libqrencode picks alphanumeric (and numeric) segments where they are
  // shorter. Case-sensitive, so lower case is never folded.
  QrPtr code(QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1));
  int err = errno;
  SecureWipe(text.data(), text.size());
  if (!code) {
    if (err == ERANGE) {
      return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge,
                  "the payload does not fit one QR code at error correction level M");
    }
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                "QR encoding failed: " + ErrnoText(err));
  }
  Matrix m;
  int w = code->width;
  m.size = w + 2 * kQuietZoneModules;
  m.dark.assign(static_cast<size_t>(m.size) * m.size, false);
  for (int y = 0; y < w; ++y) {
    for (int x = 0; x < w; ++x) {
      bool dark = (code->data[static_cast<size_t>(y) * w + x] & 1) != 0;
      m.dark[static_cast<size_t>(y + kQuietZoneModules) * m.size + x + kQuietZoneModules] = dark;
    }
  }
  // The module data describes the payload; wipe it with the code.
  SecureWipe(code->data, static_cast<size_t>(w) * w);
  return m;
}

// ---------------------------------------------------------------- reading pictures

struct Grey {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
};

Error Broken(const std::string& path, const std::string& what) {
  return Error{ErrorKind::kLocalUsage, Errc::kMalformed, QuotedPath(path) + ": " + what};
}

Result<void> CheckSize(const std::string& path, size_t width, size_t height) {
  if (width == 0 || height == 0) return Fail(Broken(path, "the picture is empty"));
  if (width > kMaxImagePixels / height) {
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge,
                QuotedPath(path) + ": the picture has more than " +
                    std::to_string(kMaxImagePixels) + " pixels");
  }
  return {};
}

Result<Grey> ReadPng(const std::string& path, const std::string& data) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, data.data(), data.size()) == 0) {
    std::string why = image.message;
    png_image_free(&image);
    return Fail(Broken(path, "not a readable PNG (" + why + ")"));
  }
  if (auto ok = CheckSize(path, image.width, image.height); !ok) {
    png_image_free(&image);
    return Fail(ok.error());
  }
  image.format = PNG_FORMAT_GRAY;
  Grey grey;
  grey.width = static_cast<int>(image.width);
  grey.height = static_cast<int>(image.height);
  grey.pixels.resize(static_cast<size_t>(image.width) * image.height);
  png_color white{255, 255, 255};  // transparent parts count as paper
  if (png_image_finish_read(&image, &white, grey.pixels.data(), 0, nullptr) == 0) {
    std::string why = image.message;
    png_image_free(&image);
    return Fail(Broken(path, "not a readable PNG (" + why + ")"));
  }
  return grey;
}

// libjpeg reports fatal errors through error_exit, which must not return: it jumps back to
// DecodeJpeg. Only C frames of libjpeg lie between the two, so no destructor is skipped.
struct JpegError {
  jpeg_error_mgr mgr;  // first: JpegExit finds the struct from the jpeg_error_mgr pointer
  jpeg_decompress_struct info;  // here, not on DecodeJpeg's stack: it is read after a longjmp
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegExit(j_common_ptr info) {
  auto* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

void JpegQuiet(j_common_ptr /*info*/, int /*level*/) {}

// Decodes into `grey` (already empty); returns false with `error->message` set on failure.
bool DecodeJpeg(const std::string& data, Grey* grey, JpegError* error, bool* too_large) {
  jpeg_decompress_struct& info = error->info;
  std::memset(&info, 0, sizeof info);
  info.err = jpeg_std_error(&error->mgr);
  error->mgr.error_exit = JpegExit;
  error->mgr.emit_message = JpegQuiet;
  error->message[0] = '\0';
  if (setjmp(error->jump) != 0) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(data.data()),
               static_cast<unsigned long>(data.size()));
  jpeg_read_header(&info, TRUE);
  if (info.image_width == 0 || info.image_height == 0 ||
      info.image_width > kMaxImagePixels / info.image_height) {
    *too_large = info.image_width != 0 && info.image_height != 0;
    std::snprintf(error->message, sizeof error->message, "%s",
                  *too_large ? "too many pixels" : "the picture is empty");
    jpeg_destroy_decompress(&info);
    return false;
  }
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(error->message, sizeof error->message, "CMYK JPEG is not supported");
    jpeg_destroy_decompress(&info);
    return false;
  }
  info.out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(&info);
  // The vector is resized before any further libjpeg call that may jump, and not resized after.
  grey->width = static_cast<int>(info.output_width);
  grey->height = static_cast<int>(info.output_height);
  grey->pixels.resize(static_cast<size_t>(info.output_width) * info.output_height);
  uint8_t* base = grey->pixels.data();
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = base + static_cast<size_t>(info.output_scanline) * info.output_width;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

Result<Grey> ReadJpeg(const std::string& path, const std::string& data) {
  Grey grey;
  // Reserve nothing here: DecodeJpeg sizes the buffer once the header is known.
  auto error = std::make_unique<JpegError>();
  bool too_large = false;
  if (!DecodeJpeg(data, &grey, error.get(), &too_large)) {
    if (too_large) {
      return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge,
                  QuotedPath(path) + ": the picture has more than " +
                      std::to_string(kMaxImagePixels) + " pixels");
    }
    return Fail(Broken(path, std::string("not a readable JPEG (") + error->message + ")"));
  }
  return grey;
}

struct ScannerFree {
  void operator()(zbar::zbar_image_scanner_t* s) const { zbar::zbar_image_scanner_destroy(s); }
};
struct ImageFree {
  void operator()(zbar::zbar_image_t* i) const { zbar::zbar_image_destroy(i); }
};

Result<std::string> Scan(const std::string& path, Grey& grey) {
  std::unique_ptr<zbar::zbar_image_scanner_t, ScannerFree> scanner(zbar::zbar_image_scanner_create());
  std::unique_ptr<zbar::zbar_image_t, ImageFree> image(zbar::zbar_image_create());
  if (!scanner || !image) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant, "zbar could not be initialised");
  }
  zbar::zbar_image_scanner_set_config(scanner.get(), zbar::ZBAR_NONE, zbar::ZBAR_CFG_ENABLE, 0);
  zbar::zbar_image_scanner_set_config(scanner.get(), zbar::ZBAR_QRCODE, zbar::ZBAR_CFG_ENABLE, 1);
  // The bytes as encoded, without zbar's guess at a character set.
  zbar::zbar_image_scanner_set_config(scanner.get(), zbar::ZBAR_QRCODE, zbar::ZBAR_CFG_BINARY, 1);
  zbar::zbar_image_set_format(image.get(), zbar_fourcc('Y', '8', '0', '0'));
  zbar::zbar_image_set_size(image.get(), static_cast<unsigned>(grey.width),
                      static_cast<unsigned>(grey.height));
  zbar::zbar_image_set_data(image.get(), grey.pixels.data(), grey.pixels.size(), nullptr);
  int found = zbar::zbar_scan_image(scanner.get(), image.get());
  if (found < 0) return Fail(Broken(path, "zbar could not scan the picture"));
  std::vector<std::string> texts;
  for (const zbar::zbar_symbol_t* symbol = zbar::zbar_image_first_symbol(image.get()); symbol != nullptr;
       symbol = zbar::zbar_symbol_next(symbol)) {
    if (zbar::zbar_symbol_get_type(symbol) != zbar::ZBAR_QRCODE) continue;
    texts.emplace_back(zbar::zbar_symbol_get_data(symbol), zbar::zbar_symbol_get_data_length(symbol));
  }
  std::string result;
  std::string error;
  if (texts.empty()) {
    error = "no QR code found in the picture";
  } else if (texts.size() > 1) {
    error = std::to_string(texts.size()) + " QR codes in the picture; show exactly one";
  } else {
    result = std::move(texts.front());
  }
  for (auto& text : texts) SecureWipe(text.data(), text.size());
  SecureWipe(grey.pixels.data(), grey.pixels.size());
  if (!error.empty()) return Fail(Broken(path, error));
  return result;
}

}  // namespace

Result<std::string> QrSvg(std::string_view payload) {
  MTE_TRY_ASSIGN(Matrix m, Encode(payload));
  std::string n = std::to_string(m.size);
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" viewBox=\"0 0 " + n +
                    " " + n + "\" width=\"" + std::to_string(m.size * 4) + "\" height=\"" +
                    std::to_string(m.size * 4) +
                    "\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\">"
                    "<rect width=\"" + n + "\" height=\"" + n + "\" fill=\"#fff\"/><path d=\"";
  // One subpath per horizontal run of dark modules.
  for (int y = 0; y < m.size; ++y) {
    for (int x = 0; x < m.size;) {
      if (!m.at(x, y)) {
        ++x;
        continue;
      }
      int start = x;
      while (x < m.size && m.at(x, y)) ++x;
      svg += "M" + std::to_string(start) + " " + std::to_string(y) + "h" +
             std::to_string(x - start) + "v1h-" + std::to_string(x - start) + "z";
    }
  }
  svg += "\" fill=\"#000\"/></svg>\n";
  return svg;
}

Result<std::string> BundleQrSvg(const nlohmann::json& bundle) {
  MTE_TRY_ASSIGN(std::string payload, EncodeBundlePayload(bundle));
  auto svg = QrSvg(payload);
  SecureWipe(payload.data(), payload.size());
  return svg;
}

Result<void> WritePng(std::string_view payload, const std::string& path) {
  MTE_TRY_ASSIGN(Matrix m, Encode(payload));
  int side = m.size * kPngModulePixels;
  std::vector<uint8_t> pixels(static_cast<size_t>(side) * side);
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      pixels[static_cast<size_t>(y) * side + x] =
          m.at(x / kPngModulePixels, y / kPngModulePixels) ? 0 : 255;
    }
  }
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(side);
  image.height = static_cast<png_uint_32>(side);
  image.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (png_image_write_to_memory(&image, nullptr, &size, 0, pixels.data(), 0, nullptr) == 0) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                std::string("PNG encoding failed: ") + image.message);
  }
  std::vector<uint8_t> png(size);
  if (png_image_write_to_memory(&image, png.data(), &size, 0, pixels.data(), 0, nullptr) == 0) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                std::string("PNG encoding failed: ") + image.message);
  }
  png.resize(size);
  SecureWipe(pixels.data(), pixels.size());
  auto written = ReplaceFile(path, png, 0600);
  SecureWipe(png.data(), png.size());
  return written;
}

Result<std::string> DecodeQrImage(const std::string& path) {
  MTE_TRY_ASSIGN(std::string data, ReadBoundedFile(path, kMaxImageFileBytes));
  // Public magic numbers (PNG: RFC 2083 §12.11; JPEG: SOI then a marker).
  constexpr std::string_view kPng("\x89PNG\r\n\x1A\n", 8);
  constexpr std::string_view kJpeg("\xFF\xD8\xFF", 3);
  auto starts = [&data](std::string_view magic) { return data.compare(0, magic.size(), magic) == 0; };
  Result<Grey> grey = starts(kPng)    ? ReadPng(path, data)
                      : starts(kJpeg) ? ReadJpeg(path, data)
                                                    : Result<Grey>(Fail(
                                                          ErrorKind::kLocalUsage, Errc::kUnsupported,
                                                          QuotedPath(path) +
                                                              ": not a PNG or JPEG picture"));
  if (!grey) return Fail(grey.error());
  return Scan(path, *grey);
}

}  // namespace mte::qr
