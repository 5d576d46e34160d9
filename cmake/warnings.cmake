# Project-wide warning flags (STYLE.md §12). Applied to our own targets via mte_warnings().
set(MTE_WARNING_FLAGS
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
  -Wnull-dereference -Wimplicit-fallthrough -Wformat=2
  # GCC 12 reports false positives through std::optional at -O2 (GCC PR 105562 and friends).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
function(mte_warnings target)
  target_compile_options(${target} PRIVATE ${MTE_WARNING_FLAGS})
  if(MTE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
