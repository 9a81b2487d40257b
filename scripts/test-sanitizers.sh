#!/usr/bin/env bash
# Sanitizer builds, each in its own build directory, and the short fuzz runs.
#
#   scripts/test-sanitizers.sh [asan|fuzz|tsan|ci]      (default: ci)
#
#   asan  build-asan: clang, -DOPENELM_SANITIZE=address (ASan + UBSan, UBSan
#         non-recoverable), -O1; the product libraries are instrumented, the
#         test sources built plainly (tests/CMakeLists.txt). Runs every unit,
#         model and integration test, which includes the fuzz corpus
#         replayers. The libraries also carry libFuzzer coverage
#         (-fsanitize=fuzzer-no-link), so the same tree builds the fuzzers.
#   fuzz  every libFuzzer target in build-asan for FUZZ_SECONDS (default 20)
#         each, FUZZ_JOBS (default JOBS) at a time (scripts/run-fuzzers.sh: a
#         finding fails and is saved under tests/fuzz/regressions/ for the
#         replay tests).
#   tsan  build-tsan: clang, -DOPENELM_SANITIZE=thread, -O1; builds and runs
#         the engine, scheduler, KV-cache, tenancy and server tests
#         (TSAN_TESTS) with tests/tsan.supp and, in LD_PRELOAD, the shim that
#         makes Debian's uninstrumented absl::Mutex visible to TSan
#         (tests/testing/tsan_absl_shim.cc). Any report fails the run.
#   ci    asan, fuzz and tsan in turn (what scripts/test.sh runs).
#
# Env: JOBS (build and ctest parallelism, default 2), BUILD_ROOT (default the
# repository root), CTEST_TIMEOUT (per test, default 600), FUZZ_SECONDS.
# The sentencepiece bridge module is built without sanitizers on purpose (it
# is dlmopen()ed into its own namespace; engine/tokenizer/CMakeLists.txt).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-ci}
jobs=${JOBS:-2}
build_root=${BUILD_ROOT:-$root}
asan_dir=$build_root/build-asan
tsan_dir=$build_root/build-tsan

# Clang 14's sanitizer runtimes expect at most 28 bits of mmap randomisation;
# on a kernel set to more (vm.mmap_rnd_bits=32) TSan aborts with "unexpected
# memory mapping". The sanitized processes therefore run with ASLR off where
# the personality call is allowed (setarch -R), and as they are elsewhere.
no_aslr() {
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    setarch "$(uname -m)" -R "$@"
  else
    "$@"
  fi
}

configure() {  # dir sanitizer [extra cmake args...]
  local dir=$1 sanitizer=$2
  shift 2
  CC=clang CXX=clang++ cmake -S "$root" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DOPENELM_BUILD_TESTS=ON -DOPENELM_SANITIZE="$sanitizer" "$@" > /dev/null
}

run_asan() {
  local start=$SECONDS
  configure "$asan_dir" address -DOPENELM_BUILD_FUZZERS=ON \
    -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link
  cmake --build "$asan_dir" -j"$jobs"
  local built=$SECONDS
  # LeakSanitizer is on by default with ASan on x86_64 Linux.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    no_aslr ctest --test-dir "$asan_dir" -L 'unit|model|integration' -j"$jobs" \
      --output-on-failure --timeout "${CTEST_TIMEOUT:-600}"
  echo "asan: build $((built - start)) s, tests $((SECONDS - built)) s"
}

run_fuzz() {
  local start=$SECONDS
  [ -f "$asan_dir/CMakeCache.txt" ] || run_asan
  FUZZ_JOBS=${FUZZ_JOBS:-$jobs} no_aslr bash "$root/scripts/run-fuzzers.sh" "$asan_dir" \
    "${FUZZ_SECONDS:-20}"
  echo "fuzz: $((SECONDS - start)) s"
}

# Engine, scheduler, KV cache, tenancy, server and HTTP front tests: the
# multi-threaded parts (engine thread, gRPC threads, Asio I/O threads, config
# watcher); and the probe that
# shows the stage reports a real race (tests/testing/tsan_shim_probe.cc).
TSAN_TESTS=${TSAN_TESTS:-'(TsanShim|Engine|Scheduler|KvCache|BlockPool|Server|TenantRegistry|Quota|AccessLog|HttpApi)[A-Za-z]*Test\.'}
TSAN_TARGETS=(llm_engine_test block_pool_test kv_cache_manager_test
              openelm_engine_model_test server_unit_test
              server_integration_test tenancy_integration_test tenants_test
              http_api_test
              openelm_server openelm_tsan_absl_shim tsan_shim_probe)

run_tsan() {
  local start=$SECONDS
  configure "$tsan_dir" thread
  cmake --build "$tsan_dir" -j"$jobs" --target "${TSAN_TARGETS[@]}"
  local built=$SECONDS
  # exitcode: a process with a report exits 66 even when its tests passed.
  LD_PRELOAD="$tsan_dir/lib/libopenelm_tsan_absl_shim.so" \
  TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$root/tests/tsan.supp:ignore_noninstrumented_modules=1:halt_on_error=0:exitcode=66:second_deadlock_stack=1:report_signal_unsafe=0} \
    no_aslr ctest --test-dir "$tsan_dir" -R "$TSAN_TESTS" -j"$jobs" \
      --output-on-failure --timeout "${CTEST_TIMEOUT:-600}"
  echo "tsan: build $((built - start)) s, tests $((SECONDS - built)) s"
}

case $mode in
  asan) run_asan ;;
  fuzz) run_fuzz ;;
  tsan) run_tsan ;;
  ci | all) run_asan; run_fuzz; run_tsan ;;
  *) echo "usage: $0 [asan|fuzz|tsan|ci]" >&2; exit 2 ;;
esac
