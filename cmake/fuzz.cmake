# MTE_FUZZ (docs/fuzzing.md): every target of this build directory is instrumented for libFuzzer
# with AddressSanitizer and UndefinedBehaviorSanitizer; the executables under fuzz/ link
# libFuzzer's main. Only clang has libFuzzer, so this is a build directory of its own (build-fuzz,
# configured by `make fuzz`); the gcc build in build/ is not affected.
if(NOT MTE_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "MTE_FUZZ needs clang (configure with -DCMAKE_CXX_COMPILER=clang++)")
endif()
# Any undefined behaviour stops the run, as a crash does, so that libFuzzer saves the input.
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer
                    # Faster to compile and to run than RelWithDebInfo's -O2 -g; line tables are
                    # all the sanitizer reports need.
                    -O1 -gline-tables-only
                    # Assertions (ours, Beast's, nlohmann/json's) stay on whatever the build type.
                    -UNDEBUG)
add_link_options(-fsanitize=address,undefined)
