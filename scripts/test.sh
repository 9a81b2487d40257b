#!/usr/bin/env bash
# Installs the dependencies, checks the source format, builds everything and
# runs every test: the unit,
# model, integration and e2e suites (ctest), the thread-safety analysis, the
# deployment manifest checks, a real Prometheus scrape, and the sanitizer
# stage (ASan+UBSan tests, short fuzz runs, TSan engine/server tests; skip it
# with OPENELM_SKIP_SANITIZERS=1 for a quick local run). This is README's test
# command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
echo "== source format (.clang-format)"
bash scripts/check-format.sh
bash scripts/build.sh build
detected_isa="$(build/bin/openelm_cpu_info --field=detected)"
echo "== ctest (native plan: $(build/bin/openelm_cpu_info --field=plan))"
ctest --test-dir build --output-on-failure -j 2 --timeout 600
# Lower plans on this host, with the kernels and oneDNN capped
# (OPENELM_MAX_CPU_ISA): AVX2 wherever the CPU has more, so an AVX-512 host
# proves the AVX2 plan; the portable plan (model and engine tests) everywhere.
plans_run="${detected_isa}"
case "${detected_isa}" in
  avx512|avx512_bf16|amx)
    echo "== ctest capped at avx2: model, engine and server tests ($(OPENELM_MAX_CPU_ISA=avx2 build/bin/openelm_cpu_info --field=plan))"
    OPENELM_MAX_CPU_ISA=avx2 ctest --test-dir build --output-on-failure -j 2 --timeout 600 \
      -L 'model|integration|e2e' -E soak
    plans_run="${plans_run} avx2"
    ;;
esac
if [ "${detected_isa}" != portable ]; then
  echo "== ctest capped at portable: model and engine tests ($(OPENELM_MAX_CPU_ISA=portable build/bin/openelm_cpu_info --field=plan))"
  OPENELM_MAX_CPU_ISA=portable ctest --test-dir build --output-on-failure -j 2 --timeout 600 -L model
  plans_run="${plans_run} portable"
fi
echo "== ISA plans tested: ${plans_run} (kernel unit tests ran every kernel build this CPU can run, and the avx2_vnni, avx512 and avx512_vnni builds emulated on SIMDe: emulated.* tests)"
echo "== clang -Wthread-safety"
bash scripts/check-thread-safety.sh build
echo "== deployment manifests and image runtime dependencies"
bash scripts/validate-deploy.sh --check-runtime-deps build
echo "== real Prometheus scraping the real server"
bash scripts/test-prometheus.sh --build-dir build
if [ "${OPENELM_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== sanitizers: ASan+UBSan, fuzzing, TSan"
  bash scripts/test-sanitizers.sh ci
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
