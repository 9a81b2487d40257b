#ifndef OPENELM_ENGINE_KERNELS_ONEDNN_MATMUL_H_
#define OPENELM_ENGINE_KERNELS_ONEDNN_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/onednn_context.h"

namespace openelm {

// Row counts for which matmul primitives are created. Running with M rows
// uses the smallest bucket >= M; the last bucket is `max_m` itself. Up to 32
// rows the buckets double: a matmul of so few rows is bound by streaming its
// weights, so the padded rows cost next to nothing. From 32 on they grow by
// 1.5x, so at most a third of a compute-bound matmul is wasted. Every bucket
// is one primitive per weight shape, each 50-80 KB of oneDNN's objects and
// JIT code: dropping the mid buckets below 32 (3, 6, 12, 24) saved 8 MiB of
// idle RSS on 270M (BENCHMARKS 1d).
inline constexpr int32_t kMatmulMidBucketsFrom = 32;
std::vector<int32_t> MatmulBuckets(int32_t max_m);
// The bucket used for `m` rows (m <= max_m).
int32_t MatmulBucketFor(int32_t m, int32_t max_m);

// kS8: int8 weights, quantized at Create() symmetrically per output channel
// (the own int8 kernels' scheme and rounding, int8_matmul.h), times int8
// activations quantized per row at Run(); int32 sums, scales applied in f32.
// oneDNN's int8 sums are exact only with VNNI or AMX (below that, 16-bit
// intermediate sums saturate): the execution plan uses kS8 only there.
enum class MatmulDType { kF32, kBF16, kS8 };

// True while the calling thread is inside oneDNN's execution of a
// PackedMatmul::Run(). oneDNN 2.6 allocates a few small objects per
// execution (its argument map) that no caller can avoid; allocation tests use
// this to tell those apart from allocations of ours.
bool InsideOnednnExecute();

struct MatmulSpec {
  int64_t n = 0;      // output features (rows of the [n, k] weight)
  int64_t k = 0;      // input features
  int32_t max_m = 1;  // most rows one Run() may get
  // Rows of the problem that picks the packed weight layout (0: max_m). The
  // layout is then used for every bucket, including ones added by SetMaxM().
  int32_t layout_m = 0;
  // Type the weights are packed in and the src is fed in. oneDNN 2.6 has no
  // f32 x bf16 matmul, so kBF16 also rounds the f32 src to bf16 (into the
  // context's staging buffer). Accumulation and dst are f32 either way.
  MatmulDType compute = MatmulDType::kF32;
  // The tensor's name, for errors (kS8: a weight that cannot be quantized).
  std::string name = "";
};

// dst[m, n] = src[m, k] * W^T for a fixed weight W[n, k], on oneDNN.
// The weight is copied once into oneDNN's preferred (packed) layout; one
// primitive per row bucket is created up front, so Run() creates nothing and
// allocates nothing of ours.
//
// Buffers passed to Run() must be sized for the bucket, not just m:
//   src: MatmulBucketFor(m) rows of k floats readable (f32 compute only; rows
//        past m are read but their results are ignored),
//   dst: MatmulBucketFor(m) rows of n floats writable (rows past m get junk).
//
// Owns its packed weights; borrows the context, which must outlive it.
// Thread-compatible.
class PackedMatmul final : public Matmul {
 public:
  // `weight` is [n, k] row-major: float* when `weight_is_bf16` is false,
  // otherwise bf16 bit patterns (uint16_t*). It is converted to spec.compute
  // (kS8: quantized). kInvalidArgument on bad sizes (and, for kS8, a weight
  // that is not finite), kInternal when oneDNN fails.
  static absl::StatusOr<std::unique_ptr<PackedMatmul>> Create(OnednnContext* ctx,
                                                              const MatmulSpec& spec,
                                                              const void* weight,
                                                              bool weight_is_bf16);
  ~PackedMatmul() override;
  PackedMatmul(const PackedMatmul&) = delete;
  PackedMatmul& operator=(const PackedMatmul&) = delete;

  // Replaces the row buckets with MatmulBuckets(max_m), against the same
  // packed weights (setup time only; creates the primitives). kInternal when
  // oneDNN fails.
  absl::Status SetMaxM(int32_t max_m) override;

  // See the class comment for buffer sizes. m == 0 is a no-op.
  // kInvalidArgument when m > max_m, kInternal when oneDNN fails.
  absl::Status Run(const float* src, int32_t m, float* dst) override;
  int32_t RowCapacity(int32_t m) const override {
    return MatmulBucketFor(m, spec_.max_m);
  }
  int64_t n() const override { return spec_.n; }
  int64_t k() const override { return spec_.k; }

  const MatmulSpec& spec() const { return spec_; }
  int64_t packed_weight_bytes() const override;

  // Row gather from the packed weights (the tied embedding reads its rows
  // here, so the table is held once). PrepareRowGather() works out where
  // each element of a row lies in oneDNN's blocked layout; it returns false,
  // and GatherRow() must not be called, when the layout is not a blocked one
  // (oneDNN 2.6 always picks a blocked layout for matmul weights).
  // GatherRow() writes W[row, 0..k) as f32: the packed values, so bf16
  // compute gives the bf16-rounded weights and kS8 the dequantized ones.
  bool PrepareRowGather();
  bool GathersRows() const override;
  void GatherRow(int64_t row, float* out) const override;
  int64_t num_runs() const override { return num_runs_; }

 private:
  struct Impl;
  explicit PackedMatmul(OnednnContext* ctx, const MatmulSpec& spec);
  // kS8: dst[r, c] *= the activations' scale of row r, then the weights'
  // scale of channel c.
  void ScaleRows(int32_t m, float* dst) const;
  OnednnContext* ctx_;
  MatmulSpec spec_;
  std::unique_ptr<Impl> impl_;
  int64_t num_runs_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_ONEDNN_MATMUL_H_
