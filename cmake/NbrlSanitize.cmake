# NBRL_SANITIZE: a sanitizer build of everything (deploy/sanitize.sh configures
# build-asan and build-tsan with it; docs/development.md, "Sanitizers").
#   ""                   no sanitizer (the default)
#   "address,undefined"  AddressSanitizer (with LeakSanitizer) and
#                        UndefinedBehaviorSanitizer; undefined behaviour aborts
#   "thread"             ThreadSanitizer
# Sanitizer builds compile at -O1 with line tables (-g1) whatever CMAKE_BUILD_TYPE
# says: fast enough to run the tests, quick to compile, and enough for symbolized
# reports. Debian's libtorch, gRPC, Abseil, ... are not instrumented; the runtime
# options and suppressions (deploy/sanitizers/) that go with them are set by
# deploy/sanitize.sh.
set_property(CACHE NBRL_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")

if(NBRL_SANITIZE STREQUAL "")
  return()
elseif(NBRL_SANITIZE STREQUAL "address,undefined")
  set(NBRL_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined)
elseif(NBRL_SANITIZE STREQUAL "thread")
  set(NBRL_SANITIZE_FLAGS -fsanitize=thread)
else()
  message(FATAL_ERROR "NBRL_SANITIZE=${NBRL_SANITIZE}: expected \"\", "
                      "\"address,undefined\" or \"thread\"")
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  message(FATAL_ERROR "NBRL_SANITIZE needs gcc or clang, not ${CMAKE_CXX_COMPILER_ID}")
endif()

add_compile_options(${NBRL_SANITIZE_FLAGS} -fno-omit-frame-pointer -O1 -g1)
add_link_options(${NBRL_SANITIZE_FLAGS})
message(STATUS "nbrl: sanitizers ${NBRL_SANITIZE} (${NBRL_SANITIZE_FLAGS})")

# ThreadSanitizer cannot see Debian's uninstrumented absl::Mutex synchronize, so
# every executable gets deploy/sanitizers/tsan_absl_sync.cc, which annotates it.
# An object library, linked only into executables: its definitions must come from
# the executable to interpose on libabsl_synchronization.so's.
if(NBRL_SANITIZE STREQUAL "thread")
  add_library(nbrl_tsan_absl_sync OBJECT
              ${PROJECT_SOURCE_DIR}/deploy/sanitizers/tsan_absl_sync.cc)
  target_compile_options(nbrl_tsan_absl_sync PRIVATE ${NBRL_WARNINGS})
  target_link_libraries(nbrl_tsan_absl_sync PUBLIC absl::synchronization absl::time
                                                   ${CMAKE_DL_LIBS})
  link_libraries(
    "$<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:nbrl_tsan_absl_sync>")
endif()
