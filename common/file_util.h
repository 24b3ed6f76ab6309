// Small file helpers with Status errors that name the path and the OS error.
#ifndef NBRL_COMMON_FILE_UTIL_H_
#define NBRL_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nbrl::common {

// Reads a whole file. NotFound when it does not exist, PermissionDenied, or
// Unavailable for other I/O errors.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` so that readers see the old file or the new one,
// never a torn one: write to a temporary file beside it, fsync, rename. Creates
// parent directories.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// mkdir -p.
absl::Status MakeDirectories(const std::string& path);

// Status for a failed system call: `what` names the operation and object.
absl::Status ErrnoToStatus(int err, const std::string& what);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_FILE_UTIL_H_
