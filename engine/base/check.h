#ifndef OPENELM_ENGINE_BASE_CHECK_H_
#define OPENELM_ENGINE_BASE_CHECK_H_

#include "engine/base/logging.h"

// Invariant checks for bugs (never for client input). OPENELM_CHECK is always
// on; OPENELM_DCHECK only in debug builds (NDEBUG unset).
#define OPENELM_CHECK(cond) \
  if (cond) {               \
  } else                    \
    OPENELM_LOG(FATAL) << "Check failed: " #cond " "

#ifndef NDEBUG
#define OPENELM_DCHECK(cond) OPENELM_CHECK(cond)
#else
#define OPENELM_DCHECK(cond) \
  while (false) OPENELM_CHECK(cond)
#endif

#endif  // OPENELM_ENGINE_BASE_CHECK_H_
