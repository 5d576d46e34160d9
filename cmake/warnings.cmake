# Project-wide warning flags (docs/conventions.md §1). Applied to our own targets via mte_warnings().
set(MTE_WARNING_FLAGS
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
  -Wimplicit-fallthrough -Wformat=2
  # Not used with GCC 12 at -O2: -Wmaybe-uninitialized (false positives through std::optional,
  # GCC PR 105562 and friends) and -Wnull-dereference (false positives inlined from libstdc++
  # streams and Asio executors).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
  # GCC 12 -O3: -Wrestrict false positive inlined from std::string concatenation (PR 105329).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
function(mte_warnings target)
  target_compile_options(${target} PRIVATE ${MTE_WARNING_FLAGS})
  if(MTE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
