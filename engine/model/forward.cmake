# openelm_model: the oneDNN forward pass (OpenElmModel) over a paged KV cache.
add_library(openelm_model execution_plan.cc openelm_model.cc)
openelm_target_options(openelm_model)
target_link_libraries(openelm_model PUBLIC openelm_model_io openelm_kernels openelm_base
                      absl::status absl::statusor absl::strings absl::span)
