#ifndef OPENELM_ENGINE_KERNELS_ISA_ATTENTION_LANES_H_
#define OPENELM_ENGINE_KERNELS_ISA_ATTENTION_LANES_H_

// Paged attention for work items with many query rows (prefill chunks):
// query rows across the lanes of a vector V (isa/simd_*.h) instead of the
// head dimension. ProcessItem (paged_attention_impl.h) puts head_dim in the
// lanes, so every (row, key) score ends in a horizontal sum and every row
// widens the bf16 keys and values again. Here a tile of V::kLanes rows holds
// its queries transposed ([head_dim][lanes], scale folded in) and its output
// transposed; per chunk of keys the keys and values are widened once, each
// score vector is head_dim FMAs of a query column by one broadcast key
// element, the online softmax runs lane-wise, and the values are added with
// one FMA per (key, head_dim element) for all lanes. The FMA count equals
// ProcessItem's; what goes is the widening per row and the horizontal sums.
//
// Templates only, instantiated by the ISA builds with a V from an unnamed
// namespace (see elementwise_impl.h).
#include <cstdint>

#include "engine/kernels/isa/elementwise_impl.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm::attention_internal {

inline constexpr int32_t kLaneChunkKeys = 16;  // keys per widened chunk
inline constexpr float kMaskedScore = -1e30f;  // finite: no inf - inf

template <class V, typename T>
const float* WidenChunk(const T* src, int32_t count, float* buf) {
  if constexpr (sizeof(T) == sizeof(float)) {
    (void)count;
    (void)buf;
    return reinterpret_cast<const float*>(src);
  } else {
    for (int32_t i = 0; i < count; i += V::kLanes)
      V::Store(buf + i, V::LoadBf16(src + i));
    return buf;
  }
}

// Score vectors of keys [j0, j0 + J) for the tile's lanes: s[j * L + lane].
// qt is [hd][L]; keys are [key][hd] f32.
template <class V, int J>
void LaneScores(const float* qt, const float* keys, int32_t hd, int32_t j0, float* s) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  Reg acc[J];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) acc[j] = V::Zero();
  const float* k0 = keys + static_cast<int64_t>(j0) * hd;
  for (int32_t d = 0; d < hd; ++d) {
    const Reg q = V::Load(qt + d * L);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) acc[j] = V::Fma(q, V::Set1(k0[j * hd + d]), acc[j]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) V::Store(s + (j0 + j) * L, acc[j]);
}

