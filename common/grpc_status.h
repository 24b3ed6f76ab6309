// Conversion between absl::Status (our module boundaries) and grpc::Status (the
// wire). The numeric codes are the same canonical codes, so the mapping is exact.
#ifndef NBRL_COMMON_GRPC_STATUS_H_
#define NBRL_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace nbrl::common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_GRPC_STATUS_H_
