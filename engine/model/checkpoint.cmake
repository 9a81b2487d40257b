# openelm_model_io: config.json parsing, the safetensors reader and the
# random-checkpoint generator (no oneDNN; every model consumer links it).
add_library(openelm_model_io openelm_config.cc openelm_shapes.cc openelm_sizes.cc
  openelm_config_json.cc tensor.cc safetensors_file.cc shard_index.cc
  checkpoint.cc random_checkpoint.cc)
openelm_target_options(openelm_model_io)
target_link_libraries(openelm_model_io PUBLIC openelm_base absl::status absl::statusor
                      absl::strings absl::str_format absl::span Threads::Threads)
