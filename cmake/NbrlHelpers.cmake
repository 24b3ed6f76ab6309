# Helpers shared by every folder's CMakeLists.txt.

set(NBRL_WARNINGS -Wall -Wextra)
if(NBRL_WERROR)
  list(APPEND NBRL_WARNINGS -Werror)
endif()

# nbrl_library(NAME SOURCES ... DEPS ...): one library per folder of the architecture.
function(nbrl_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(${name} PRIVATE ${NBRL_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# nbrl_binary(NAME SOURCES ... DEPS ...)
function(nbrl_binary name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${NBRL_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# nbrl_use_torch(TARGET): links libtorch and precompiles <torch/torch.h> for the
# target, so that touching one .cc recompiles in seconds instead of re-parsing
# ~300k lines of torch headers. libtorch's own warnings are not ours to fix.
# A target that does not exist (a test, with NBRL_BUILD_TESTS=OFF) is skipped.
function(nbrl_use_torch target)
  if(NOT TARGET ${target})
    return()
  endif()
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(${target} PRIVATE -Wno-unused-parameter)
  target_precompile_headers(${target} PRIVATE <torch/torch.h>)
  if(NBRL_CUDA_ENABLED)
    target_compile_definitions(${target} PUBLIC NBRL_WITH_CUDA=1)
  endif()
endfunction()

# nbrl_test(NAME SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s]): a GoogleTest binary
# registered with ctest as one test.
function(nbrl_test name)
  if(NOT NBRL_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${NBRL_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock
                                        GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT}
                       ENVIRONMENT "NBRL_SOURCE_DIR=${PROJECT_SOURCE_DIR};NBRL_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
