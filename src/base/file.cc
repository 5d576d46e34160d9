#include "base/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <system_error>

namespace mte {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::Close() {
  int rc = ::close(fd_);
  fd_ = -1;
  return rc;
}

std::string QuotedPath(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

namespace {

// Writes, fsyncs and closes; on failure removes `path` and names `what` failed.
Result<void> FillAndSync(UniqueFd& fd, const std::filesystem::path& path, ByteSpan data,
                         mode_t mode) {
  auto fail = [&](std::string_view what) {
    int err = errno;
    ::unlink(path.c_str());
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                std::string(what) + " " + QuotedPath(path) + ": " + ErrnoText(err));
  };
  // The umask may have cleared bits; set the documented mode exactly.
  if (::fchmod(fd.get(), mode) != 0) return fail("cannot set the mode of");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("cannot sync");
  if (fd.Close() != 0) return fail("cannot close");
  return {};
}

}  // namespace

Result<void> WriteNewFile(const std::filesystem::path& path, ByteSpan data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    int err = errno;
    if (err == EEXIST) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConflict,
                  QuotedPath(path) + " already exists; refusing to overwrite it");
    }
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create " + QuotedPath(path) + ": " + ErrnoText(err));
  }
  return FillAndSync(fd, path, data, mode);
}

Result<void> ReplaceFile(const std::filesystem::path& path, ByteSpan data, mode_t mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create " + QuotedPath(tmp) + ": " + ErrnoText(errno));
  }
  MTE_TRY(FillAndSync(fd, tmp, data, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot replace " + QuotedPath(path) + ": " + ErrnoText(err));
  }
  return {};
}

Result<std::string> ReadSecretLineFile(const std::filesystem::path& path, std::string_view what) {
  MTE_TRY_ASSIGN(std::string text, ReadBoundedFile(path, 4096));
  std::string line = text.substr(0, text.find('\n'));
  std::fill(text.begin(), text.end(), '\0');
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.back() = '\0';
    line.pop_back();
  }
  if (line.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                path.string() + " holds no " + std::string(what));
  }
  return line;
}

Result<std::string> ReadBoundedFile(const std::filesystem::path& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "cannot read " + path.string());
  std::string text(limit + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > limit) {
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge,
                path.string() + " is larger than " + std::to_string(limit) + " bytes");
  }
  return text;
}

Result<UniqueFd> HoldExclusiveLock(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (fd.get() < 0) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot open " + QuotedPath(path) + ": " + ErrnoText(errno));
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) {
      return Fail(ErrorKind::kIo, Errc::kIoFailed,
                  "cannot lock " + QuotedPath(path) + ": " + ErrnoText(err));
    }
    char text[32] = {};
    ssize_t n = ::pread(fd.get(), text, sizeof text - 1, 0);
    std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    bool digits = !holder.empty() && holder.find_first_not_of("0123456789") == std::string::npos;
    return Fail(ErrorKind::kLocalUsage, Errc::kConflict,
                QuotedPath(path) + " is held by " +
                    (digits ? "process " + holder : std::string("another process")));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot write " + QuotedPath(path) + ": " + ErrnoText(errno));
  }
  return fd;
}

}  // namespace mte
