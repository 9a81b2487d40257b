#!/usr/bin/env bash
# End-to-end check of the observability setup: runs Debian's real Prometheus
# on loopback with the project's scrape config and rules
# (deploy/prometheus/), pointed at an openelm_server metrics endpoint, waits
# for a scrape and queries the metrics back through Prometheus' HTTP API.
#
#   scripts/test-prometheus.sh --target 127.0.0.1:9464   # a running server
#   scripts/test-prometheus.sh --build-dir build         # starts openelm_server
#                                                        # on a tiny generated model
#   (--gen-checkpoint PATH: openelm_gen_checkpoint from elsewhere;
#    --tokenizer PATH: default $OPENELM_TOKENIZER or ../shared/tokenizer/...)
#   scripts/test-prometheus.sh --fake                    # a static endpoint in the
#                                                        # contract's format (self-test)
#
# Checks (exit 1 if any fails):
#   - the target is scraped: up{job="openelm"} == 1;
#   - openelm_requests_waiting is present;
#   - the TTFT histogram is present: openelm_time_to_first_token_seconds_bucket
#     (with le labels, +Inf among them) and _count;
#   - every gauge and histogram of the metrics contract is present
#     (deploy/tools/metrics-contract.json); counters are reported only, since
#     labelled counters may appear on first use;
#   - both rule groups loaded and evaluated without errors;
#   - with --build-dir and the `openelm` CLI built: after one Generate request,
#     the TTFT and e2e histograms and the generated-token counter are > 0.
# Uses random free ports and a temporary storage directory; every process it
# started is stopped on exit. Needs prometheus (Debian package), curl, python3.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=""
target=""
build_dir=""
gen=""
expect_traffic=0
timeout_s="${TEST_PROMETHEUS_TIMEOUT_S:-90}"
tokenizer="${OPENELM_TOKENIZER:-${repo_root}/../shared/tokenizer/llama2-tokenizer.model}"

while [ $# -gt 0 ]; do
  case "$1" in
    --target) mode=target; target="${2:?}"; shift 2 ;;
    --build-dir) mode=build; build_dir="${2:?}"; shift 2 ;;
    --fake) mode=fake; shift ;;
    --tokenizer) tokenizer="${2:?}"; shift 2 ;;
    --gen-checkpoint) gen="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "test-prometheus: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "${mode}" ] || { echo "test-prometheus: give --target, --build-dir or --fake" >&2; exit 2; }
command -v prometheus >/dev/null || { echo "test-prometheus: prometheus not found (scripts/install-deps.sh)" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
  rm -rf "${work}"
}
trap cleanup EXIT

log() { echo "test-prometheus: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dump_logs() { for f in "${work}"/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f")"; tail -n 30 "$f"; }; done >&2; }

# ------------------------------------------------------------- the target --
case "${mode}" in
  fake)
    # Prometheus text format with every contract metric, as the server
    # exposes them (histograms with buckets, _sum, _count).
    mkdir -p "${work}/www"
    python3 - "${repo_root}/deploy/tools/metrics-contract.json" >"${work}/www/metrics" <<'EOF'
import itertools, json, sys
c = json.load(open(sys.argv[1]))
for g in c["gauges"]:
    print(f"# HELP {g} fake\n# TYPE {g} gauge\n{g} 0")
for h in c["histograms"]:
    print(f"# HELP {h} fake\n# TYPE {h} histogram")
    for le in ("0.1", "1", "+Inf"):
        print(f'{h}_bucket{{le="{le}"}} 0')
    print(f"{h}_sum 0\n{h}_count 0")
for n in c["counters"]:
    print(f"# HELP {n} fake\n# TYPE {n} counter")
    labels = c["labels"].get(n)
    if labels:
        keys = list(labels)
        for combo in itertools.product(*(labels[k] for k in keys)):
            pairs = ",".join(f'{k}="{v}"' for k, v in zip(keys, combo))
            print(f"{n}{{{pairs}}} 0")
    else:
        print(f"{n} 0")
EOF
    port="$(free_port)"
    python3 -m http.server "${port}" --bind 127.0.0.1 --directory "${work}/www" >"${work}/fake.log" 2>&1 &
    pids+=($!)
    target="127.0.0.1:${port}"
    ;;
  build)
    server="$(find "${build_dir}" -type f -name openelm_server -perm -u+x | head -n1)"
    [ -n "${gen}" ] || gen="$(find "${build_dir}" -type f -name openelm_gen_checkpoint -perm -u+x | head -n1)"
    [ -n "${server}" ] && [ -n "${gen}" ] || { log "openelm_server / openelm_gen_checkpoint not built in ${build_dir}"; exit 1; }
    [ -f "${tokenizer}" ] || { log "tokenizer not found: ${tokenizer} (--tokenizer)"; exit 1; }
    "${gen}" --size=tiny --out="${work}/model" >"${work}/gen.log" 2>&1 || { dump_logs; exit 1; }
    "${server}" --model_dir="${work}/model" --tokenizer="${tokenizer}" --host=127.0.0.1 \
      --port=0 --metrics_port=0 --http_port=-1 --threads=1 --kv_cache_bytes=16777216 >"${work}/server.out" 2>"${work}/server.log" &
    pids+=($!)
    for _ in $(seq 1 $((timeout_s * 5))); do
      target="$(sed -n 's/^metrics on \(.*\)$/\1/p' "${work}/server.out" | head -n1)"
      [ -n "${target}" ] && break
      kill -0 "${pids[-1]}" 2>/dev/null || { log "openelm_server exited"; dump_logs; exit 1; }
      sleep 0.2
    done
    [ -n "${target}" ] || { log "openelm_server printed no metrics address"; dump_logs; exit 1; }
    # One real request, when the CLI is built too, so that the latency
    # histograms and token counters have observations to show.
    cli="$(find "${build_dir}" -type f -name openelm -perm -u+x | head -n1)"
    grpc_addr="$(sed -n 's/^listening on \(.*\)$/\1/p' "${work}/server.out" | head -n1)"
    if [ -n "${cli}" ] && [ -n "${grpc_addr}" ]; then
      if "${cli}" generate --target="${grpc_addr}" --max_tokens=4 --timeout=60s "Hello world" \
           >"${work}/cli.log" 2>&1; then
        expect_traffic=1
        log "sent one Generate request to ${grpc_addr}"
      else
        log "openelm generate failed"; dump_logs; exit 1
      fi
    fi
    ;;
