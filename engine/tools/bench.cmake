# openelm_bench_engine: decode/prefill throughput of OpenElmModel against the
# machine's measured memory bandwidth and oneDNN GEMM peak.
add_executable(openelm_bench_engine openelm_bench_engine.cc)
openelm_target_options(openelm_bench_engine)
target_link_libraries(openelm_bench_engine PRIVATE openelm_model openelm_kernels absl::flags
                      absl::flags_parse absl::strings absl::str_format absl::time)

# openelm_bench_int8: the int8 matmul against its in-register ceiling and
# oneDNN's u8s8 matmul, and whether oneDNN's is exact (BENCHMARKS.md 0b).
add_executable(openelm_bench_int8 openelm_bench_int8.cc)
openelm_target_options(openelm_bench_int8)
target_link_libraries(openelm_bench_int8 PRIVATE openelm_kernels DNNL::dnnl absl::flags
                      absl::flags_parse)
