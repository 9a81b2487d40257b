#!/usr/bin/env bash
# End-to-end test of the OpenAI-compatible HTTP API (--http_port) of a real
# openelm_server on a generated tiny random checkpoint: first with curl, then
# with the official OpenAI Node SDK (tests/e2e/openai_sdk_client.mjs).
#
#   scripts/test-http-api.sh BUILD_DIR [--server PATH] [--gen PATH]
#                                      [--tokenizer PATH]
#
# Defaults: BUILD_DIR/bin/openelm_server,
# BUILD_DIR/engine/tools/openelm_gen_checkpoint, and $OPENELM_TOKENIZER or
# ../shared/tokenizer/llama2-tokenizer.model. The server runs with API keys
# (a tenants file holding the key's SHA-256). The SDK (npm package openai,
# pinned below) is installed once into BUILD_DIR/npm-openai and reused; that
# first install needs the npm registry. Needs curl, node + npm, /usr/bin/python3
# (scripts/install-deps.sh). Prints PASS/FAIL per check; exits non-zero if any
# check fails.
set -euo pipefail

# shellcheck source=lib/e2e-args.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/e2e-args.sh"
e2e_parse_args test-http-api "$@"
for tool in curl node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-http-api: $tool not found (scripts/install-deps.sh)" >&2
    exit 1
  fi
done

# Debian's interpreter: only its json module is used.
python=/usr/bin/python3
openai_version=5.23.2  # runs on Node >= 18; no dependencies
cache_dir="$build_dir/npm-openai"
start_timeout_s=120

work="$(mktemp -d "${TMPDIR:-/tmp}/openelm_http_api.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL: $1"
  shift
  for line in "$@"; do
    if [ -n "${line// /}" ]; then echo "      $line"; fi
  done
  failed=$((failed + 1))
}
server_log_tail() {
  echo "---- server stderr (last 40 lines)"
  tail -n 40 "$work/server.err" 2>/dev/null || true
  echo "----"
}

# ---------------------------------------------------------------- model, server
echo "== tiny checkpoint"
"$gen" --size=tiny --seed=7 --dtype=f32 --out="$work/tiny" >/dev/null

api_key="sk-http-e2e-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
key_sha256="$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)"
cat >"$work/tenants.json" <<EOF
{"auth_enabled": true,
 "tenants": [{"id": "http-e2e", "api_key_sha256": ["$key_sha256"]}]}
EOF

echo "== openelm_server (--http_port=0)"
# Created here: the background job opens them only after it has forked.
: >"$work/server.out"
: >"$work/server.err"
"$server" --host=127.0.0.1 --port=0 --metrics_port=0 --http_port=0 \
  --model_dir="$work/tiny" --tokenizer="$tokenizer" --tenants_config="$work/tenants.json" \
  --threads=1 --kv_cache_bytes=67108864 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

http_addr=""
deadline=$((SECONDS + start_timeout_s))
while [ $SECONDS -lt $deadline ]; do
  http_addr="$(sed -n '/^http on /{s/^http on //p;q}' "$work/server.out" || true)"
  [ -n "$http_addr" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.2
done
if [ -z "$http_addr" ]; then
  echo "test-http-api: the server did not print \"http on HOST:PORT\" within ${start_timeout_s}s" >&2
  cat "$work/server.out" >&2
  server_log_tail >&2
  exit 1
fi
http_host="${http_addr%:*}"
http_port="${http_addr##*:}"
case "$http_host" in 0.0.0.0 | "" | "::" | "[::]") http_host=127.0.0.1 ;; esac
case "$http_host" in *:*) http_host="[$http_host]" ;; esac  # an IPv6 literal
base="http://$http_host:$http_port"
echo "== server pid $server_pid, HTTP API at $base"

while ! curl -sf -o /dev/null --max-time 5 "$base/health"; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$server_pid" 2>/dev/null; then
    echo "test-http-api: $base/health did not answer 200 within ${start_timeout_s}s" >&2
    server_log_tail >&2
    exit 1
  fi
  sleep 0.5
done

