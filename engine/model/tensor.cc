#include "engine/model/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/half_float.h"

namespace openelm {

int32_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI8:
      return 1;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI8:
      return "I8";
  }
  return "?";
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Elements are read with memcpy: a tensor's offset in the file need not be
// aligned to its element size.
void TensorToF32(const TensorView& t, std::vector<float>* out) {
  const int64_t n = t.num_elements();
  out->resize(n);
  if (n == 0) return;
  const char* src = static_cast<const char*>(t.data);
  float* dst = out->data();
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = BF16ToF32(h);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = F16ToF32(h);
      }
      return;
    case DType::kI8:  // never parsed from a file (see DType)
      break;
  }
}

void TensorToBF16(const TensorView& t, std::vector<uint16_t>* out) {
  const int64_t n = t.num_elements();
  out->resize(n);
  if (n == 0) return;
  const char* src = static_cast<const char*>(t.data);
  uint16_t* dst = out->data();
  switch (t.dtype) {
    case DType::kBF16:
      std::memcpy(dst, src, n * sizeof(uint16_t));
      return;
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, src + 4 * i, 4);
        dst[i] = F32ToBF16(f);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = F32ToBF16(F16ToF32(h));  // exact in f32, then one rounding
      }
      return;
    case DType::kI8:  // never parsed from a file (see DType)
      break;
  }
}

}  // namespace openelm
