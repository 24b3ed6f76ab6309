// Short lower-case names of wire enums, for logs and metric labels.
#ifndef NBRL_COMMON_WIRE_NAMES_H_
#define NBRL_COMMON_WIRE_NAMES_H_

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::common {

// RESULT_ACCEPTED -> "accepted"; an unknown number -> "unknown".
inline std::string AckResultName(v1::GroupAck::Result result) {
  if (!v1::GroupAck::Result_IsValid(result)) return "unknown";
  return absl::AsciiStrToLower(
      absl::StripPrefix(v1::GroupAck::Result_Name(result), "RESULT_"));
}

}  // namespace nbrl::common

#endif  // NBRL_COMMON_WIRE_NAMES_H_
