#!/usr/bin/env bash
# Serving benchmark series for BENCHMARKS.md (section 3): openelm_bench_serve at
# several max-concurrency levels against openelm_server with continuous
# batching (default --max_num_seqs) and with --max_num_seqs=1, RUNS runs per
# point, all in one session. Prints a Markdown table (min and median over the
# runs) and keeps every JSON result and /metrics scrape under OUT_DIR.
#
# Usage: client/bench/run_serving_bench.sh BUILD_DIR MODEL_DIR
# Environment knobs (defaults in brackets):
#   CONCURRENCIES ["1 4 16 32 64"]  RUNS [3]  INPUT_LEN [128]  OUTPUT_LEN [64]
#   MIN_REQUESTS [8]  REQ_PER_SLOT [2]   (requests per run = max(MIN, c * REQ_PER_SLOT))
#   MODES ["batched seqs1"]  THREADS [0]  OUT_DIR [/tmp/openelm-bench-serving]
#   TOKENIZER [../shared/tokenizer/llama2-tokenizer.model]  EXTRA_SERVER_FLAGS [""]
set -euo pipefail

BUILD_DIR=${1:?usage: $0 BUILD_DIR MODEL_DIR}
MODEL_DIR=${2:?usage: $0 BUILD_DIR MODEL_DIR}
CONCURRENCIES=${CONCURRENCIES:-"1 4 16 32 64"}
RUNS=${RUNS:-3}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
MIN_REQUESTS=${MIN_REQUESTS:-8}
REQ_PER_SLOT=${REQ_PER_SLOT:-2}
MODES=${MODES:-"batched seqs1"}
THREADS=${THREADS:-0}
OUT_DIR=${OUT_DIR:-/tmp/openelm-bench-serving}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
TOKENIZER=${TOKENIZER:-$SCRIPT_DIR/../../../shared/tokenizer/llama2-tokenizer.model}
EXTRA_SERVER_FLAGS=${EXTRA_SERVER_FLAGS:-}

SERVER=$BUILD_DIR/bin/openelm_server
BENCH=$BUILD_DIR/bin/openelm_bench_serve
CLI=$BUILD_DIR/bin/openelm
mkdir -p "$OUT_DIR"
server_pid=""

stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

start_server() {  # $1 = mode
  local extra=""
  [[ "$1" == seqs1 ]] && extra="--max_num_seqs=1"
  local out="$OUT_DIR/server-$1.out"
  "$SERVER" --model_dir="$MODEL_DIR" --tokenizer="$TOKENIZER" --host=127.0.0.1 \
    --port=0 --metrics_port=0 --http_port=0 --threads="$THREADS" $extra $EXTRA_SERVER_FLAGS \
    >"$out" 2>"$OUT_DIR/server-$1.log" &
  server_pid=$!
  for _ in $(seq 1 600); do
    if grep -q '^metrics on ' "$out" 2>/dev/null; then break; fi
    sleep 0.5
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
  metrics_port=$(sed -n 's/^metrics on .*:\([0-9]*\)$/\1/p' "$out")
  [[ -n "$port" && -n "$metrics_port" ]] || { echo "server did not start" >&2; exit 1; }
  for _ in $(seq 1 600); do
    "$CLI" health --target=127.0.0.1:"$port" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server never became SERVING" >&2
  exit 1
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)" \
  | tee "$OUT_DIR/session.txt"
for mode in $MODES; do
  start_server "$mode"
  # One untimed warm-up request so lazy start-up costs stay out of run 1.
  "$BENCH" --target=127.0.0.1:"$port" --num_requests=1 --input_len="$INPUT_LEN" \
    --output_len=4 --progress=false >/dev/null
  for c in $CONCURRENCIES; do
    n=$(( c * REQ_PER_SLOT > MIN_REQUESTS ? c * REQ_PER_SLOT : MIN_REQUESTS ))
    for run in $(seq 1 "$RUNS"); do
      tag="$mode-c$c-r$run"
      curl -s "http://127.0.0.1:$metrics_port/metrics" >"$OUT_DIR/$tag.before.prom"
      "$BENCH" --target=127.0.0.1:"$port" --num_requests="$n" --max_concurrency="$c" \
        --request_rate=inf --input_len="$INPUT_LEN" --output_len="$OUTPUT_LEN" \
        --ignore_eos --seed="$run" --progress=false --label="$tag" \
        --result_file="$OUT_DIR/$tag.json" >"$OUT_DIR/$tag.txt"
      curl -s "http://127.0.0.1:$metrics_port/metrics" >"$OUT_DIR/$tag.after.prom"
      echo "$tag: $(grep -E 'Output token throughput|Mean TTFT|Mean TPOT' "$OUT_DIR/$tag.txt" \
        | tr -s ' ' | tr '\n' ' ') load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
  stop_server
done
echo "# finished $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)" \
  | tee -a "$OUT_DIR/session.txt"
python3 "$SCRIPT_DIR/summarize_serving_bench.py" "$OUT_DIR"
