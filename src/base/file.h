// Small POSIX file helpers shared by key files, the PKI, device state and the config.
// Thread-safety: free functions and a move-only handle.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "base/bytes.h"
#include "base/result.h"

namespace mte {

// Owns a file descriptor.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

  int get() const { return fd_; }
  // Closes explicitly so that a failed close (e.g. a delayed write error) is reported.
  int Close();

 private:
  int fd_;
};

// "'<path>'" for messages.
std::string QuotedPath(const std::filesystem::path& path);
// strerror-like text for an errno value.
std::string ErrnoText(int err);

// The whole file, at most `limit` bytes. kLocalUsage/kConfig "cannot read <path>" when it cannot
// be opened; kLocalUsage/kTooLarge when it is larger than `limit`. Never reads more than
// limit + 1 bytes.
Result<std::string> ReadBoundedFile(const std::filesystem::path& path, size_t limit);

// The first line of a small file that holds one secret (a Kpm in hex, a setup code), without
// its line end and trailing blanks, so that the secret need not appear on a command line.
// The file's other bytes are wiped from memory. kLocalUsage/kConfig when it cannot be read or
// the line is empty ("<path> holds no <what>"); kLocalUsage/kTooLarge over 4 KiB.
Result<std::string> ReadSecretLineFile(const std::filesystem::path& path, std::string_view what);

// Creates `path` exclusively with exactly `mode` (not following symlinks), writes `data` and
// fsyncs it. kLocalUsage/kConflict if it exists; on a later failure the file is removed, so no
// half-written key file stays behind.
Result<void> WriteNewFile(const std::filesystem::path& path, ByteSpan data, mode_t mode);

// Replaces `path` atomically: writes "<path>.tmp" with `mode`, fsyncs, renames over `path`.
Result<void> ReplaceFile(const std::filesystem::path& path, ByteSpan data, mode_t mode);

// Takes an exclusive lock (flock(2)) on `path`, created 0644 if missing, and writes this process's
// pid into it. The lock is held while the returned descriptor is open, and the kernel drops it
// when the process ends, however it ends (kill -9 included), so a stale file never blocks.
// kLocalUsage/kConflict "<path> is held by process N" when another process holds it;
// kIo/kIoFailed when the file cannot be opened.
Result<UniqueFd> HoldExclusiveLock(const std::filesystem::path& path);

}  // namespace mte
