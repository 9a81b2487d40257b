#ifndef OPENELM_TESTS_FUZZ_CHECKPOINT_CHECKS_H_
#define OPENELM_TESTS_FUZZ_CHECKPOINT_CHECKS_H_

// Properties of Checkpoint::Open shared by the safetensors fuzz targets.

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "tests/fuzz/fuzz_util.h"

namespace openelm::testing {

// Opens `dir` and checks: errors are kInvalidArgument or kNotFound; an
// accepted checkpoint holds exactly the expected tensors with the expected
// shapes, each view's byte size matches its shape and dtype, every file lies
// inside `dir`, and every byte of every tensor can be read and converted
// (ASan / SIGSEGV catch views that point outside their mapping).
inline void OpenAndCheckCheckpoint(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) {
    const absl::StatusCode code = ckpt.status().code();
    OPENELM_FUZZ_CHECK(
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound,
        "unexpected error code: %s", ckpt.status().ToString().c_str());
    return;
  }
  const Checkpoint& c = **ckpt;
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& [name, shape] : ExpectedTensors(c.config())) expected[name] = shape;
  OPENELM_FUZZ_CHECK(c.tensors().size() == expected.size(), "%zu tensors, expected %zu",
                     c.tensors().size(), expected.size());
  std::vector<float> values;
  for (const TensorView& t : c.tensors()) {
    auto it = expected.find(t.name);
    OPENELM_FUZZ_CHECK(it != expected.end(), "unexpected tensor '%s'", t.name.c_str());
    OPENELM_FUZZ_CHECK(it->second == t.shape, "tensor '%s' has the wrong shape",
                       t.name.c_str());
    OPENELM_FUZZ_CHECK(t.num_bytes == t.num_elements() * DTypeBytes(t.dtype),
                       "tensor '%s': %lld bytes for %lld elements", t.name.c_str(),
                       static_cast<long long>(t.num_bytes),
                       static_cast<long long>(t.num_elements()));
    OPENELM_FUZZ_CHECK(absl::StartsWith(t.file, dir + "/") &&
                           !absl::StrContains(t.file.substr(dir.size()), "/.."),
                       "tensor '%s' is read from '%s', outside '%s'", t.name.c_str(),
                       t.file.c_str(), dir.c_str());
    TensorToF32(t, &values);
    OPENELM_FUZZ_CHECK(static_cast<int64_t>(values.size()) == t.num_elements(),
                       "ToF32 gave %zu values for '%s'", values.size(), t.name.c_str());
    double sum = 0;  // reads every converted value
    for (float v : values) sum += std::isfinite(v) ? v : 0.0;
    OPENELM_FUZZ_CHECK(!std::isnan(sum), "sum is NaN");
  }
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_FUZZ_CHECKPOINT_CHECKS_H_
