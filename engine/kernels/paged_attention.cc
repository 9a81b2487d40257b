#include "engine/kernels/paged_attention.h"

#include "engine/base/check.h"
#include "engine/kernels/bf16.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm {
namespace attention_internal {
namespace {

inline float Load(float v) { return v; }
inline float Load(uint16_t v) { return Bf16ToF32(v); }

struct ScalarOps {
  template <typename T>
  static void Scores(const float* q, const T* keys, int32_t count, int32_t n,
                     float* out) {
    for (int32_t j = 0; j < count; ++j) {
      const T* k = keys + static_cast<int64_t>(j) * n;
      float s = 0.0f;
      for (int32_t d = 0; d < n; ++d) s += q[d] * Load(k[d]);
      out[j] = s;
    }
  }
  template <typename T>
  static void AccumulateValues(float* acc, const float* p, const T* values, int32_t count,
                               int32_t n) {
    for (int32_t j = 0; j < count; ++j) {
      const T* v = values + static_cast<int64_t>(j) * n;
      for (int32_t d = 0; d < n; ++d) acc[d] += p[j] * Load(v[d]);
    }
  }
  static float ExpAndSum(float* s, int32_t count, float mx) {
    float sum = 0.0f;
    for (int32_t j = 0; j < count; ++j) {
      s[j] = FastExp(s[j] - mx);
      sum += s[j];
    }
    return sum;
  }
  static void Scale(float* acc, float c, int32_t n) {
    for (int32_t d = 0; d < n; ++d) acc[d] *= c;
  }
};

}  // namespace

void RunScalar(const KernelArgs& args) { RunKernel<ScalarOps>(args); }

}  // namespace attention_internal

PagedAttentionScratch::PagedAttentionScratch(int32_t max_tokens, int32_t max_kv_heads) {
  // At most one tile per token per KV head.
  items.resize(static_cast<size_t>(max_tokens) * max_kv_heads);
}

const char* PagedAttentionVariant(int32_t head_dim) {
  const CpuKernels& k = ActiveKernels();
  return head_dim % k.attention_head_dim_multiple == 0 ? CpuIsaName(k.isa) : "portable";
}

void PagedAttention(const PagedAttentionShape& shape, absl::Span<const AttentionSeq> seqs,
                    const float* q, int64_t q_stride, const void* kv, float* out,
                    int64_t out_stride, PagedAttentionScratch& scratch,
                    int32_t num_threads, const CpuKernels* kernels) {
  using attention_internal::kMaxHeadDim;
  using attention_internal::kMaxRows;
  const PagedKvLayout& layout = shape.layout;
  OPENELM_CHECK(layout.num_kv_heads > 0 && shape.num_q_heads % layout.num_kv_heads == 0);
  OPENELM_CHECK(layout.head_dim <= kMaxHeadDim);
  const int32_t group = shape.num_q_heads / layout.num_kv_heads;
  OPENELM_CHECK(group <= kMaxRows) << "GQA group of " << group;
  // Query tokens per work item: as many as fit kMaxRows rows, at most 8.
  int32_t tile = kMaxRows / group;
  if (tile > 8) tile = 8;

  int32_t n = 0;
  const int32_t capacity = static_cast<int32_t>(scratch.items.size());
  for (int32_t si = 0; si < static_cast<int32_t>(seqs.size()); ++si) {
    const AttentionSeq& s = seqs[si];
    OPENELM_DCHECK(s.num_tokens == 0 ||
                   (s.start_position + s.num_tokens - 1) / layout.block_size <
                       s.num_blocks);
    for (int32_t first = 0; first < s.num_tokens; first += tile) {
      const int32_t len = s.num_tokens - first < tile ? s.num_tokens - first : tile;
      for (int32_t g = 0; g < layout.num_kv_heads; ++g) {
        OPENELM_CHECK(n < capacity) << "PagedAttentionScratch too small";
        scratch.items[n++] = {si, g, first, len};
      }
    }
  }
  attention_internal::KernelArgs args{
      &shape, seqs.data(), scratch.items.data(), n,          q, q_stride,
      kv,     out,         out_stride,           num_threads};
  const CpuKernels& k = kernels != nullptr ? *kernels : ActiveKernels();
  if (layout.head_dim % k.attention_head_dim_multiple == 0) {
    k.paged_attention(args);
  } else {
    attention_internal::RunScalar(args);
  }
}

}  // namespace openelm
