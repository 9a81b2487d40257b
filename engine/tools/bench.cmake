# openelm_bench_engine
