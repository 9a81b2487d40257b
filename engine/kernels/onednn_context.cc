#include "engine/kernels/onednn_context.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/check.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/onednn_handles.h"

namespace openelm {
namespace {

void* AlignedZeroedAlloc(int64_t bytes) {
  const int64_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, static_cast<size_t>(rounded));
  if (p != nullptr) std::memset(p, 0, static_cast<size_t>(rounded));
  return p;
}

}  // namespace

void OnednnContext::FreeDeleter::operator()(void* p) const { std::free(p); }

OnednnContext::~OnednnContext() = default;

absl::StatusOr<std::unique_ptr<OnednnContext>> OnednnContext::Create(
    int32_t num_threads) {
  // Fix the ISA level (and oneDNN's cap, if any) before oneDNN runs at all:
  // the cap is only honoured before oneDNN's first use.
  EffectiveCpuIsa();
  std::unique_ptr<OnednnContext> ctx(new OnednnContext());
  ctx->num_threads_ = num_threads > 0 ? num_threads : omp_get_num_procs();
  // oneDNN's OpenMP runtime takes its team size from the calling thread's
  // OpenMP setting.
  omp_set_num_threads(ctx->num_threads_);
  try {
    auto handles = std::make_unique<Handles>();
    handles->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    handles->stream = dnnl::stream(handles->engine);
    ctx->handles_ = std::move(handles);
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN engine creation failed: ", e.what()));
  }
  return ctx;
}

void OnednnContext::ReserveScratchpad(int64_t bytes) {
  if (bytes <= scratchpad_bytes_) return;
  scratchpad_.reset(static_cast<uint8_t*>(AlignedZeroedAlloc(bytes)));
  OPENELM_CHECK(scratchpad_ != nullptr);
  scratchpad_bytes_ = bytes;
}

void OnednnContext::ReserveActivationScratch(int64_t bf16_elements) {
  if (bf16_elements <= activation_scratch_elements_) return;
  activation_scratch_.reset(
      static_cast<uint16_t*>(AlignedZeroedAlloc(bf16_elements * 2)));
  OPENELM_CHECK(activation_scratch_ != nullptr);
  activation_scratch_elements_ = bf16_elements;
}

void OnednnContext::ReserveInt8Scratch(int32_t rows, int64_t bytes_per_row) {
  const int64_t bytes = int64_t{rows} * bytes_per_row;
  if (bytes > int8_scratch_bytes_) {
    int8_scratch_.reset(static_cast<int8_t*>(AlignedZeroedAlloc(bytes)));
    OPENELM_CHECK(int8_scratch_ != nullptr);
    int8_scratch_bytes_ = bytes;
  }
  if (rows > int8_rows_) {
    int8_row_scales_.reset(static_cast<float*>(AlignedZeroedAlloc(int64_t{rows} * 4)));
    OPENELM_CHECK(int8_row_scales_ != nullptr);
    int8_rows_ = rows;
  }
}

}  // namespace openelm
