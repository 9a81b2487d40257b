# openelm_gen_checkpoint: random-weight checkpoints in the HF layout.
add_executable(openelm_gen_checkpoint openelm_gen_checkpoint.cc)
openelm_target_options(openelm_gen_checkpoint)
target_link_libraries(openelm_gen_checkpoint PRIVATE openelm_model_io absl::flags absl::flags_parse
                      absl::flags_usage)
