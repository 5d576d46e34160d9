// gtest assertions on Result<T>: Ok(result) and IsError(result, kind, code[, detail part]), which
// print the error (or the unexpected value) on failure.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "base/result.h"

namespace mte::testlib {

template <class T>
::testing::AssertionResult Ok(const Result<T>& result) {
  if (result.has_value()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "error: " << ToString(result.error().kind) << " " << Describe(result.error());
}

template <class T>
::testing::AssertionResult IsError(const Result<T>& result, ErrorKind kind, Errc code,
                                   std::string_view detail_part = {}) {
  if (result.has_value()) return ::testing::AssertionFailure() << "expected an error, got a value";
  const Error& error = result.error();
  if (error.kind != kind || error.code != code) {
    return ::testing::AssertionFailure()
           << "expected " << ToString(kind) << "/" << ToString(code) << ", got "
           << ToString(error.kind) << "/" << Describe(error);
  }
  if (error.detail.find(detail_part) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "detail '" << error.detail << "' does not contain '" << detail_part << "'";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace mte::testlib
