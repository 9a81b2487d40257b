#!/usr/bin/env bash
# Sanitizer builds of the whole tree, each in its own build directory.
#
#   scripts/test-sanitizers.sh [asan|tsan|all]      (default: asan)
#
#   asan  build-asan: -DOPENELM_SANITIZE=address (ASan + UBSan, UBSan
#         non-recoverable), RelWithDebInfo; runs every unit, model and
#         integration test (ctest -L 'unit|model|integration'), which includes
#         the fuzz corpus replayers (tests/fuzz).
#   tsan  build-tsan: -DOPENELM_SANITIZE=thread, RelWithDebInfo; runs the
#         engine and server tests (ctest -R, see TSAN_TESTS below) with
#         tests/tsan.supp. See docs/reliability.md: Debian's Abseil is not
#         built with TSan, so absl::Mutex hand-offs are invisible to it and a
#         TSan report in our code must be read with that in mind; the stage is
#         therefore report-only unless TSAN_STRICT=1.
#
# Env: JOBS (build and ctest parallelism, default 2), BUILD_ROOT (default the
# repository root), CTEST_TIMEOUT (per test, default 600).
# The sentencepiece bridge module is built without sanitizers on purpose (it
# is dlmopen()ed into its own namespace; engine/tokenizer/CMakeLists.txt).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-asan}
jobs=${JOBS:-2}
build_root=${BUILD_ROOT:-$root}

configure_and_build() {  # dir sanitizer
  local dir=$1 sanitizer=$2
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DOPENELM_BUILD_TESTS=ON -DOPENELM_SANITIZE="$sanitizer"
  cmake --build "$dir" -j"$jobs"
}

run_asan() {
  local dir=$build_root/build-asan start=$SECONDS
  configure_and_build "$dir" address
  local built=$SECONDS
  # detect_leaks: LeakSanitizer is on by default with ASan on x86_64 Linux.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest --test-dir "$dir" -L 'unit|model|integration' -j"$jobs" \
      --output-on-failure --timeout "${CTEST_TIMEOUT:-600}"
  echo "asan: build $((built - start)) s, tests $((SECONDS - built)) s"
}

# Engine and server tests: the multi-threaded parts (engine thread + gRPC).
TSAN_TESTS=${TSAN_TESTS:-'(Engine|Scheduler|KvCache|BlockPool|Server)[A-Za-z]*Test\.'}

run_tsan() {
  local dir=$build_root/build-tsan start=$SECONDS rc=0
  configure_and_build "$dir" thread
  local built=$SECONDS
  TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$root/tests/tsan.supp:halt_on_error=0:second_deadlock_stack=1:report_signal_unsafe=0} \
    ctest --test-dir "$dir" -R "$TSAN_TESTS" -LE e2e -j"$jobs" \
      --output-on-failure --timeout "${CTEST_TIMEOUT:-600}" || rc=$?
  echo "tsan: build $((built - start)) s, tests $((SECONDS - built)) s (exit $rc)"
  if [ "$rc" -ne 0 ] && [ "${TSAN_STRICT:-0}" = 1 ]; then return "$rc"; fi
  return 0
}

case $mode in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
