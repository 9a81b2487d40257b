#ifndef OPENELM_ENGINE_KERNELS_ONEDNN_HANDLES_H_
#define OPENELM_ENGINE_KERNELS_ONEDNN_HANDLES_H_

// Private to engine/kernels: the only header that includes oneDNN.
#include "dnnl.hpp"
#include "engine/kernels/onednn_context.h"

namespace openelm {

struct OnednnContext::Handles {
  dnnl::engine engine;
  dnnl::stream stream;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_ONEDNN_HANDLES_H_
