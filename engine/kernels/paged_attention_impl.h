#ifndef OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_IMPL_H_
#define OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_IMPL_H_

// The paged-attention kernel body, shared by paged_attention.cc (portable
// build) and paged_attention_avx512.cc (built with -mavx512*). Every function
// here is a template over an `Ops` type that each of those files defines in
// an anonymous namespace, so the two builds never share a symbol. Do not add
// non-template inline functions here.
//
// Ops must provide, for T in {float, uint16_t (bf16)}:
//   static void Scores(const float* q, const T* keys, int32_t count, int32_t n, float*
//   out);
//       out[j] = q . keys[j * n .. j * n + n) for j < count (count <= kKeyChunk)
//   static void AccumulateValues(float* acc, const float* p, const T* values, int32_t
//   count,
//                                int32_t n);  // acc += sum_j p[j] * values[j * n ..)
//   static float ExpAndSum(float* s, int32_t count, float mx);  // s[j] = exp(s[j] - mx);
//   returns the sum static void Scale(float* acc, float c, int32_t n);             // acc
//   *= c

#include <cstdint>

#include "engine/kernels/fast_math.h"
#include "engine/kernels/paged_attention.h"

namespace openelm::attention_internal {

inline constexpr int32_t kMaxRows = 64;  // query rows (tokens x group heads) per item
inline constexpr int32_t kMaxHeadDim = 256;
inline constexpr int32_t kKeyChunk = 32;  // keys scored at a time

// Walks the keys of positions [0, max_pos] of sequence `s` for KV head
// `kv_head` in order, in runs of at most `chunk` keys that do not cross a
// block: fn(keys, values, first position, count). The next block's K/V are
// prefetched (blocks are scattered: the hardware prefetcher cannot guess it).
template <typename T, typename Fn>
void ForEachKeyChunk(const PagedKvLayout& layout, const AttentionSeq& s, int32_t kv_head,
                     const T* kv, int32_t max_pos, int32_t chunk, Fn&& fn) {
  const int32_t hd = layout.head_dim;
  const int32_t bs = layout.block_size;
  const int32_t num_blocks = max_pos / bs + 1;
  const int64_t group_block_bytes =
      int64_t{2} * bs * hd * static_cast<int64_t>(sizeof(T));
  for (int32_t b = 0; b < num_blocks; ++b) {
    if (b + 1 < num_blocks) {
      const T* next = kv + layout.offset(s.block_table[b + 1], kv_head, 0, 0);
      for (int64_t off = 0; off < group_block_bytes; off += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(next) + off);
      }
    }
    const T* kb = kv + layout.offset(s.block_table[b], kv_head, 0, 0);
    const T* vb = kb + static_cast<int64_t>(bs) * hd;
    for (int32_t c0 = 0; c0 < bs; c0 += chunk) {
      const int32_t first = b * bs + c0;
      if (first > max_pos) break;
      int32_t n = bs - c0;
      if (n > chunk) n = chunk;
      if (n > max_pos + 1 - first) n = max_pos + 1 - first;
      fn(kb + static_cast<int64_t>(c0) * hd, vb + static_cast<int64_t>(c0) * hd, first,
         n);
    }
  }
}

template <typename Ops, typename T>
void ProcessItem(const KernelArgs& a, const PagedAttentionScratch::WorkItem& w,
                 int32_t group) {
  const PagedAttentionShape& sh = *a.shape;
  const PagedKvLayout& layout = sh.layout;
  const int32_t hd = layout.head_dim;
  const AttentionSeq& s = a.seqs[w.seq];
  const T* kv = static_cast<const T*>(a.kv);

  const int32_t rows = w.num_tokens * group;
  alignas(64) float acc[kMaxRows * kMaxHeadDim];
  float m[kMaxRows];
  float l[kMaxRows];
  int32_t pos[kMaxRows];
  const float* qr[kMaxRows];
  for (int32_t t = 0; t < w.num_tokens; ++t) {
    const int64_t row = s.token_offset + w.first_token + t;
    for (int32_t h = 0; h < group; ++h) {
      const int32_t r = t * group + h;
      qr[r] = a.q + row * a.q_stride + static_cast<int64_t>(w.kv_head * group + h) * hd;
      pos[r] = s.start_position + w.first_token + t;
      m[r] = -__builtin_inff();
      l[r] = 0.0f;
      for (int32_t d = 0; d < hd; ++d) acc[r * hd + d] = 0.0f;
    }
  }
  const int32_t max_pos = s.start_position + w.first_token + w.num_tokens - 1;
  alignas(64) float sc[kKeyChunk];
  ForEachKeyChunk(layout, s, w.kv_head, kv, max_pos, kKeyChunk,
                  [&](const T* keys, const T* values, int32_t first, int32_t n) {
                    for (int32_t r = 0; r < rows; ++r) {
                      int32_t cnt = pos[r] + 1 - first;
                      if (cnt <= 0) continue;
                      if (cnt > n) cnt = n;
                      float mx = m[r];
                      Ops::Scores(qr[r], keys, cnt, hd, sc);
                      for (int32_t j = 0; j < cnt; ++j) {
                        sc[j] *= sh.scale;
                        mx = sc[j] > mx ? sc[j] : mx;
                      }
                      float* acc_r = acc + r * hd;
                      if (mx > m[r]) {
                        // New running maximum: rescale what was accumulated so far.
                        const float corr = l[r] > 0.0f ? FastExp(m[r] - mx) : 0.0f;
                        l[r] *= corr;
                        Ops::Scale(acc_r, corr, hd);
                        m[r] = mx;
                      }
                      l[r] += Ops::ExpAndSum(sc, cnt, mx);
                      Ops::AccumulateValues(acc_r, sc, values, cnt, hd);
                    }
                  });
  for (int32_t t = 0; t < w.num_tokens; ++t) {
    const int64_t row = s.token_offset + w.first_token + t;
    for (int32_t h = 0; h < group; ++h) {
      const int32_t r = t * group + h;
      float* o =
          a.out + row * a.out_stride + static_cast<int64_t>(w.kv_head * group + h) * hd;
      const float inv = 1.0f / l[r];
      for (int32_t d = 0; d < hd; ++d) o[d] = acc[r * hd + d] * inv;
    }
  }
}

template <typename Ops>
struct PlainItems {
  template <typename T>
  static void Run(const KernelArgs& a, const PagedAttentionScratch::WorkItem& w,
                  int32_t group) {
    ProcessItem<Ops, T>(a, w, group);
  }
};

// Every work item on the OpenMP team through Items::Run<T> (T: the KV
// element type); attention_lanes.h gives another Items for prefill items.
template <typename Ops, typename Items = PlainItems<Ops>>
void RunKernel(const KernelArgs& a) {
  const int32_t group = a.shape->num_q_heads / a.shape->layout.num_kv_heads;
  const bool bf16 = a.shape->layout.bf16;
#pragma omp parallel for num_threads(a.num_threads) schedule(dynamic, 1)
  for (int32_t i = 0; i < a.num_items; ++i) {
    if (bf16) {
      Items::template Run<uint16_t>(a, a.items[i], group);
    } else {
      Items::template Run<float>(a, a.items[i], group);
    }
  }
}

}  // namespace openelm::attention_internal

#endif  // OPENELM_ENGINE_KERNELS_PAGED_ATTENTION_IMPL_H_
