// Writes a reference golden file (format in golden_file.h):
//   openelm_reference_golden_gen OUT.golden [seed] [stride]
// The shape is MakeOpenElmConfig("tiny") at generation time (then frozen in
// the file); defaults: seed 42, stride 64, a fixed 12-token prompt. Run it
// only when the reference is meant to change, and review the diff.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "engine/model/openelm_config.h"
#include "tests/engine/numerics/reference/golden_file.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.golden [seed] [stride]\n", argv[0]);
    return 2;
  }
  openelm::testing::GoldenLogits spec;
  spec.seed = 42;
  spec.stride = 64;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &spec.seed)) return 2;
  if (argc > 3 && !absl::SimpleAtoi(argv[3], &spec.stride)) return 2;
  auto config = openelm::MakeOpenElmConfig("tiny");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  spec.model_dim = config->model_dim;
  spec.head_dim = config->head_dim;
  spec.vocab_size = config->vocab_size;
  spec.layers = config->layers;
  // "Once upon a time there was" followed by a few arbitrary ids, including
  // the last one of the vocabulary.
  spec.tokens = {1, 9038, 2501, 263, 931, 727, 471, 263, 31999, 2, 15043, 3186};
  auto golden = openelm::testing::ComputeGolden(spec);
  if (!golden.ok()) {
    std::fprintf(stderr, "%s\n", golden.status().ToString().c_str());
    return 1;
  }
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out << openelm::testing::SerializeGolden(*golden);
  out.close();
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
