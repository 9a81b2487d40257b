#include "engine/kernels/onednn_matmul.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/kernels/bf16.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/int8_matmul.h"
#include "engine/kernels/onednn_handles.h"

namespace openelm {

std::vector<int32_t> MatmulBuckets(int32_t max_m) {
  // 1, 2, 4, 8, 16, 32, 48, 64, 96, 128, ... then max_m itself.
  std::vector<int32_t> buckets;
  for (int32_t p = 1; p < max_m; p *= 2) {
    buckets.push_back(p);
    const int32_t mid = p + p / 2;
    if (p >= kMatmulMidBucketsFrom && mid < max_m) buckets.push_back(mid);
  }
  buckets.push_back(std::max(max_m, 1));
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  return buckets;
}

int32_t MatmulBucketFor(int32_t m, int32_t max_m) {
  for (int32_t p = 1; p < max_m; p *= 2) {
    if (m <= p) return p;
    const int32_t mid = p + p / 2;
    if (p >= kMatmulMidBucketsFrom && mid < max_m && m <= mid) return mid;
  }
  return std::max(max_m, 1);
}

namespace {

thread_local bool inside_onednn_execute = false;

// Marks the scope of a oneDNN call for InsideOnednnExecute().
class OnednnCallScope {
 public:
  OnednnCallScope() { inside_onednn_execute = true; }
  ~OnednnCallScope() { inside_onednn_execute = false; }
};

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

Dt ToDnnl(MatmulDType t) {
  switch (t) {
    case MatmulDType::kBF16:
      return Dt::bf16;
    case MatmulDType::kS8:
      return Dt::s8;
    case MatmulDType::kF32:
      break;
  }
  return Dt::f32;
}

// What every primitive of one PackedMatmul shares: a user scratchpad and, for
// kS8, the weights' per-channel scales as output scales (the activations'
// per-row scales are applied after the primitive: oneDNN 2.6's matmul takes
// output scales per column only, and a per-row binary post-op falls back to
// its reference kernel).
// No output scales, not even for kS8: its weight scales are applied with the
// row scales in one pass after the primitive (ScaleRows). A primitive then
// does not depend on its weights, and oneDNN's primitive cache hands every
// matmul of one shape the same primitive (OpenELM's layers repeat their
// attention shapes). Scales given at run time instead would make oneDNN 2.6
// leave its brgemm int8 kernels for gemm:jit.
dnnl::primitive_attr MakeAttr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The src of a bucket: kS8 rows are Int8PaddedK(k) bytes apart.
memory::desc SrcDesc(MatmulDType compute, memory::dim m, memory::dim k) {
  if (compute == MatmulDType::kS8)
    return memory::desc({m, k}, Dt::s8, {Int8PaddedK(k), 1});
  return memory::desc({m, k}, ToDnnl(compute), Tag::ab);
}

}  // namespace

bool InsideOnednnExecute() { return inside_onednn_execute; }

struct PackedMatmul::Impl {
  memory packed_weights;
  memory::desc packed_md;
  struct Bucket {
    int32_t m = 0;
    dnnl::matmul prim;
    memory src;
    memory dst;
    memory scratch;
    dnnl_exec_arg_t args[4] = {};
  };
  std::vector<Bucket> buckets;  // ascending m
  // PrepareRowGather(): where element (k, 0) of the packed {k, n} weights
  // lies, for every k; row n adds GatherDimOffset(md, 1, n).
  std::vector<int64_t> gather_k_offsets;
  // kS8 only: the weights' per-channel scales and the row quantizer.
  std::vector<float> weight_scales;
  const CpuKernels* kernels = nullptr;
};

namespace {

// The part of an element's offset in a blocked layout that comes from index
// `idx` of dimension `dim`: each inner block of that dimension contributes
// (index within the block) times the product of the blocks after it, and the
// outer index its stride. Offsets of a blocked layout are sums of such
// per-dimension parts (plus offset0), so a row's offsets are one part per
// column plus one for the row.
int64_t GatherDimOffset(const dnnl_memory_desc_t& md, int dim, int64_t idx) {
  const dnnl_blocking_desc_t& b = md.format_desc.blocking;
  int64_t offset = 0;
  int64_t block_stride = 1;
  for (int i = b.inner_nblks - 1; i >= 0; --i) {
    if (b.inner_idxs[i] == dim) {
      offset += idx % b.inner_blks[i] * block_stride;
      idx /= b.inner_blks[i];
    }
    block_stride *= b.inner_blks[i];
  }
  return offset + idx * b.strides[dim];
}

}  // namespace

PackedMatmul::PackedMatmul(OnednnContext* ctx, const MatmulSpec& spec)
    : ctx_(ctx), spec_(spec) {}
PackedMatmul::~PackedMatmul() = default;

int64_t PackedMatmul::packed_weight_bytes() const {
  return static_cast<int64_t>(impl_->packed_weights.get_desc().get_size()) +
         static_cast<int64_t>(impl_->weight_scales.size()) * 4;
}

absl::StatusOr<std::unique_ptr<PackedMatmul>> PackedMatmul::Create(OnednnContext* ctx,
                                                                   const MatmulSpec& spec,
                                                                   const void* weight,
                                                                   bool weight_is_bf16) {
  if (spec.n <= 0 || spec.k <= 0 || spec.max_m <= 0 || weight == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("bad matmul spec: n=", spec.n,
                                                   " k=", spec.k, " max_m=", spec.max_m));
  }
  std::unique_ptr<PackedMatmul> mm(new PackedMatmul(ctx, spec));
  mm->impl_ = std::make_unique<Impl>();
  Impl& impl = *mm->impl_;
  const dnnl::engine& eng = ctx->handles().engine;
  dnnl::stream& strm = ctx->handles().stream;
  const Dt dt = ToDnnl(spec.compute);
  const memory::dim n = spec.n, k = spec.k;
  // kS8: quantize [n, k] per output channel first; oneDNN packs the int8s.
  std::vector<int8_t> quantized;
  if (spec.compute == MatmulDType::kS8) {
    std::vector<float> widened;
    const float* w = static_cast<const float*>(weight);
    if (weight_is_bf16) {
      widened.resize(n * k);
      ConvertBf16ToF32(static_cast<const uint16_t*>(weight), n * k, widened.data());
      w = widened.data();
    }
    OPENELM_RETURN_IF_ERROR(CheckInt8Quantizable(w, n * k, spec.name));
    impl.kernels = &ActiveKernels();
    impl.weight_scales.resize(n);
    quantized.resize(n * k);
    QuantizeWeightsPerChannelPlain(*impl.kernels, w, n, k, quantized.data(),
                                   impl.weight_scales.data(), ctx->num_threads());
  }
  try {
    const dnnl::primitive_attr attr = MakeAttr();

    // Let the largest bucket choose the packed layout; every bucket is then
    // created against exactly that layout (it does not depend on M).
    const memory::desc any_wei({k, n}, dt, Tag::any);
    const memory::dim layout_m = spec.layout_m > 0 ? spec.layout_m : spec.max_m;
    dnnl::matmul::desc layout_desc(SrcDesc(spec.compute, layout_m, k), any_wei,
                                   memory::desc({layout_m, n}, Dt::f32, Tag::ab));
    const memory::desc packed_md =
        dnnl::matmul::primitive_desc(layout_desc, attr, eng).weights_desc();

    // Pack: [n, k] row-major is the {k, n} matrix with format "ba".
    const Dt user_dt = spec.compute == MatmulDType::kS8 ? Dt::s8
                       : weight_is_bf16                 ? Dt::bf16
                                                        : Dt::f32;
    const void* user_data = spec.compute == MatmulDType::kS8 ? quantized.data() : weight;
    memory user({{k, n}, user_dt, Tag::ba}, eng, const_cast<void*>(user_data));
    impl.packed_weights = memory(packed_md, eng);
    dnnl::reorder(user, impl.packed_weights).execute(strm, user, impl.packed_weights);
    strm.wait();

    impl.packed_md = packed_md;
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("oneDNN matmul packing (n=", n, ", k=", k, ") failed: ", e.what()));
  }
  OPENELM_RETURN_IF_ERROR(mm->SetMaxM(spec.max_m));
  return mm;
}

