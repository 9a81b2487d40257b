#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs every test: the unit,
# model, integration and e2e suites (ctest), the thread-safety analysis, the
# deployment manifest checks, a real Prometheus scrape, and the sanitizer
# stage (ASan+UBSan tests, short fuzz runs, TSan engine/server tests; skip it
# with OPENELM_SKIP_SANITIZERS=1 for a quick local run). This is README's test
# command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
bash scripts/build.sh build
echo "== ctest"
ctest --test-dir build --output-on-failure -j 2 --timeout 600
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
