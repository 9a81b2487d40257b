#ifndef OPENELM_ENGINE_MODEL_WORKSPACE_H_
#define OPENELM_ENGINE_MODEL_WORKSPACE_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace openelm {

// A 64-byte aligned, zero-filled buffer of T allocated once. Private to
// engine/model.
template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  // kResourceExhausted when the memory cannot be had.
  absl::Status Allocate(int64_t n) {
    const int64_t bytes = (n * static_cast<int64_t>(sizeof(T)) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, static_cast<size_t>(bytes > 0 ? bytes : 64));
    if (p == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes"));
    }
    std::memset(p, 0, static_cast<size_t>(bytes > 0 ? bytes : 64));
    data_.reset(static_cast<T*>(p));
    size_ = n;
    return absl::OkStatus();
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  int64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t size_ = 0;
};

// Activations of one step, sized in Prepare() for `cap` token rows (the
// largest matmul bucket, which is max_num_batched_tokens itself). All buffers
// are row-major, outermost dimension first.
struct Workspace {
  int32_t cap = 0;
  AlignedArray<float> x;       // [cap, d]            residual stream
  AlignedArray<float> xn;      // [cap, d]            normalised input of a matmul
  AlignedArray<float> qkv;     // [cap, max (q + 2 kv) * hd]  fused q | k | v
  AlignedArray<float> attn;    // [cap, max q * hd]   attention output, heads concatenated
  AlignedArray<float> proj;    // [cap, d]            out_proj / proj_2 output
  AlignedArray<float> ffn_in;  // [cap, 2 * max ffn]  gate | up
  AlignedArray<float> ffn_mid;      // [cap, max ffn]      SiLU(gate) * up
  AlignedArray<float> head_in;      // [logits rows, d]    rows whose logits are wanted
  AlignedArray<float> logits;       // [logits rows, vocab] (Prepare's max_logits_rows)
  AlignedArray<int32_t> positions;  // [cap]
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_WORKSPACE_H_
