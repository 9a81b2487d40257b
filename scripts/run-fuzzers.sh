#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time and keeps crash inputs.
#
#   scripts/run-fuzzers.sh [BUILD_DIR [SECONDS [TARGET...]]]
#     BUILD_DIR  clang fuzz build (default build-fuzz); configured here with
#                clang, ASan+UBSan and -DOPENELM_BUILD_FUZZERS=ON if it has no
#                CMakeCache.txt yet
#     SECONDS    time per target (default 30)
#     TARGET     fuzz target names (default: all, e.g. fuzz_json fuzz_config)
#
# Each target starts from a copy of tests/fuzz/corpus/<name>/ plus the saved
# crash inputs in tests/fuzz/regressions/<name>/ (the repository corpus is not
# modified). A crash, leak, sanitizer report or property violation fails the
# run, and the input is copied to tests/fuzz/regressions/<name>/ so that
# the fuzz_<name>_replay ctest replays it in every ordinary build.
# Env: JOBS (build parallelism, default 2), FUZZ_JOBS (targets fuzzed at the
# same time, default 1), FUZZ_RSS_LIMIT_MB (default 2048).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-fuzz}
seconds=${2:-30}
shift $(( $# > 2 ? 2 : $# ))
case $build in /*) ;; *) build="$root/$build" ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPENELM_BUILD_TESTS=ON \
    -DOPENELM_BUILD_FUZZERS=ON -DOPENELM_SANITIZE=address \
    -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link \
    -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  # Every libFuzzer target the build defines (request_validation and
  # tenants_config only exist when their libraries do).
  mapfile -t targets < <(cmake --build "$build" --target help |
                          sed -n 's/^\(fuzz_[a-z_]*\): .*/\1/p' | grep -v '_replay$' | sort -u)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "run-fuzzers: no fuzz targets in $build (configure with OPENELM_BUILD_FUZZERS=ON)" >&2
  exit 2
fi
cmake --build "$build" --target "${targets[@]}" -j"${JOBS:-2}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# One target: fuzz, then report; a finding is saved as a regression input
# and marked by a .failed file. Output is printed in one piece at the end.
run_one() {
  local target=$1 name=${1#fuzz_}
  local work="$build/fuzz-work/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  for dir in "$root/tests/fuzz/corpus/$name" "$root/tests/fuzz/regressions/$name"; do
    if [ -d "$dir" ]; then cp -f "$dir"/* "$work/corpus/" 2>/dev/null || true; fi
  done
  local rc=0
  "$build/fuzz/$target" "$work/corpus" -max_total_time="$seconds" \
    -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" > "$work/log.txt" 2>&1 || rc=$?
  {
    echo "=== $target: ${seconds}s"
    grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)|cov: " \
      "$work/log.txt" | tail -n 4 || true
    shopt -s nullglob
    local crashes=("$work"/artifacts/*)
    shopt -u nullglob
    if [ "$rc" -ne 0 ] || [ ${#crashes[@]} -gt 0 ]; then
      echo "!!! $target failed (exit $rc); last lines of $work/log.txt:"
      tail -n 40 "$work/log.txt"
      mkdir -p "$root/tests/fuzz/regressions/$name"
      for c in "${crashes[@]}"; do
        cp "$c" "$root/tests/fuzz/regressions/$name/"
        echo "    saved $(basename "$c") to tests/fuzz/regressions/$name/"
      done
      touch "$work.failed"
    fi
  } > "$work.report" 2>&1
}

# FUZZ_JOBS targets at a time (each libFuzzer process is single-threaded).
parallel=${FUZZ_JOBS:-1}
mkdir -p "$build/fuzz-work"
rm -f "$build"/fuzz-work/*.failed "$build"/fuzz-work/*.report
running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
failed=()
for target in "${targets[@]}"; do
  name=${target#fuzz_}
  cat "$build/fuzz-work/$name.report"
  if [ -e "$build/fuzz-work/$name.failed" ]; then failed+=("$target"); fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzzers: FAILED: ${failed[*]}"
  exit 1
fi
echo "run-fuzzers: all ${#targets[@]} targets ran ${seconds}s without a finding"