bool PackedMatmul::PrepareRowGather() {
  const dnnl_memory_desc_t& md = impl_->packed_md.data;
  // kS8 weights carry extra data after the packed values (compensation
  // sums); the values' offsets are those of the blocked layout all the same.
  if (md.format_kind != dnnl_blocked || md.ndims != 2 ||
      (md.extra.flags != 0 && spec_.compute != MatmulDType::kS8)) {
    return false;
  }
  std::vector<int64_t> offsets(spec_.k);
  for (int64_t c = 0; c < spec_.k; ++c) {
    offsets[c] = md.offset0 + GatherDimOffset(md, 0, c);
  }
  impl_->gather_k_offsets = std::move(offsets);
  return true;
}

bool PackedMatmul::GathersRows() const { return !impl_->gather_k_offsets.empty(); }

void PackedMatmul::GatherRow(int64_t row, float* out) const {
  const int64_t base = GatherDimOffset(impl_->packed_md.data, 1, row);
  const int64_t* offsets = impl_->gather_k_offsets.data();
  const void* data = impl_->packed_weights.get_data_handle();
  if (spec_.compute == MatmulDType::kBF16) {
    const auto* w = static_cast<const uint16_t*>(data) + base;
    for (int64_t c = 0; c < spec_.k; ++c) out[c] = Bf16ToF32(w[offsets[c]]);
  } else if (spec_.compute == MatmulDType::kS8) {
    const auto* w = static_cast<const int8_t*>(data) + base;
    const float s = impl_->weight_scales[row];
    for (int64_t c = 0; c < spec_.k; ++c) out[c] = static_cast<float>(w[offsets[c]]) * s;
  } else {
    const auto* w = static_cast<const float*>(data) + base;
    for (int64_t c = 0; c < spec_.k; ++c) out[c] = w[offsets[c]];
  }
}

