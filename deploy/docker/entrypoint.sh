#!/usr/bin/env bash
# Container entrypoint for openelm-serve.
#
# 1. Sizes OpenMP/oneDNN from the container's CPU limit: cgroup v2 cpu.max
#    (quota/period, rounded down), else cgroup v1 cfs quota, else the CPUs this
#    process may run on (nproc, which honours the cpuset). OMP_NUM_THREADS set
#    by the user wins.
# 2. Pins threads (OMP_PROC_BIND=close, OMP_PLACES=cores) only when the CPU
#    quota is a whole number of CPUs equal to both the affinity mask and the
#    thread count: a Guaranteed pod with integer CPUs under the kubelet's
#    static CPU manager policy. In a shared CPU pool, pinning would stack the
#    threads of several pods on the same cores, so there it stays off.
#    OMP_PROC_BIND set by the user wins.
# 3. If HF_REPO_ID and HF_TOKEN are set and the model directory has no
#    config.json, downloads the checkpoint (openelm-fetch-model). Never used
#    in CI; the machine needs internet access.
# 4. For openelm_server, adds --model_dir, --tokenizer and --threads unless
#    given on the command line, then execs the command, so the server replaces
#    this shell and receives SIGTERM from the runtime directly.
#
# Environment: OPENELM_MODEL_DIR (default /models), OPENELM_TOKENIZER
# (default $OPENELM_MODEL_DIR/tokenizer.model), OPENELM_ALLOW_RANDOM_MODEL=1
# (serve a random-weight model when the directory has no checkpoint).
set -euo pipefail

log() { echo "openelm-entrypoint: $*" >&2; }

# OPENELM_CGROUP_ROOT exists for tests of this script.
cgroup_root="${OPENELM_CGROUP_ROOT:-/sys/fs/cgroup}"

cpu_limit_from_cgroup() {
  local quota period
  if [ -r "${cgroup_root}/cpu.max" ]; then
    read -r quota period < "${cgroup_root}/cpu.max" || return 1
    [ "${quota}" = "max" ] && return 1
  elif [ -r "${cgroup_root}/cpu/cpu.cfs_quota_us" ]; then
    quota="$(cat "${cgroup_root}/cpu/cpu.cfs_quota_us")"
    period="$(cat "${cgroup_root}/cpu/cpu.cfs_period_us")"
    [ "${quota}" -le 0 ] && return 1
  else
    return 1
  fi
  [ "${period}" -gt 0 ] || return 1
  # Whole CPUs, rounded down (at least 1): more OpenMP threads than the quota
  # gets throttled by CFS mid-step, which costs more than it gains. Prints
  # "N exact" when the quota is a whole number of CPUs.
  local n=$(( quota / period ))
  [ "${n}" -ge 1 ] || n=1
  if [ $(( quota % period )) -eq 0 ]; then echo "${n} exact"; else echo "${n}"; fi
}

# CPUs in this process' affinity mask (GNU nproc would honour OMP_NUM_THREADS).
available_cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)"
if [ -z "${OMP_NUM_THREADS:-}" ]; then
  threads="${available_cpus}"
  if limit="$(cpu_limit_from_cgroup)"; then
    limit="${limit%% *}"
    if [ "${limit}" -lt "${threads}" ]; then threads="${limit}"; fi
  fi
  [ "${threads}" -ge 1 ] || threads=1
  export OMP_NUM_THREADS="${threads}"
fi
if [ -z "${OMP_PROC_BIND:-}" ]; then
  if [ "$(cpu_limit_from_cgroup || true)" = "${available_cpus} exact" ] \
     && [ "${OMP_NUM_THREADS}" -eq "${available_cpus}" ]; then
    export OMP_PROC_BIND=close OMP_PLACES="${OMP_PLACES:-cores}"
  else
    export OMP_PROC_BIND=false
  fi
fi
log "OMP_NUM_THREADS=${OMP_NUM_THREADS} OMP_PROC_BIND=${OMP_PROC_BIND} (cpus available: ${available_cpus})"

model_dir="${OPENELM_MODEL_DIR:-/models}"
tokenizer="${OPENELM_TOKENIZER:-${model_dir}/tokenizer.model}"

if [ -n "${HF_REPO_ID:-}" ] && [ -n "${HF_TOKEN:-}" ] && [ ! -f "${model_dir}/config.json" ]; then
  log "downloading ${HF_REPO_ID} into ${model_dir}"
  openelm-fetch-model "${model_dir}"
fi

if [ $# -eq 0 ]; then set -- openelm_server --host=0.0.0.0; fi

if [ "$(basename "$1")" = "openelm_server" ]; then
  has_flag() { local f; for f in "${@:2}"; do case "$f" in "--$1"|"--$1="*) return 0;; esac; done; return 1; }
  extra=()
  if ! has_flag model_dir "$@"; then
    if [ -f "${model_dir}/config.json" ]; then
      extra+=("--model_dir=${model_dir}")
    elif [ "${OPENELM_ALLOW_RANDOM_MODEL:-0}" = "1" ]; then
      log "no checkpoint in ${model_dir}: serving a random-weight model (OPENELM_ALLOW_RANDOM_MODEL=1)"
    else
      log "no config.json in ${model_dir}: mount a checkpoint at ${model_dir}, set HF_REPO_ID + HF_TOKEN," \
          "or set OPENELM_ALLOW_RANDOM_MODEL=1 for a random-weight demo model"
      exit 64
    fi
  fi
  if ! has_flag tokenizer "$@"; then
    if [ ! -f "${tokenizer}" ]; then
      log "tokenizer not found at ${tokenizer} (Llama-2's tokenizer.model; see docs/deployment.md)"
      exit 64
    fi
    extra+=("--tokenizer=${tokenizer}")
  fi
  if ! has_flag threads "$@"; then extra+=("--threads=${OMP_NUM_THREADS}"); fi
  set -- "$@" "${extra[@]}"
fi

log "exec $*"
exec "$@"
