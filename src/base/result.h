// Result<T>: a value or an Error (docs/conventions.md §1). Built on tl::expected so that C++23 std::expected
// can replace it in one header. Use has_value()/value()/error()/operator* only.
#pragma once

#include <tl/expected.hpp>
#include <utility>

#include "base/error.h"

namespace mte {

template <class T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;
  Result(tl::expected<T, Error>&& other) : tl::expected<T, Error>(std::move(other)) {}  // NOLINT
};

// Builds the error side of a Result: `return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "...")`.
inline tl::unexpected<Error> Fail(ErrorKind kind, Errc code, std::string detail) {
  return tl::unexpected<Error>(Error{kind, code, std::move(detail)});
}

inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

// Adds context to an error detail: "what: original detail".
inline Error Context(Error error, std::string_view what) {
  error.detail = std::string(what) + ": " + error.detail;
  return error;
}

}  // namespace mte

#define MTE_CONCAT_INNER(a, b) a##b
#define MTE_CONCAT(a, b) MTE_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result<void> or Result<T>) from the enclosing function.
#define MTE_TRY(expr)                                             \
  do {                                                            \
    auto&& mte_try_result_ = (expr);                              \
    if (!mte_try_result_.has_value()) {                           \
      return ::tl::unexpected<::mte::Error>(                      \
          std::move(mte_try_result_).error());                    \
    }                                                             \
  } while (false)

#define MTE_TRY_ASSIGN_IMPL(tmp, lhs, expr)                                          \
  auto tmp = (expr);                                                                 \
  if (!tmp.has_value()) {                                                            \
    return ::tl::unexpected<::mte::Error>(std::move(tmp).error());                   \
  }                                                                                  \
  lhs = std::move(tmp).value()

// Declares or assigns `lhs` from the value of `expr`, or returns its error.
#define MTE_TRY_ASSIGN(lhs, expr) MTE_TRY_ASSIGN_IMPL(MTE_CONCAT(mte_try_, __LINE__), lhs, expr)