absl::Status PackedMatmul::SetMaxM(int32_t max_m) {
  OPENELM_RETURN_IF_ERROR(CheckMatmulMaxM(max_m));
  Impl& impl = *impl_;
  const dnnl::engine& eng = ctx_->handles().engine;
  const memory::dim n = spec_.n, k = spec_.k;
  try {
    const dnnl::primitive_attr attr = MakeAttr();
    const std::vector<int32_t> ms = MatmulBuckets(max_m);
    std::vector<Impl::Bucket> buckets;
    for (int32_t m : ms) {
      Impl::Bucket b;
      b.m = m;
      const memory::desc src_md = SrcDesc(spec_.compute, m, k);
      memory::desc dst_md({m, n}, Dt::f32, Tag::ab);
      dnnl::matmul::desc d(src_md, impl.packed_md, dst_md);
      dnnl::matmul::primitive_desc pd(d, attr, eng);
      b.prim = dnnl::matmul(pd);
      ctx_->CountPrimitive();
      b.src = memory(pd.src_desc(), eng, DNNL_MEMORY_NONE);
      b.dst = memory(pd.dst_desc(), eng, DNNL_MEMORY_NONE);
      ctx_->ReserveScratchpad(static_cast<int64_t>(pd.scratchpad_desc().get_size()));
      b.scratch = memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
      buckets.push_back(std::move(b));
    }
    if (spec_.compute == MatmulDType::kBF16) {
      ctx_->ReserveActivationScratch(static_cast<int64_t>(max_m) * k);
    }
    if (spec_.compute == MatmulDType::kS8) {
      ctx_->ReserveInt8Scratch(max_m, Int8PaddedK(k));
    }
    for (Impl::Bucket& b : buckets) {
      b.args[0] = {DNNL_ARG_SRC, b.src.get()};
      b.args[1] = {DNNL_ARG_WEIGHTS, impl.packed_weights.get()};
      b.args[2] = {DNNL_ARG_DST, b.dst.get()};
      b.args[3] = {DNNL_ARG_SCRATCHPAD, b.scratch.get()};
    }
    impl.buckets = std::move(buckets);
    spec_.max_m = max_m;
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("oneDNN matmul setup (n=", n, ", k=", k, ") failed: ", e.what()));
  }
  return absl::OkStatus();
}
absl::Status PackedMatmul::Run(const float* src, int32_t m, float* dst) {
  if (m == 0) return absl::OkStatus();
  OPENELM_RETURN_IF_ERROR(CheckMatmulRows(m, spec_.max_m));
  Impl::Bucket* bucket = nullptr;
  for (Impl::Bucket& b : impl_->buckets) {
    if (b.m >= m) {
      bucket = &b;
      break;
    }
  }
  const void* src_handle = src;
  if (spec_.compute == MatmulDType::kBF16) {
    uint16_t* staged = ctx_->activation_scratch();
    ConvertF32ToBf16(src, static_cast<int64_t>(m) * spec_.k, staged);
    src_handle = staged;
  } else if (spec_.compute == MatmulDType::kS8) {
    impl_->kernels->quantize_rows_s8(src, m, spec_.k, Int8PaddedK(spec_.k),
                                     ctx_->int8_scratch(), ctx_->int8_row_scales());
    src_handle = ctx_->int8_scratch();
  }
  // The C API is used for execution: the C++ wrapper copies the argument map
  // into a fresh std::vector on every call.
  OnednnCallScope scope;
  dnnl_status_t st = dnnl_memory_set_data_handle_v2(
      bucket->src.get(), const_cast<void*>(src_handle), nullptr);
  if (st == dnnl_success)
    st = dnnl_memory_set_data_handle_v2(bucket->dst.get(), dst, nullptr);
  if (st == dnnl_success) {
    st = dnnl_memory_set_data_handle_v2(bucket->scratch.get(), ctx_->scratchpad(),
                                        nullptr);
  }
  if (st == dnnl_success) {
    st = dnnl_primitive_execute(bucket->prim.get(), ctx_->handles().stream.get(), 4,
                                bucket->args);
  }
  if (st == dnnl_success) st = dnnl_stream_wait(ctx_->handles().stream.get());
  if (st != dnnl_success) {
    return absl::InternalError(absl::StrCat("oneDNN matmul (m=", m, ", n=", spec_.n,
                                            ", k=", spec_.k, ") failed with status ",
                                            static_cast<int>(st)));
  }
  if (spec_.compute == MatmulDType::kS8) ScaleRows(m, dst);
  ++num_runs_;
  return absl::OkStatus();
}

void PackedMatmul::ScaleRows(int32_t m, float* dst) const {
  const float* scales = ctx_->int8_row_scales();
  const float* weight_scales = impl_->weight_scales.data();
  const int64_t n = spec_.n;
  // The rows were just written: they are in cache, and the pass is about
  // 1/k of the matmul's work. Split over the threads for prefill-sized m.
#pragma omp parallel for num_threads(ctx_->num_threads()) schedule(static) if (m >= 16)
  for (int32_t r = 0; r < m; ++r) {
    float* row = dst + r * n;
    const float s = scales[r];
    // sum * row scale * weight scale: the own int8 kernels' order, so that
    // equal integer sums give equal floats on either backend.
    for (int64_t c = 0; c < n; ++c) row[c] = row[c] * s * weight_scales[c];
  }
}

}  // namespace openelm
