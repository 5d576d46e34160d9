#include "base/secret.h"

#include <cstring>
#include <string.h>  // explicit_bzero

namespace mte {

void SecureWipe(void* data, size_t size) {
  if (data != nullptr && size > 0) explicit_bzero(data, size);
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

SecretBytes::SecretBytes(size_t size) : data_(new uint8_t[size]()), size_(size) {}

SecretBytes::SecretBytes(std::span<const uint8_t> bytes, SecretAccess) : SecretBytes(bytes.size()) {
  if (!bytes.empty()) std::memcpy(data_.get(), bytes.data(), bytes.size());
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const {
  return SecretBytes(Expose(SecretAccess::ForCrypto()), SecretAccess::ForCrypto());
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  return ConstantTimeEqual(Expose(SecretAccess::ForCrypto()),
                           other.Expose(SecretAccess::ForCrypto()));
}

void SecretBytes::Release() {
  SecureWipe(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

}  // namespace mte
