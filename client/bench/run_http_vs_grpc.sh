#!/usr/bin/env bash
# HTTP (OpenAI-compatible API) against gRPC on one server, for BENCHMARKS.md
# section 3c: openelm_bench_serve with --api=grpc and --api=http alternating
# run by run (so drift hits both alike), at each max concurrency, RUNS runs
# each. Prints one line per run and a Markdown table of median / min.
#
# Usage: client/bench/run_http_vs_grpc.sh BUILD_DIR MODEL_DIR
# Environment knobs: CONCURRENCIES ["1 32"] RUNS [3] INPUT_LEN [128]
#   OUTPUT_LEN [64] MIN_REQUESTS [8] THREADS [2] OUT_DIR [/tmp/openelm-bench-http]
# Besides the client's figures, the server's own mean TTFT of each run comes
# from /metrics (openelm_time_to_first_token_seconds{api=...} deltas), so the
# table also shows what the transport adds: client TTFT - server TTFT.
#   TOKENIZER [../shared/tokenizer/llama2-tokenizer.model]
set -euo pipefail
BUILD_DIR=${1:?usage: $0 BUILD_DIR MODEL_DIR}
MODEL_DIR=${2:?usage: $0 BUILD_DIR MODEL_DIR}
CONCURRENCIES=${CONCURRENCIES:-"1 32"}
RUNS=${RUNS:-3}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
MIN_REQUESTS=${MIN_REQUESTS:-8}
THREADS=${THREADS:-2}
OUT_DIR=${OUT_DIR:-/tmp/openelm-bench-http}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
TOKENIZER=${TOKENIZER:-$SCRIPT_DIR/../../../shared/tokenizer/llama2-tokenizer.model}
mkdir -p "$OUT_DIR"
out="$OUT_DIR/server.out"
"$BUILD_DIR/bin/openelm_server" --model_dir="$MODEL_DIR" --tokenizer="$TOKENIZER" \
  --host=127.0.0.1 --port=0 --metrics_port=0 --http_port=0 --threads="$THREADS" \
  --access_log=false >"$out" 2>"$OUT_DIR/server.log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^http on ' "$out" 2>/dev/null && break
  sleep 0.5
done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
http_port=$(sed -n 's/^http on .*:\([0-9]*\)$/\1/p' "$out")
metrics_port=$(sed -n 's/^metrics on .*:\([0-9]*\)$/\1/p' "$out")
[[ -n "$port" && -n "$http_port" ]] || { echo "server did not start" >&2; exit 1; }
until curl -sf "http://127.0.0.1:$http_port/health" >/dev/null; do sleep 0.5; done
bench() {  # api c n seed tag
  "$BUILD_DIR/bin/openelm_bench_serve" --target=127.0.0.1:"$port" \
    --http_target=127.0.0.1:"$http_port" --api="$1" --num_requests="$3" \
    --max_concurrency="$2" --request_rate=inf --input_len="$INPUT_LEN" \
    --output_len="$OUTPUT_LEN" --ignore_eos --seed="$4" --progress=false \
    --result_file="$OUT_DIR/$5.json" >"$OUT_DIR/$5.txt"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
bench grpc 1 1 99 warmup  # lazy start-up costs out of run 1
for c in $CONCURRENCIES; do
  n=$(( c > MIN_REQUESTS ? c : MIN_REQUESTS ))
  for run in $(seq 1 "$RUNS"); do
    for api in grpc http; do
      tag="$api-c$c-r$run"
      # Fresh prompts for every run and API: a repeated prompt would be
      # served from the prefix cache and flatter whoever came second.
      seed=$(( 1000 * c + 10 * run ))
      [[ $api == http ]] && seed=$(( seed + 1 ))
      curl -s "http://127.0.0.1:$metrics_port/metrics" >"$OUT_DIR/$tag.before.prom"
      bench "$api" "$c" "$n" "$seed" "$tag"
      curl -s "http://127.0.0.1:$metrics_port/metrics" >"$OUT_DIR/$tag.after.prom"
      echo "$tag: $(grep -E 'Output token throughput|Mean TTFT' "$OUT_DIR/$tag.txt" \
        | tr -s ' ' | tr '\n' ' ') load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "# finished $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT_DIR" <<'PY'
import glob, json, os, re, statistics, sys
from collections import defaultdict
def prom(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rstrip("\n").rpartition(" ")
        out[series] = float(value)
    return out
runs = defaultdict(list)
for path in glob.glob(os.path.join(sys.argv[1], "*-c*-r*.json")):
    m = re.match(r"(grpc|http)-c(\d+)-r\d+\.json", os.path.basename(path))
    if not m:
        continue
    r = json.load(open(path))
    before, after = prom(path[:-5] + ".before.prom"), prom(path[:-5] + ".after.prom")
    key = 'openelm_time_to_first_token_seconds_%s{api="%s"}'
    n = after[key % ("count", m.group(1))] - before[key % ("count", m.group(1))]
    s = after[key % ("sum", m.group(1))] - before[key % ("sum", m.group(1))]
    r["server_ttft_ms"] = 1000 * s / n if n else float("nan")
    runs[(int(m.group(2)), m.group(1))].append(r)
print("| max conc. | API | out tok/s | mean TTFT ms (client) | mean TTFT ms (server) | client - server ms | median TPOT ms |")
print("|---|---|---|---|---|---|---|")
def cell(values, best, fmt="%.1f"):
    return (fmt + " / " + fmt) % (statistics.median(values), best(values))
for (c, api) in sorted(runs):
    r = runs[(c, api)]
    print(f"| {c} | {api} | {cell([x['output_throughput'] for x in r], max)} | "
          f"{cell([x['mean_ttft_ms'] for x in r], min)} | {cell([x['server_ttft_ms'] for x in r], min)} | "
          f"{cell([x['mean_ttft_ms'] - x['server_ttft_ms'] for x in r], min, '%.2f')} | "
          f"{cell([x['median_tpot_ms'] for x in r], min)} |")
PY
