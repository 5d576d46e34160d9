// Secret-bearing types (docs/conventions.md §1, after tink): Kpm, Ke, Km, passwords, claim codes, KEK.
//
// A SecretBytes is heap-allocated, move-only and wiped when released. It cannot be printed or
// implicitly converted; its bytes are reached only through Expose(SecretAccess::ForCrypto()), so
// every use is greppable. Comparison is constant-time. SecretString holds typed-in secrets
// (passwords, claim codes) with the same rules.
// Thread-safety: values; no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace mte {

// A capability to read secret bytes. Only crypto code, the sealed store and key files ask for it.
class SecretAccess {
 public:
  static SecretAccess ForCrypto() { return SecretAccess(); }

 private:
  SecretAccess() = default;
};

// Overwrites memory in a way the compiler may not elide.
void SecureWipe(void* data, size_t size);

// Constant-time equality for equal-length buffers; false when lengths differ.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  SecretBytes(std::span<const uint8_t> bytes, SecretAccess);  // copies
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Clone() const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  std::span<const uint8_t> Expose(SecretAccess) const { return {data_.get(), size_}; }
  std::span<uint8_t> ExposeMutable(SecretAccess) { return {data_.get(), size_}; }

  // Constant-time.
  bool Equals(const SecretBytes& other) const;

 private:
  void Release();
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  ~SecretString() { SecureWipe(value_.data(), value_.size()); }
  SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) {}
  SecretString& operator=(SecretString&& other) noexcept {
    SecureWipe(value_.data(), value_.size());
    value_ = std::move(other.value_);
    return *this;
  }
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;

  std::string_view Expose(SecretAccess) const { return value_; }
  size_t size() const { return value_.size(); }
  bool empty() const { return value_.empty(); }

 private:
  std::string value_;
};

// The only formatter for secrets.
inline std::string Redacted(const SecretBytes& s) {
  return "<redacted:" + std::to_string(s.size()) + ">";
}

}  // namespace mte
