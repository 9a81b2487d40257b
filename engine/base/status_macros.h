#ifndef OPENELM_ENGINE_BASE_STATUS_MACROS_H_
#define OPENELM_ENGINE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Abseil 20220623 ships no RETURN_IF_ERROR / ASSIGN_OR_RETURN; these are ours.
#define OPENELM_RETURN_IF_ERROR(expr)                                   \
  do {                                                                  \
    if (::absl::Status openelm_status_ = (expr); !openelm_status_.ok()) \
      return openelm_status_;                                           \
  } while (false)

#define OPENELM_ASSIGN_OR_RETURN(lhs, expr) \
  OPENELM_ASSIGN_OR_RETURN_IMPL_(OPENELM_CONCAT_(openelm_sor_, __LINE__), lhs, expr)
#define OPENELM_ASSIGN_OR_RETURN_IMPL_(sor, lhs, expr) \
  auto sor = (expr);                                   \
  if (!sor.ok()) return std::move(sor).status();       \
  lhs = *std::move(sor)
#define OPENELM_CONCAT_(a, b) OPENELM_CONCAT_IMPL_(a, b)
#define OPENELM_CONCAT_IMPL_(a, b) a##b

#endif  // OPENELM_ENGINE_BASE_STATUS_MACROS_H_
