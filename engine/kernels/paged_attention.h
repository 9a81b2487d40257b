#ifndef OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_H_
#define OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/kernels/cpu_kernels.h"

namespace openelm {

// One layer's paged K/V storage, as laid out by OpenElmModel:
//
//   kv: [num_blocks][num_kv_heads][2][block_size][head_dim]
//                                  ^ 0 = K, 1 = V
//
// so the keys and values one GQA group needs from one block are a single
// contiguous 2 * block_size * head_dim run. Keys are stored after RoPE.
struct PagedKvLayout {
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;
  bool bf16 = false;  // element type: bf16 bit patterns, else f32

  int64_t elements_per_block() const {
    return static_cast<int64_t>(num_kv_heads) * 2 * block_size * head_dim;
  }
  // Element offset of the K (kv = 0) or V (kv = 1) row of (block, head, slot).
  int64_t offset(BlockId block, int32_t head, int32_t kv, int32_t slot) const {
    return ((static_cast<int64_t>(block) * num_kv_heads + head) * 2 + kv) * block_size *
               head_dim +
           static_cast<int64_t>(slot) * head_dim;
  }
};

// One sequence of the batch (mirrors BatchRow): its new tokens are rows
// token_offset .. token_offset + num_tokens - 1 of q/out, at positions
// start_position ... Each attends causally to positions <= its own, read
// through `block_table` (which already holds the new tokens' K/V).
struct AttentionSeq {
  int32_t token_offset = 0;
  int32_t num_tokens = 0;
  int32_t start_position = 0;
  const BlockId* block_table = nullptr;
  int32_t num_blocks = 0;
};

struct PagedAttentionShape {
  int32_t num_q_heads = 0;  // a multiple of layout.num_kv_heads
  PagedKvLayout layout;
  float scale = 0.0f;  // usually 1 / sqrt(head_dim)
};

// Reusable work list for PagedAttention (sized once, so the call allocates
// nothing). Thread-compatible.
class PagedAttentionScratch {
 public:
  // Enough for batches of up to `max_tokens` tokens with up to `max_kv_heads`.
  PagedAttentionScratch(int32_t max_tokens, int32_t max_kv_heads);

  struct WorkItem {
    int32_t seq;
    int32_t kv_head;
    int32_t first_token;  // within the sequence
    int32_t num_tokens;
  };
  std::vector<WorkItem> items;
};

// out[t, h*hd:(h+1)*hd] = softmax(q_t,h . K^T * scale, causal) . V for every
// token row t and query head h; query head h reads KV head h / group_size.
// q: head h of row t at q + t * q_stride + h * head_dim; out likewise with
// out_stride. For each (sequence, KV head, tile of query tokens) all query
// heads of the group and all tokens of the tile walk the blocks together, so
// K/V are read once per tile; softmax is computed online in fp32. Runs on
// `num_threads` OpenMP threads with the kernel of `kernels` (nullptr: the
// active ISA's, cpu_kernels.h), or the portable one when head_dim is not a
// multiple of that kernel's vector width.
void PagedAttention(const PagedAttentionShape& shape, absl::Span<const AttentionSeq> seqs,
                    const float* q, int64_t q_stride, const void* kv, float* out,
                    int64_t out_stride, PagedAttentionScratch& scratch,
                    int32_t num_threads, const CpuKernels* kernels = nullptr);

// The ISA name of the kernel PagedAttention() runs for this head_dim (logs
// and benchmarks).
const char* PagedAttentionVariant(int32_t head_dim);

// Implementation detail shared by the two builds of the kernel.
namespace attention_internal {
struct KernelArgs {
  const PagedAttentionShape* shape;
  const AttentionSeq* seqs;
  const PagedAttentionScratch::WorkItem* items;
  int32_t num_items;
  const float* q;
  int64_t q_stride;
  const void* kv;
  float* out;
  int64_t out_stride;
  int32_t num_threads;
};
void RunScalar(const KernelArgs& args);
void RunAvx512(const KernelArgs& args);
}  // namespace attention_internal

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_H_
