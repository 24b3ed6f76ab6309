# libFuzzer builds (fuzz/, configured with -DNBRL_FUZZ=ON; docs/development.md).
#
# The fuzz targets are linked with -fsanitize=fuzzer,address,undefined; the nbrl
# code they exercise, in a library or compiled into the target, is built with
# -fsanitize=fuzzer-no-link,address,undefined, so libFuzzer sees its coverage and the
# sanitizers check it. Undefined behaviour aborts (no recovery), so every sanitizer
# report is a finding. Prebuilt system libraries (libtorch, protobuf, yaml-cpp, RE2,
# ICU) are not instrumented; header-only ones (nlohmann-json, Abseil's inline code)
# are, where nbrl's code instantiates them.

if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR
    "NBRL_FUZZ=ON needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: configure a "
    "separate build directory with CC=clang CXX=clang++ (deploy/fuzz.sh does)")
endif()

set(NBRL_FUZZ_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
                             -fno-omit-frame-pointer)

# nbrl_fuzz_instrument(TARGET ...): libraries the fuzz targets link get coverage and
# the sanitizers.
function(nbrl_fuzz_instrument)
  foreach(target ${ARGN})
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link
                                             ${NBRL_FUZZ_SANITIZE_FLAGS})
  endforeach()
endfunction()

# nbrl_fuzz_target(NAME SOURCES ... DEPS ...): one libFuzzer binary, built by the
# `fuzz` target. The binary is fuzz/NAME_fuzzer; its seed corpus is
# fuzz/corpus/NAME/ and its dictionary, when there is one, fuzz/NAME.dict.
function(nbrl_fuzz_target name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  set(binary ${name}_fuzzer)
  add_executable(${binary} ${ARG_SOURCES})
  target_compile_options(${binary} PRIVATE ${NBRL_WARNINGS} -fsanitize=fuzzer
                                           ${NBRL_FUZZ_SANITIZE_FLAGS})
  target_link_options(${binary} PRIVATE -fsanitize=fuzzer ${NBRL_FUZZ_SANITIZE_FLAGS})
  target_link_libraries(${binary} PRIVATE ${ARG_DEPS})
  add_dependencies(fuzz ${binary})
endfunction()
