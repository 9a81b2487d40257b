#!/usr/bin/env bash
# Configures and builds openelm-serve the way CI and the Dockerfile do.
#
#   scripts/build.sh [build-dir] [extra cmake args...]
#
# build-dir defaults to ./build. Extra arguments go to the configure step, so a
# later argument overrides an earlier default, e.g.
#   scripts/build.sh build-asan -DOPENELM_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug
#   scripts/build.sh build -DOPENELM_BUILD_TESTS=OFF        # what the image builds
# Parallelism: CMAKE_BUILD_PARALLEL_LEVEL if set, else the number of CPUs
# (ninja's default). Set it to 2 on shared machines.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-build}"
if [ $# -gt 0 ]; then shift; fi

cmake -S "${repo_root}" -B "${build_dir}" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
if [ -n "${CMAKE_BUILD_PARALLEL_LEVEL:-}" ]; then
  cmake --build "${build_dir}" -j "${CMAKE_BUILD_PARALLEL_LEVEL}"
else
  cmake --build "${build_dir}"
fi