# ---------------------------------------------------------------- curl helpers
# request METHOD PATH BODY [curl args...]: the status in $code, the body in
# $work/body (BODY "" sends none).
request() {
  local method=$1 path=$2 data=$3
  shift 3
  local args=(-sS -o "$work/body" -w '%{http_code}' -X "$method" --max-time 120 "$@")
  if [ -n "$data" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$data")
  fi
  code="$(curl "${args[@]}" "$base$path" 2>"$work/curl.err")" || code="000"
}
auth=(-H "Authorization: Bearer $api_key")
# body_is EXPR: EXPR (Python, the JSON body as d) is true.
body_is() {
  "$python" -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$work/body" "$1" 2>"$work/check.err"
}
# expect NAME STATUS EXPR: the last request answered STATUS with a JSON body
# satisfying EXPR.
expect() {
  local name=$1 status=$2 expr=$3
  : >"$work/check.err"
  if [ "$code" = "$status" ] && body_is "$expr"; then
    pass "$name"
  else
    fail "$name" "expected HTTP $status and: $expr" \
      "got HTTP $code: $(head -c 600 "$work/body" 2>/dev/null) $(cat "$work/curl.err")" \
      "$(tail -n 1 "$work/check.err" 2>/dev/null)"
  fi
}

# ---------------------------------------------------------------- curl checks
echo "== curl"
request GET /health ""
expect "curl GET /health -> 200" 200 'd["status"] == "ok"'

request GET /v1/models "" "${auth[@]}"
expect "curl GET /v1/models lists the model" 200 \
  'd["object"] == "list" and len(d["data"]) == 1 and d["data"][0]["object"] == "model" and d["data"][0]["id"] != ""'
model="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' \
  "$work/body" 2>/dev/null || true)"
echo "      model id: ${model:-?}"

request GET /v1/models "" -H "x-api-key: $api_key"
expect "curl GET /v1/models with x-api-key" 200 \
  "len(d[\"data\"]) == 1 and d[\"data\"][0][\"id\"] == \"$model\""

request POST /v1/completions \
  "{\"model\":\"$model\",\"prompt\":\"Hello\",\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}" \
  "${auth[@]}"
expect "curl POST /v1/completions" 200 \
  'd["object"] == "text_completion" and len(d["choices"]) == 1 and isinstance(d["choices"][0]["text"], str) and d["choices"][0]["finish_reason"] == "length" and d["usage"]["completion_tokens"] == 5 and d["usage"]["total_tokens"] == d["usage"]["prompt_tokens"] + 5'

# Streaming: every event a "data: {json}" line (blank lines between), the
# last "data: [DONE]", a usage chunk (choices [] and completion_tokens 5).
name="curl POST /v1/completions stream (SSE)"
if curl -sS -N --max-time 120 -o "$work/stream" -D "$work/stream.headers" "${auth[@]}" \
    -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"$model\",\"prompt\":\"Hello\",\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
    "$base/v1/completions" 2>"$work/curl.err" &&
  "$python" - "$work/stream" "$work/stream.headers" >"$work/check.out" 2>&1 <<'EOF'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
headers = open(sys.argv[2]).read().lower()
assert " 200" in headers.splitlines()[0], headers.splitlines()[0]
assert "text/event-stream" in headers, "content-type is not text/event-stream"
lines = [l for l in raw.split("\n") if l.strip()]
assert lines, "empty stream"
bad = [l for l in lines if not l.startswith("data: ")]
assert not bad, "lines that are not 'data: ': %r" % bad[:3]
assert lines[-1] == "data: [DONE]", "last line %r" % lines[-1]
assert raw.endswith("data: [DONE]\n\n"), "stream does not end with [DONE] and a blank line"
chunks = [json.loads(l[len("data: "):]) for l in lines[:-1]]
assert all(c["object"] == "text_completion" for c in chunks), "object != text_completion"
usage = [c for c in chunks if c.get("usage")]
assert len(usage) == 1 and usage[0]["choices"] == [], "usage chunks: %r" % usage
assert usage[0]["usage"]["completion_tokens"] == 5, usage[0]["usage"]
assert chunks[-1] is usage[0], "the usage chunk is not the last one"
finish = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
assert finish == ["length"], "finish_reasons %r" % finish
text = "".join(ch.get("text", "") for c in chunks for ch in c["choices"])
print("%d chunks, text %r" % (len(chunks), text))
EOF
then
  pass "$name"
  echo "      $(cat "$work/check.out")"
else
  fail "$name" "$(tail -n 3 "$work/check.out" 2>/dev/null) $(cat "$work/curl.err")" \
    "stream: $(head -c 800 "$work/stream" 2>/dev/null)"
fi

request POST /v1/chat/completions \
  "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4,\"temperature\":0}" \
  "${auth[@]}"
expect "curl POST /v1/chat/completions" 200 \
  'd["object"] == "chat.completion" and len(d["choices"]) == 1 and d["choices"][0]["message"]["role"] == "assistant" and isinstance(d["choices"][0]["message"]["content"], str) and d["choices"][0]["finish_reason"] in ("stop", "length")'

request POST /v1/completions \
  "{\"model\":\"$model\",\"prompt\":\"Hello\",\"max_tokens\":5,\"temperature\":5}" "${auth[@]}"
expect "curl temperature 5 -> 400, param temperature" 400 \
  'd["error"]["param"] == "temperature" and d["error"]["type"] == "invalid_request_error" and d["error"]["message"] != ""'

request POST /v1/completions "{\"model\":\"$model\",\"prompt\":\"Hello\",\"max_tokens\":5}"
expect "curl no API key -> 401 authentication_error" 401 \
  'd["error"]["type"] == "authentication_error"'

request GET /v1/models "" -H "Authorization: Bearer sk-wrong"
expect "curl wrong API key -> 401 authentication_error" 401 \
  'd["error"]["type"] == "authentication_error"'

request GET /v1/no-such-route "" "${auth[@]}"
expect "curl unknown route -> 404" 404 '"error" in d'

# ---------------------------------------------------------------- OpenAI SDK
echo "== OpenAI Node SDK (openai@$openai_version, node $(node --version))"
sdk_module="$cache_dir/node_modules/openai/index.mjs"
installed_version() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch (e) {}' \
    "$cache_dir/node_modules/openai/package.json" 2>/dev/null || true
}
sdk_ok=1
if [ "$(installed_version)" != "$openai_version" ]; then
  # flock: parallel ctest runs share the cache.
  mkdir -p "$cache_dir"
  if ! (
    flock 9
    if [ "$(installed_version)" != "$openai_version" ]; then
      npm install --no-audit --no-fund --prefix "$cache_dir" \
        "openai@$openai_version" >"$work/npm.log" 2>&1
    fi
  ) 9>"$cache_dir.lock"; then
    fail "npm install openai@$openai_version into $cache_dir" "$(tail -n 5 "$work/npm.log")"
    sdk_ok=0
  fi
fi
if [ $sdk_ok = 1 ]; then
  if OPENAI_BASE_URL="$base/v1" OPENAI_API_KEY="$api_key" OPENAI_SDK_MODULE="$sdk_module" \
      node "$repo_root/tests/e2e/openai_sdk_client.mjs"; then
    pass "OpenAI SDK client (tests/e2e/openai_sdk_client.mjs)"
  else
    fail "OpenAI SDK client (tests/e2e/openai_sdk_client.mjs)" "see its output above"
  fi
fi

# ---------------------------------------------------------------- shutdown
echo "== SIGTERM"
kill -TERM "$server_pid" 2>/dev/null || true
deadline=$((SECONDS + 30))
while kill -0 "$server_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
if kill -0 "$server_pid" 2>/dev/null; then
  fail "server exits within 30 s of SIGTERM" "still running; killed"
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
else
  rc=0
  wait "$server_pid" || rc=$?
  if [ $rc = 0 ]; then
    pass "server exits 0 within 30 s of SIGTERM"
  else
    fail "server exits 0 within 30 s of SIGTERM" "exit status $rc"
  fi
fi
server_pid=""

echo "== $passed passed, $failed failed"
if [ $failed -ne 0 ]; then
  server_log_tail
  exit 1
fi
