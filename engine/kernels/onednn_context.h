#ifndef OPENELM_ENGINE_KERNELS_ONEDNN_CONTEXT_H_
#define OPENELM_ENGINE_KERNELS_ONEDNN_CONTEXT_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace openelm {

// The oneDNN CPU engine and stream shared by every primitive of one model,
// plus the buffers all matmuls share: the oneDNN scratchpad (user-managed, so
// execution never allocates one) and staging buffers for activations (bf16,
// or int8 with row scales).
// Created once; primitives keep a pointer to it, so it must outlive them.
//
// Thread-compatible: oneDNN is entered only from the thread that owns the
// model (each calling thread would get its own OpenMP team).
class OnednnContext {
 public:
  // `num_threads` <= 0 means every core. Sets the OpenMP thread count that
  // oneDNN and our kernels use.
  static absl::StatusOr<std::unique_ptr<OnednnContext>> Create(int32_t num_threads);
  ~OnednnContext();
  OnednnContext(const OnednnContext&) = delete;
  OnednnContext& operator=(const OnednnContext&) = delete;

  int32_t num_threads() const { return num_threads_; }

  // Grows the shared scratch buffers to at least these sizes (setup time
  // only; invalidates earlier pointers, so call before the first Run()).
  void ReserveScratchpad(int64_t bytes);
  void ReserveActivationScratch(int64_t bf16_elements);
  // int8 matmuls: `rows` quantized activation rows of `bytes_per_row` and
  // their scales.
  void ReserveInt8Scratch(int32_t rows, int64_t bytes_per_row);
  void* scratchpad() { return scratchpad_.get(); }
  uint16_t* activation_scratch() { return activation_scratch_.get(); }
  int8_t* int8_scratch() { return int8_scratch_.get(); }
  float* int8_row_scales() { return int8_row_scales_.get(); }

  // Number of oneDNN primitives created through this context (tests check
  // that Forward() creates none).
  int64_t num_primitives_created() const { return num_primitives_created_; }
  void CountPrimitive() { ++num_primitives_created_; }

  // Opaque oneDNN handles (dnnl::engine / dnnl::stream), defined in the .cc
  // files that include dnnl.hpp.
  struct Handles;
  Handles& handles() { return *handles_; }

 private:
  OnednnContext() = default;
  int32_t num_threads_ = 1;
  std::unique_ptr<Handles> handles_;
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<uint8_t[], FreeDeleter> scratchpad_;
  int64_t scratchpad_bytes_ = 0;
  std::unique_ptr<uint16_t[], FreeDeleter> activation_scratch_;
  int64_t activation_scratch_elements_ = 0;
  std::unique_ptr<int8_t[], FreeDeleter> int8_scratch_;
  int64_t int8_scratch_bytes_ = 0;
  std::unique_ptr<float[], FreeDeleter> int8_row_scales_;
  int32_t int8_rows_ = 0;
  int64_t num_primitives_created_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_ONEDNN_CONTEXT_H_