esac
log "metrics target ${target}"

# ------------------------------------------------------------- prometheus --
prom_port="$(free_port)"
mkdir -p "${work}/prom/rules" "${work}/data"
for f in "${repo_root}"/deploy/prometheus/rules/*.yml; do
  sed 's/^\(    interval:\).*/\1 1s/' "$f" >"${work}/prom/rules/$(basename "$f")"
done
# The project's config, with the target rewritten and faster intervals.
sed -e "s/127\.0\.0\.1:9464/${target}/" \
    -e 's/^\(  scrape_interval:\).*/\1 1s/' \
    -e 's/^\(  scrape_timeout:\).*/\1 1s/' \
    -e 's/^\(  evaluation_interval:\).*/\1 1s/' \
    "${repo_root}/deploy/prometheus/prometheus.yml" >"${work}/prom/prometheus.yml"
grep -q "${target}" "${work}/prom/prometheus.yml" || { log "could not rewrite the scrape target"; exit 1; }
prometheus --config.file="${work}/prom/prometheus.yml" --storage.tsdb.path="${work}/data" \
  --web.listen-address="127.0.0.1:${prom_port}" --log.level=warn >"${work}/prometheus.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:${prom_port}/api/v1"

# Is there at least one successful scrape? (curl + a plain text test, cheap
# enough to poll.)
scraped() {
  curl -fsS --max-time 5 -G "${api}/query" --data-urlencode 'query=up{job="openelm"} == 1' 2>/dev/null \
    | grep -q '"result":\[{'
}

start_s=${SECONDS}
deadline=$((SECONDS + timeout_s))
until scraped; do
  if [ ${SECONDS} -ge ${deadline} ]; then log "no successful scrape within ${timeout_s}s"; dump_logs; exit 1; fi
  kill -0 "${pids[-1]}" 2>/dev/null || { log "prometheus exited"; dump_logs; exit 1; }
  sleep 1
done
log "target scraped after $((SECONDS - start_s)) s (Prometheus on 127.0.0.1:${prom_port})"
# Let both rule groups run at least once (evaluation_interval is now 1s).
sleep 3

# All queries from one python3 process (the HTTP API answers JSON).
failures=0
python3 - "${api}" "${repo_root}/deploy/tools/metrics-contract.json" "${expect_traffic}" <<'EOF2' || failures=1
import json, sys, urllib.parse, urllib.request

api, contract_path, expect_traffic = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
contract = json.load(open(contract_path))
failed = 0

def get(path, **params):
    url = f"{api}/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]

def check(name, expr, minimum=1):
    global failed
    series = get("query", query=expr)["result"]
    ok = len(series) >= minimum
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {name} ({len(series)} series)")
    return series

sel = '{job="openelm"}'
check("openelm_requests_waiting", f"openelm_requests_waiting{sel}")
ttft = "openelm_time_to_first_token_seconds"
buckets = check(f"{ttft}_bucket (>= 2 buckets)", f"{ttft}_bucket{sel}", 2)
les = sorted(s["metric"].get("le", "") for s in buckets)
if "+Inf" not in les:
    failed += 1
    print(f"FAIL {ttft}_bucket has no le=\"+Inf\" bucket (le: {les})")
else:
    print(f"PASS {ttft}_bucket le values: {', '.join(les)}")
check(f"{ttft}_count", f"{ttft}_count{sel}")
for g in contract["gauges"]:
    check(g, f"{g}{sel}")
for h in contract["histograms"]:
    check(f"{h}_count", f"{h}_count{sel}")
for c in contract["counters"]:
    n = len(get("query", query=f"{c}{sel}")["result"])
    print(f"INFO {c}: {n} series")

if expect_traffic:
    # The request above finished before the scrape that we waited for.
    for expr in (f"{ttft}_count{sel} > 0", f"openelm_generated_tokens_total{sel} > 0",
                 f"openelm_e2e_request_latency_seconds_count{sel} > 0"):
        check(f"after one request: {expr}", expr)

groups = {g["name"]: g for g in get("rules")["groups"]}
for name in ("openelm-recording", "openelm-alerts"):
    g = groups.get(name)
    if g is None:
        failed += 1
        print(f"FAIL rule group {name} not loaded")
        continue
    errors = [f"{r.get('name')}: {r.get('lastError')}" for r in g["rules"] if r.get("health") == "err"]
    failed += bool(errors)
    print(f"{'FAIL' if errors else 'PASS'} rule group {name}: {len(g['rules'])} rules, "
          f"last evaluation {g.get('lastEvaluation')} {'; '.join(errors)}")
sys.exit(1 if failed else 0)
EOF2

if [ "${failures}" -gt 0 ]; then
  dump_logs
  echo "test-prometheus: ${failures} check(s) failed"
  exit 1
fi
echo "test-prometheus: all checks passed"
