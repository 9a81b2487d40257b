#!/usr/bin/env bash
# Installs every Debian 12 package that openelm-serve's build, tests and tools
# need. Idempotent: packages already present are skipped by apt.
# Used by README's commands, .ci/run and the Dockerfile's build stage.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang libclang-rt-14-dev clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev openssl  # SHA-256 of API keys, TLS key checks; scripts/gen-test-certs.sh
  libabsl-dev
  nlohmann-json3-dev  # JSON: config.json, safetensors headers, tenants file, HTTP API
  libboost-dev  # Boost.Beast/Asio (header-only): the OpenAI-compatible HTTP front
  nodejs  # the official `openai` SDK as a real client in the HTTP tests (npm below)
  libdnnl-dev ocl-icd-opencl-dev
  libsentencepiece-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev googletest
  libsimde-dev  # tests only: runs the AVX-512 kernel tables on any host (tests/emulated_isa)
  # Python client package (client/python; scripts/test-python-client.sh): its
  # stubs come from protobuf-compiler + protobuf-compiler-grpc above, not
  # python3-grpc-tools (whose protoc 3.5 rejects proto3 `optional`).
  python3 python3-grpcio python3-protobuf python3-venv python3-pip
  python3-setuptools python3-wheel
  python3-h2  # raw HTTP/2 client of tests/e2e/stuck_reader_h2.py
  curl
  prometheus  # promtool + prometheus: scripts/validate-deploy.sh, scripts/test-prometheus.sh
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm: Debian's own `npm` package goes with Debian's nodejs; a NodeSource
# nodejs (as on some hosts) brings npm itself and conflicts with it. So it
# is installed only when no npm command exists yet.
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing npm"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends npm
fi
