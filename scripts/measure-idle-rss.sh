#!/usr/bin/env bash
# Idle memory of the server against issue 14's allowance: starts
# build/bin/openelm_server, waits until it is ready (warm-up done), reads its
# VmRSS and prints it less the weights and the KV pool (both as the server
# logs them). Repeats the start `runs` times.
#
#   scripts/measure-idle-rss.sh MODEL_DIR [runs] [openelm_server flags...]
#
# e.g. scripts/measure-idle-rss.sh ~/.cache/openelm/270M 3 --weight_dtype=int8
# OPENELM_MAX_CPU_ISA caps the plan as for the server. Nothing else should
# run beside it (the server uses every core).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
server="${OPENELM_BUILD_DIR:-${repo_root}/build}/bin/openelm_server"
model_dir="${1:?usage: measure-idle-rss.sh MODEL_DIR [runs] [server flags...]}"
runs="${2:-3}"
shift $(($# < 2 ? $# : 2))
tokenizer="${OPENELM_TOKENIZER:-${repo_root}/../shared/tokenizer/llama2-tokenizer.model}"
log="$(mktemp)"
trap 'rm -f "${log}"' EXIT

for ((run = 1; run <= runs; ++run)); do
  "${server}" --model_dir="${model_dir}" --tokenizer="${tokenizer}" --port=0 \
    --http_port=-1 --metrics_port=-1 "$@" >"${log}" 2>&1 &
  pid=$!
  for _ in $(seq 1 240); do
    grep -q 'ready: health SERVING' "${log}" && break
    kill -0 "${pid}" 2>/dev/null || { cat "${log}" >&2; exit 1; }
    sleep 0.5
  done
  sleep 1
  rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/${pid}/status")"
  kill "${pid}"
  wait "${pid}" || true
  python3 - "${rss_kib}" "${log}" "${run}" <<'EOF'
import re, sys
rss = int(sys.argv[1]) * 1024
text = open(sys.argv[2]).read()
weights = int(re.search(r'weights \S+ (\d+) bytes', text).group(1))
per_token = int(re.search(r'KV \S+ (\d+) bytes/token', text).group(1))
blocks, block_tokens = map(int, re.search(r'engine: (\d+) KV blocks of (\d+) tokens', text).groups())
plan = re.search(r'execution plan: (.*)', text).group(1)
kv = blocks * block_tokens * per_token
mib = 1 << 20
print(f"run {sys.argv[3]}: {plan}")
print(f"  RSS {rss / mib:.1f} MiB = weights {weights / mib:.1f} + KV pool {kv / mib:.1f}"
      f" + {(rss - weights - kv) / mib:.1f} MiB")
EOF
done
