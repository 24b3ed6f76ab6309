// RETURN_IF_ERROR and ASSIGN_OR_RETURN: the one place these macros are defined.
//
//   RETURN_IF_ERROR(file.Flush());
//   ASSIGN_OR_RETURN(Config config, Config::Load(schema, path, overrides));
#ifndef NBRL_COMMON_STATUS_MACROS_H_
#define NBRL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define NBRL_STATUS_CONCAT_INNER_(a, b) a##b
#define NBRL_STATUS_CONCAT_(a, b) NBRL_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if it
// is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status nbrl_status_ = (expr);        \
    if (!nbrl_status_.ok()) return nbrl_status_; \
  } while (0)

// Evaluates `expr` (an absl::StatusOr<T>); on error returns its status, otherwise
// moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  NBRL_ASSIGN_OR_RETURN_IMPL_(NBRL_STATUS_CONCAT_(nbrl_statusor_, __LINE__), lhs, expr)

#define NBRL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // NBRL_COMMON_STATUS_MACROS_H_
