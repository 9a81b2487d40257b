#ifndef OPENELM_ENGINE_KERNELS_ROPE_H_
#define OPENELM_ENGINE_KERNELS_ROPE_H_

#include <cstdint>
#include <vector>

namespace openelm {

// Rotary position embedding in the rotate-half (GPT-NeoX) layout:
//   out = x * cos + rotate_half(x) * sin,
//   rotate_half(x) = concat(-x[hd/2:], x[:hd/2]),
//   angle(pos, j) = pos * theta^(-2j / hd), j < hd/2.
// The cos/sin table is computed once for positions [0, max_positions) the way
// the Hugging Face model does (fp32 inverse frequencies and angles).
//
// Immutable after construction; Apply() may be called from any thread.
class RopeTable {
 public:
  RopeTable(int32_t head_dim, int32_t max_positions, float theta);

  int32_t head_dim() const { return head_dim_; }
  int32_t max_positions() const { return max_positions_; }
  // [max_positions, head_dim / 2]
  const float* cos(int32_t pos) const {
    return &cos_[static_cast<int64_t>(pos) * (head_dim_ / 2)];
  }
  const float* sin(int32_t pos) const {
    return &sin_[static_cast<int64_t>(pos) * (head_dim_ / 2)];
  }

  // Rotates, in place, `num_heads` heads of every row: head h of row r is at
  // x + r * row_stride + h * head_dim and is at position positions[r]
  // (0 <= positions[r] < max_positions, checked in debug builds).
  void Apply(const int32_t* positions, int32_t rows, float* x, int64_t row_stride,
             int32_t num_heads, int32_t num_threads) const;

 private:
  int32_t head_dim_;
  int32_t max_positions_;
  std::vector<float> cos_;
  std::vector<float> sin_;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_ROPE_H_