template <class V, typename T>
void ProcessItemLanes(const KernelArgs& a, const PagedAttentionScratch::WorkItem& w,
                      int32_t group) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const PagedAttentionShape& sh = *a.shape;
  const PagedKvLayout& layout = sh.layout;
  const int32_t hd = layout.head_dim;
  const AttentionSeq& s = a.seqs[w.seq];
  const T* kv = static_cast<const T*>(a.kv);
  const int32_t rows = w.num_tokens * group;
  const int32_t first_pos = s.start_position + w.first_token;

  alignas(64) float qt[kMaxHeadDim * L];
  alignas(64) float ot[kMaxHeadDim * L];
  alignas(64) float kbuf[kLaneChunkKeys * kMaxHeadDim];
  alignas(64) float vbuf[kLaneChunkKeys * kMaxHeadDim];
  alignas(64) float sc[kLaneChunkKeys * L];
  alignas(64) float posf[L];
  alignas(64) float lsum[L];

  for (int32_t r0 = 0; r0 < rows; r0 += L) {
    const int32_t lanes = rows - r0 < L ? rows - r0 : L;
    const int32_t tile_min_pos = first_pos + r0 / group;
    const int32_t tile_max_pos = first_pos + (r0 + lanes - 1) / group;
    for (int32_t lane = 0; lane < L; ++lane) {
      if (lane < lanes) {
        const int32_t r = r0 + lane, t = r / group, h = r % group;
        const float* q = a.q + (s.token_offset + w.first_token + t) * a.q_stride +
                         static_cast<int64_t>(w.kv_head * group + h) * hd;
        for (int32_t d = 0; d < hd; ++d) qt[d * L + lane] = q[d] * sh.scale;
        posf[lane] = static_cast<float>(first_pos + t);
      } else {  // padding: a zero query that may see every key
        for (int32_t d = 0; d < hd; ++d) qt[d * L + lane] = 0.0f;
        posf[lane] = static_cast<float>(tile_max_pos);
      }
    }
    for (int32_t i = 0; i < hd * L; i += L) V::Store(ot + i, V::Zero());
    Reg m = V::Set1(kMaskedScore);
    Reg l = V::Zero();
    const Reg pos = V::Load(posf);

    ForEachKeyChunk(
        layout, s, w.kv_head, kv, tile_max_pos, kLaneChunkKeys,
        [&](const T* kchunk, const T* vchunk, int32_t first, int32_t n) {
          const float* keys = WidenChunk<V>(kchunk, n * hd, kbuf);
          const float* vals = WidenChunk<V>(vchunk, n * hd, vbuf);

          int32_t j = 0;
          for (; j + 8 <= n; j += 8) LaneScores<V, 8>(qt, keys, hd, j, sc);
          for (; j < n; ++j) LaneScores<V, 1>(qt, keys, hd, j, sc);

          // Causal mask where some lane's position is below a key's: the
          // score drops to about kMaskedScore and its weight is zeroed below.
          const bool masked = first + n - 1 > tile_min_pos;
          // 1 where pos >= key position, else 0 (positions are whole numbers).
          const auto keep = [&](int32_t key) {
            return V::Min(
                V::Max(V::Sub(pos, V::Set1(static_cast<float>(key - 1))), V::Zero()),
                V::Set1(1.0f));
          };
          Reg m_new = m;
          for (j = 0; j < n; ++j) {
            Reg x = V::Load(sc + j * L);
            if (masked) {
              x = V::Fma(V::Sub(keep(first + j), V::Set1(1.0f)), V::Set1(-kMaskedScore),
                         x);
              V::Store(sc + j * L, x);
            }
            m_new = V::Max(m_new, x);
          }
          const Reg corr = kernels_internal::VecExp<V>(V::Sub(m, m_new));
          m = m_new;
          l = V::Mul(l, corr);
          for (j = 0; j < n; ++j) {
            Reg p = kernels_internal::VecExp<V>(V::Sub(V::Load(sc + j * L), m));
            if (masked) p = V::Mul(p, keep(first + j));
            l = V::Add(l, p);
            V::Store(sc + j * L, p);
          }
          // ot[d] = ot[d] * corr + sum_j p[j] * v[j][d], eight d at a time.
          for (int32_t d0 = 0; d0 < hd; d0 += 8) {
            Reg acc[8];
#pragma GCC unroll 8
            for (int dd = 0; dd < 8; ++dd)
              acc[dd] = V::Mul(V::Load(ot + (d0 + dd) * L), corr);
            for (j = 0; j < n; ++j) {
              const Reg p = V::Load(sc + j * L);
              const float* v = vals + static_cast<int64_t>(j) * hd + d0;
#pragma GCC unroll 8
              for (int dd = 0; dd < 8; ++dd) acc[dd] = V::Fma(p, V::Set1(v[dd]), acc[dd]);
            }
#pragma GCC unroll 8
            for (int dd = 0; dd < 8; ++dd) V::Store(ot + (d0 + dd) * L, acc[dd]);
          }
        });
    V::Store(lsum, l);
    for (int32_t lane = 0; lane < lanes; ++lane) {
      const int32_t r = r0 + lane, t = r / group, h = r % group;
      float* o = a.out + (s.token_offset + w.first_token + t) * a.out_stride +
                 static_cast<int64_t>(w.kv_head * group + h) * hd;
      const float inv = 1.0f / lsum[lane];
      for (int32_t d = 0; d < hd; ++d) o[d] = ot[d * L + lane] * inv;
    }
  }
}

// RunKernel with the lanes kernel for items that fill a vector with query
// rows (prefill); decode items keep ProcessItem. Measured on the AVX2 build:
// a decode item of one token and a GQA group of 4 in 8 lanes was 12-18%
// slower at context 1024 than ProcessItem. head_dim must be a multiple of 8
// and of V::kLanes.
template <typename Ops, class V>
struct LanesOrPlainItems {
  template <typename T>
  static void Run(const KernelArgs& a, const PagedAttentionScratch::WorkItem& w,
                  int32_t group) {
    if (a.shape->layout.head_dim % 8 == 0 && w.num_tokens * group >= V::kLanes) {
      ProcessItemLanes<V, T>(a, w, group);
    } else {
      ProcessItem<Ops, T>(a, w, group);
    }
  }
};

template <typename Ops, class V>
void RunKernelLanes(const KernelArgs& a) {
  RunKernel<Ops, LanesOrPlainItems<Ops, V>>(a);
}

}  // namespace openelm::attention_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_ATTENTION_LANES_H_
