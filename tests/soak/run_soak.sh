#!/usr/bin/env bash
# Starts openelm_server on a generated tiny checkpoint (loopback, free port)
# and runs openelm_soak against it. Used by ctest (soak_short) and by hand for
# the 10-minute soak (docs/reliability.md):
#   tests/soak/run_soak.sh SERVER GEN SOAK TOKENIZER [openelm_soak flags...]
# Env: SOAK_SERVER_FLAGS (extra server flags), SOAK_KEEP_DIR=1 (keep the
# temp dir with server.log).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 SERVER GEN SOAK TOKENIZER [soak flags...]" >&2
  exit 2
fi
server_bin=$1 gen_bin=$2 soak_bin=$3 tokenizer=$4
shift 4

work=$(mktemp -d "${TMPDIR:-/tmp}/openelm_soak.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${SOAK_KEEP_DIR:-0}" = 1 ]; then
    echo "run_soak: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

"$gen_bin" --size=tiny --seed=1 --out="$work/model" > /dev/null
# shellcheck disable=SC2086
"$server_bin" --model_dir="$work/model" --tokenizer="$tokenizer" --host=127.0.0.1 \
  --port=0 --metrics_port=-1 --http_port=-1 --threads=1 --kv_cache_bytes=$((64 << 20)) \
  --drain_timeout=10s ${SOAK_SERVER_FLAGS:-} > "$work/server.out" 2> "$work/server.log" &
server_pid=$!

addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/^listening on //p' "$work/server.out" | head -n 1)
  [ -n "$addr" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run_soak: server exited during start-up:" >&2
    tail -n 30 "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "run_soak: server did not print its address in 60 s" >&2
  exit 1
fi
echo "run_soak: server pid $server_pid at $addr"

rc=0
"$soak_bin" --target="$addr" --server_pid="$server_pid" "$@" || rc=$?

# With --sigterm the server should be gone (or going) now: reap it and check
# that it exited cleanly. Otherwise the EXIT trap stops it.
if grep -q -- "--sigterm" <<< "$*"; then
  for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || break
    # A zombie still answers kill -0; its state in /proc says it is done.
    [ "$(awk '{print $3}' "/proc/$server_pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  if [ "$(awk '{print $3}' "/proc/$server_pid/stat" 2>/dev/null)" = Z ] ||
     ! kill -0 "$server_pid" 2>/dev/null; then
    server_rc=0
    wait "$server_pid" || server_rc=$?
    server_pid=""
    echo "run_soak: server exit status $server_rc after SIGTERM"
    if [ "$server_rc" -ne 0 ]; then
      tail -n 30 "$work/server.log" >&2
      rc=1
    fi
  else
    echo "run_soak: server still running 30 s after the soak's SIGTERM" >&2
    rc=1
  fi
fi
exit "$rc"
