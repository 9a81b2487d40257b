# openelm_bench_batching: LlmEngine output tokens/s at several concurrency
# levels (continuous batching) beside an unbatched max_num_seqs=1 engine.
add_executable(openelm_bench_batching openelm_bench_batching.cc)
openelm_target_options(openelm_bench_batching)
target_link_libraries(openelm_bench_batching PRIVATE openelm_engine openelm_model absl::flags
                      absl::flags_parse absl::strings absl::str_format absl::synchronization
                      absl::time absl::status absl::statusor)
