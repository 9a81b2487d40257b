#ifndef OPENELM_ENGINE_MODEL_SAFETENSORS_FILE_H_
#define OPENELM_ENGINE_MODEL_SAFETENSORS_FILE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/tensor.h"

namespace openelm {

struct FileMapping;

// One .safetensors file, mapped read-only and validated: the header (size,
// JSON, every entry's dtype, shape and data_offsets), byte sizes against
// shapes, overlaps, and offsets against the data area. Its tensors are
// zero-copy views into the mapping, valid while the object lives. Errors are
// kInvalidArgument naming the file and tensor (kNotFound for a missing
// file).
//
// Thread-compatible; immutable after Open().
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const;
  // In header order.
  const std::vector<TensorView>& tensors() const { return tensors_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<FileMapping> mapping_;
  std::vector<TensorView> tensors_;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_SAFETENSORS_FILE_H_
