# openelm_bench_engine: decode/prefill throughput of OpenElmModel against the
# machine's measured memory bandwidth and oneDNN GEMM peak.
add_executable(openelm_bench_engine openelm_bench_engine.cc)
openelm_target_options(openelm_bench_engine)
target_link_libraries(openelm_bench_engine PRIVATE openelm_model openelm_kernels absl::flags
                      absl::flags_parse absl::strings absl::str_format absl::time)
