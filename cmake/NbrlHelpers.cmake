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

# nbrl_torch_pch(): the one precompiled <torch/torch.h> every torch target reuses
# (nbrl_use_torch). A torch PCH is about 0.5 GB and a minute to compile: one per
# target was 23 of them, 12 GB per build folder, which filled CI's disk once the
# sanitizer builds were added. Call after every add_compile_options (NbrlSanitize),
# so that the PCH is compiled with the flags of the targets that reuse it. Those
# targets differ only in include folders, warnings and macros that torch's headers
# never read (GTEST_HAS_PTHREAD, NBRL_WITH_CUDA); -Winvalid-pch with -Werror turns
# a PCH that does not fit into a build error, never a silent slow build.
function(nbrl_torch_pch)
  add_library(nbrl_torch_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
  target_link_libraries(nbrl_torch_pch PUBLIC ${TORCH_LIBRARIES})
  # -pthread defines _REENTRANT, and every nbrl target has it (through gRPC).
  target_compile_options(nbrl_torch_pch PRIVATE ${NBRL_WARNINGS} -Wno-unused-parameter
                                                -pthread)
  target_precompile_headers(nbrl_torch_pch PRIVATE <torch/torch.h>)
endfunction()

# nbrl_use_torch(TARGET): links libtorch and reuses the precompiled <torch/torch.h>
# (nbrl_torch_pch), so that touching one .cc recompiles in seconds instead of
# re-parsing ~300k lines of torch headers. libtorch's own warnings are not ours to
# fix. A target that does not exist (a test, with NBRL_BUILD_TESTS=OFF) is skipped.
function(nbrl_use_torch target)
  if(NOT TARGET ${target})
    return()
  endif()
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(${target} PRIVATE -Wno-unused-parameter -Winvalid-pch)
  target_precompile_headers(${target} REUSE_FROM nbrl_torch_pch)
  if(NBRL_CUDA_ENABLED)
    target_compile_definitions(${target} PUBLIC NBRL_WITH_CUDA=1)
  endif()
endfunction()

# Tests of nbrl's own threads, labelled `concurrency`: deploy/sanitize.sh runs them
# under ThreadSanitizer. Not here: tests without threads of ours (weight_stream_test
# is pure encoding; the weight stream's threads are in learner_service_test), and
# the multi-process runs in tests/ (cluster, launch, chaos, ...: their processes'
# threads are the ones tested here, and a TSan build of every binary would not fit
# CI's budget).
set(NBRL_CONCURRENCY_TESTS
    common_shutdown_test        # ShutdownSignal: signal watcher and callback threads
    common_metrics_test         # MetricsServer's serving thread against metric updates
    common_grpc_auth_test       # auth checks and counters on gRPC's threads
    model_tokenizer_test        # the BPE cache under its mutex, 8 threads encoding
    agent_episode_runner_test   # a group's episodes on one thread each
    learner_service_test        # ingestion streams, ingestor queue, weight publisher
    learner_trainer_test        # two data-parallel ranks as threads of one process
    sandbox_service_test        # the session pool, concurrent Execute, drain
    sandbox_cli_test            # the nbrl-sandbox binary serving, then SIGTERM
    actor_learner_test)         # the actor's LearnerClient threads against the service

# nbrl_test(NAME SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s]): a GoogleTest binary
# registered with ctest as one test. Labels: LABELS, plus `unit` for the tests beside
# the code (every folder but tests/) and `concurrency` for NBRL_CONCURRENCY_TESTS.
# For each label L a target nbrl_tests_L builds what `ctest -L L` runs (with the
# binaries a test depends on).
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
  set(labels ${ARG_LABELS})
  string(FIND "${CMAKE_CURRENT_SOURCE_DIR}/" "${PROJECT_SOURCE_DIR}/tests/" in_tests)
  if(NOT in_tests EQUAL 0)
    list(APPEND labels unit)
  endif()
  if(name IN_LIST NBRL_CONCURRENCY_TESTS)
    list(APPEND labels concurrency)
  endif()
  if(labels)
    set_tests_properties(${name} PROPERTIES LABELS "${labels}")
  endif()
  foreach(label IN LISTS labels)
    if(NOT TARGET nbrl_tests_${label})
      add_custom_target(nbrl_tests_${label})
    endif()
    add_dependencies(nbrl_tests_${label} ${name})
  endforeach()
endfunction()
