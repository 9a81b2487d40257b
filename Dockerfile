# syntax=docker/dockerfile:1
#
# openelm-serve container image.
#
#   docker build -t openelm-serve:dev .
#   docker run --rm -p 50051:50051 -p 9464:9464 --cpus=4 \
#     -v /path/to/OpenELM-270M-Instruct:/models:ro openelm-serve:dev
#
# /models must hold config.json, the safetensors file(s) and tokenizer.model
# (Llama-2's). See docs/deployment.md for the environment variables
# (OMP_NUM_THREADS, HF_REPO_ID/HF_TOKEN, OPENELM_ALLOW_RANDOM_MODEL, ...).
#
# The build stage runs the same two scripts as CI: scripts/install-deps.sh and
# scripts/build.sh. The runtime stage carries only the shared libraries the
# binaries load, checked with scripts/validate-deploy.sh --check-runtime-deps.

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

############################ build stage ############################
FROM ${DEBIAN_IMAGE} AS build
ARG BUILD_JOBS=
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src

# Dependencies first, so this layer is cached across source edits.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN apt-get update -qq \
 && bash scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*

COPY . .
# The exact CI configure/build commands (scripts/build.sh), without tests.
# .git is not in the build context, so `--version` names no commit unless one
# is passed: --build-arg OPENELM_GIT_COMMIT="$(git rev-parse --short=12 HEAD)".
ARG OPENELM_GIT_COMMIT=
RUN CMAKE_BUILD_PARALLEL_LEVEL="${BUILD_JOBS}" \
    bash scripts/build.sh build -DOPENELM_BUILD_TESTS=OFF \
      -DOPENELM_GIT_COMMIT="${OPENELM_GIT_COMMIT}"

# Stage the install tree with the project's install rules (stripped): the
# binaries and the container scripts (openelm-entrypoint, openelm-fetch-model)
# in bin/, the sentencepiece bridge module in lib/ (the tokenizer looks next to
# the executable, then in ../lib).
RUN cmake --install build --prefix /stage/opt/openelm --strip

########################### runtime stage ###########################
FROM ${DEBIAN_SLIM_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries only (the -dev packages' shared-library packages):
#   gRPC 1.51 (+ reflection, health), protobuf 3.21, Abseil, oneDNN 2.6 (OpenMP
#   runtime, OpenCL loader it links against), sentencepiece (loaded by the
#   bridge module only), prometheus-cpp; curl + ca-certificates for the
#   optional start-up download.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libdnnl2 libgomp1 ocl-icd-libopencl1 \
      libsentencepiece0 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /stage/ /

# Non-root user with a fixed uid/gid, so Kubernetes' runAsUser/fsGroup match.
RUN groupadd --system --gid 10001 openelm \
 && useradd --system --uid 10001 --gid openelm --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin openelm \
 && mkdir -p /models && chown openelm:openelm /models

# OPENELM_CACHE_DIR: where the server generates its random-weight demo model
# (OPENELM_ALLOW_RANDOM_MODEL=1); /tmp stays writable with a read-only root.
ENV PATH=/opt/openelm/bin:${PATH} \
    OPENELM_MODEL_DIR=/models \
    OPENELM_TOKENIZER=/models/tokenizer.model \
    OPENELM_CACHE_DIR=/tmp/openelm-cache

USER 10001:10001
WORKDIR /opt/openelm
VOLUME ["/models"]
EXPOSE 50051 8000 9464

# `openelm health` asks grpc.health.v1.Health for the server's overall status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["openelm", "health", "--target=127.0.0.1:50051"]

# The entrypoint sizes OpenMP from the cgroup CPU limit, optionally downloads
# the checkpoint, then execs its arguments. Listening on 0.0.0.0 is needed
# inside a container (the server's own default is loopback).
ENTRYPOINT ["/opt/openelm/bin/openelm-entrypoint"]
CMD ["openelm_server", "--host=0.0.0.0", "--port=50051", "--http_port=8000", "--metrics_port=9464"]
