#ifndef OPENELM_ENGINE_MODEL_TENSOR_H_
#define OPENELM_ENGINE_MODEL_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace openelm {

// Element types. Checkpoint tensors are F32, F16 or BF16; kI8 exists only as
// the in-memory weight type of the int8 plan (quantized at load, never read
// from a file: an integer tensor in a checkpoint is refused, naming it).
enum class DType { kF32, kF16, kBF16, kI8 };
int32_t DTypeBytes(DType dtype);
absl::string_view DTypeName(DType dtype);  // "F32", "F16", "BF16", "I8"

// One tensor of a checkpoint, viewed in place in a memory-mapped file.
struct TensorView {
  std::string name;
  std::string file;  // path of the .safetensors file holding it
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data =
      nullptr;  // points into the mapping; valid while the Checkpoint lives
  int64_t num_bytes = 0;
  int64_t num_elements() const;
};

// "[2, 3]".
std::string ShapeString(const std::vector<int64_t>& shape);

// Converts a tensor to f32 / bf16 (raw uint16 bits) into `out` (resized to
// num_elements). Handles F32, F16 and BF16 sources.
void TensorToF32(const TensorView& t, std::vector<float>* out);
void TensorToBF16(const TensorView& t, std::vector<uint16_t>* out);

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_TENSOR_H_
