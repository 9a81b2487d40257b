#ifndef OPENELM_ENGINE_BASE_TYPES_H_
#define OPENELM_ENGINE_BASE_TYPES_H_

#include <cstdint>

namespace openelm {

using TokenId = int32_t;     // index into the 32000-entry vocabulary
using RequestId = uint64_t;  // unique per accepted request, assigned by the caller
using BlockId = int32_t;     // index of a KV block in the pool

inline constexpr TokenId kBosTokenId = 1;
inline constexpr TokenId kEosTokenId = 2;

}  // namespace openelm

#endif  // OPENELM_ENGINE_BASE_TYPES_H_
