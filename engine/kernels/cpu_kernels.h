#ifndef OPENELM_ENGINE_KERNELS_CPU_KERNELS_H_
#define OPENELM_ENGINE_KERNELS_CPU_KERNELS_H_

#include <cstdint>

#include "engine/kernels/cpu_isa.h"

namespace openelm {

namespace attention_internal {
struct KernelArgs;
}  // namespace attention_internal

// Arguments of one bf16-weight matmul, dst[m, n] = src[m, k] * W^T, with W
// packed by PackBf16Panels() for the same `lanes`.
struct Bf16MatmulArgs {
  const float* src = nullptr;  // [m, k] row-major, lda = k
  int32_t m = 0;
  int64_t k = 0;
  int64_t n = 0;
  const uint32_t* packed = nullptr;
  float* dst = nullptr;  // [m, n] row-major
  int32_t num_threads = 1;
};

// Arguments of one int8 matmul (int8_matmul.h): dst[m, n] = a_scale[m] *
// w_scale[n] * sum_k a_q[m, k] * w_q[n, k]; rows of a_q and w_q hold kp
// int8 values (k rounded up to kInt8Chunk, zero-padded). w_q is blocked:
// kInt8BlockRows rows interleaved chunk by chunk (Int8WeightOffset), n
// padded with zero rows (and w_scale entries) to whole blocks.
struct Int8MatmulArgs {
  const int8_t* a_q = nullptr;     // [m, kp]
  const float* a_scale = nullptr;  // [m]
  int32_t m = 0;
  int64_t kp = 0;
  const int8_t* w_q = nullptr;     // [ceil(n / 4) blocks][kp / 32 chunks][4 rows][32]
  const float* w_scale = nullptr;  // [n rounded up to whole blocks]
  int64_t n = 0;
  float* dst = nullptr;  // [m, n]
  int32_t num_threads = 1;
};
inline constexpr int64_t kInt8Chunk = 32;
inline constexpr int64_t kInt8BlockRows = 4;
// Length of one int8 row: k rounded up to whole chunks (zero-padded).
inline constexpr int64_t Int8PaddedK(int64_t k) {
  return (k + kInt8Chunk - 1) / kInt8Chunk * kInt8Chunk;
}
// Offset of W[row, c] (c < kp) in the blocked int8 layout.
inline int64_t Int8WeightOffset(int64_t row, int64_t c, int64_t kp) {
  const int64_t block = row / kInt8BlockRows, r = row % kInt8BlockRows;
  return block * kp * kInt8BlockRows + (c / kInt8Chunk) * kInt8Chunk * kInt8BlockRows +
         r * kInt8Chunk + c % kInt8Chunk;
}

// One ISA build of every own kernel. The variants live side by side:
//   engine/kernels/isa/kernels_portable.cc  plain C++ (the readable definition)
//   engine/kernels/isa/kernels_avx2.cc      built with -mavx2 -mfma -mf16c
//   engine/kernels/isa/kernels_avx2_vnni.cc the same plus -mavxvnni: the int8
//                                           dot product on (VEX) vpdpbusd
//   engine/kernels/isa/kernels_avx512.cc    built with -mavx512f/bw/vl/dq
//   engine/kernels/isa/kernels_avx512_vnni.cc  the same plus -mavx512vnni: the
//                                           int8 dot product on vpdpbusd
// and share their bodies through the *_impl.h templates. The table is chosen
// once (ActiveKernels()); nothing on the hot path asks the CPU again.
struct CpuKernels {
  CpuIsa isa = CpuIsa::kPortable;  // the vector width level of this table
  // out = x * rsqrt(mean(x^2) + eps) * w, n values.
  void (*rms_norm_row)(const float* x, const float* w, int32_t n, float eps, float* out);
  // v[j], v[j + half] rotated by (c[j], s[j]) for j < half.
  void (*rope_rotate_head)(float* v, const float* c, const float* s, int32_t half);
  // out[i] = SiLU(gate[i]) * up[i].
  void (*swiglu_row)(const float* gate, const float* up, int32_t n, float* out);
  // y[i] += x[i].
  void (*add)(const float* x, int64_t n, float* y);
  void (*f32_to_bf16)(const float* src, int64_t n, uint16_t* dst);
  void (*bf16_to_f32)(const uint16_t* src, int64_t n, float* dst);
  // Paged attention (see paged_attention.h); needs head_dim to be a multiple
  // of attention_head_dim_multiple, else the portable table's is used.
  void (*paged_attention)(const attention_internal::KernelArgs& args);
  int32_t attention_head_dim_multiple = 1;
  // bf16 weights x f32 activations, fp32 accumulation (bf16_matmul.h).
  void (*bf16_matmul)(const Bf16MatmulArgs& args);
  int32_t matmul_lanes = 8;  // fp32 lanes of one vector: the packing layout
  // int8 weights x dynamically quantized int8 activations, int32 sums.
  void (*int8_matmul)(const Int8MatmulArgs& args);
  const char* int8_kernel = "portable";  // its name in the plan ("avx512_vnni", ...)
  // Per-row symmetric quantization of x [m, k] into q [m, kp] and scale [m].
  void (*quantize_rows_s8)(const float* x, int32_t m, int64_t k, int64_t kp, int8_t* q,
                           float* scale);
};

// The kernel tables this binary has, one per ISA build (above).
enum class KernelBuild : int { kPortable, kAvx2, kAvx2Vnni, kAvx512, kAvx512Vnni };
// "portable", "avx2", "avx2_vnni", "avx512", "avx512_vnni".
const char* KernelBuildName(KernelBuild build);
// The instructions a build needs, e.g. "AVX2+FMA+F16C+AVX-VNNI" (messages).
const char* KernelBuildNeeds(KernelBuild build);
// The build's table if this CPU can run it (whatever the cap), else nullptr:
// tests run every build the host can execute.
const CpuKernels* KernelsForBuild(KernelBuild build);

// The build the plan runs at level `isa` on this CPU. avx512_bf16 and amx
// (which all have AVX512_VNNI) run avx512_vnni; AMX itself is used through
// oneDNN only. At avx2 and avx512 the VNNI build runs where the CPU has
// AVX-VNNI / AVX512_VNNI and `isa` is the CPU's own level: a cap
// (--max_cpu_isa) gives the level's base instructions, as on the oldest CPU
// of that level (a capped Zen 5 runs what a Zen 3 runs).
KernelBuild KernelBuildFor(CpuIsa isa);

// The table the plan runs at level `isa` (KernelBuildFor), or nullptr if
// `isa` is above this CPU's level.
const CpuKernels* KernelsFor(CpuIsa isa);

// The table for EffectiveCpuIsa(), fixed at the first call.
const CpuKernels& ActiveKernels();

// The name of the int8 matmul kernel the plan runs at level `isa` on this
// CPU (e.g. "avx2", "avx_vnni", "avx512_vnni"): for plan descriptions.
const char* Int8KernelName(CpuIsa isa);

namespace kernels_internal {
const CpuKernels& PortableKernels();
const CpuKernels& Avx2Kernels();
const CpuKernels& Avx2VnniKernels();
const CpuKernels& Avx512Kernels();
const CpuKernels& Avx512VnniKernels();
// Tests only (tests/emulated_isa): makes ActiveKernels() return `table`
// instead of the plan's. False, and no effect, once ActiveKernels() has
// been called.
bool SetActiveKernelsForTest(const CpuKernels* table);
}  // namespace kernels_internal

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_CPU_KERNELS_H_
