# Finds every dependency from Debian's packages (deploy/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

find_package(Torch REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(glog CONFIG REQUIRED)
find_package(Xapian CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)

find_program(NBRL_PROTOC protoc REQUIRED)
find_program(NBRL_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# CUDA: on when the libtorch we found was built with it (then NCCL is used for
# collectives); the CPU build is the one CI tests.
set(NBRL_TORCH_HAS_CUDA OFF)
if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
  set(NBRL_TORCH_HAS_CUDA ON)
endif()
if(NBRL_WITH_CUDA STREQUAL "AUTO")
  set(NBRL_CUDA_ENABLED ${NBRL_TORCH_HAS_CUDA})
elseif(NBRL_WITH_CUDA)
  if(NOT NBRL_TORCH_HAS_CUDA)
    message(FATAL_ERROR "NBRL_WITH_CUDA=ON but the libtorch found at ${Torch_DIR} "
                        "has no CUDA; point Torch_DIR at a CUDA libtorch or use AUTO")
  endif()
  set(NBRL_CUDA_ENABLED ON)
else()
  set(NBRL_CUDA_ENABLED OFF)
endif()
message(STATUS "nbrl: libtorch ${Torch_VERSION} from ${Torch_DIR}; CUDA/NCCL paths: "
               "${NBRL_CUDA_ENABLED}")
