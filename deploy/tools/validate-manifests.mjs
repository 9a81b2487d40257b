// Offline validation of rendered Kubernetes manifests for openelm-serve.
//
//   node validate-manifests.mjs [--contract metrics-contract.json] FILE.yaml...
//
// Each FILE is one `kubectl kustomize` output (a multi-document YAML stream).
// Three layers of checks, all offline:
//
// 1. Schema: every object is validated against the Kubernetes API schemas
//    shipped (pre-compiled) in the pinned npm package kubernetes-models, and
//    the CRDs we use against @kubernetes-models/prometheus-operator
//    (ServiceMonitor, PrometheusRule) and @kubernetes-models/gateway-api
//    (Gateway, GRPCRoute). Versions are pinned in package-lock.json.
// 2. Strict fields: those schemas do not reject unknown fields, so the object
//    is wrapped in a Proxy that records which keys the validator looked up.
//    A key present in an object whose other keys were looked up one by one,
//    but never itself, is reported as unknown (a typo like `limitz`). Objects
//    the validator enumerates (maps such as labels) or never inspects
//    (free-form fields) are not judged.
// 3. Project rules: selectors match the pods, probes and drain timing fit
//    together, probes can speak the gRPC port's protocol (exec probes when
//    it is TLS), files named by server flags and probes are mounted from
//    Secrets, the HPA and prometheus-adapter use contract metric names, and
//    the Envoy example points at an existing Service.
//
// Exits 0 when everything passes, 1 when any check fails, 2 on usage errors.

import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";

const errors = [];
function fail(where, message) {
  errors.push(`${where}: ${message}`);
}

// ---------------------------------------------------------------- schemas --

// apiVersion -> module exporting one model class per kind.
function moduleFor(apiVersion) {
  const [group, version] = apiVersion.includes("/")
    ? apiVersion.split("/")
    : ["", apiVersion];
  if (group === "monitoring.coreos.com") {
    return `@kubernetes-models/prometheus-operator/${group}/${version}`;
  }
  if (group === "gateway.networking.k8s.io") {
    return `@kubernetes-models/gateway-api/${group}/${version}`;
  }
  return group === ""
    ? `kubernetes-models/${version}`
    : `kubernetes-models/${group}/${version}`;
}

const moduleCache = new Map();
async function modelClass(apiVersion, kind) {
  const name = moduleFor(apiVersion);
  if (!moduleCache.has(name)) {
    moduleCache.set(name, await import(name).catch(() => null));
  }
  const mod = moduleCache.get(name);
  return mod && typeof mod[kind] === "function" ? mod[kind] : null;
}

// Wraps `value` so that every key lookup is recorded in `records`.
function track(value, where, records) {
  if (value === null || typeof value !== "object") return value;
  const entry = { where, target: value, looked: new Set(), enumerated: false };
  records.push(entry);
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === "string") entry.looked.add(key);
      const v = Reflect.get(target, key, receiver);
      if (typeof key === "string" && Object.hasOwn(target, key) &&
          v !== null && typeof v === "object") {
        if (!children.has(key)) {
          children.set(key, track(v, `${where}/${key}`, records));
        }
        return children.get(key);
      }
      return v;
    },
    has(target, key) {
      if (typeof key === "string") entry.looked.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      entry.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

async function validateSchema(obj, where) {
  const Model = await modelClass(obj.apiVersion, obj.kind);
  if (!Model) {
    fail(where, `no schema for ${obj.apiVersion} ${obj.kind} (unknown or removed API)`);
    return;
  }
  const records = [];
  const proxied = track(obj, "", records);
  try {
    // The model's validate() runs the compiled schema on `this`.
    Model.prototype.validate.call(proxied);
  } catch (e) {
    fail(where, `schema: ${String(e.message).replace(/\n/g, "; ")}`);
  }
  for (const r of records) {
    if (Array.isArray(r.target) || r.enumerated || r.looked.size === 0) continue;
    for (const key of Object.keys(r.target)) {
      if (!r.looked.has(key)) fail(where, `unknown field ${r.where}/${key}`);
    }
  }
}

// ---------------------------------------------------------- project rules --

function matches(selector, labels) {
  if (!selector) return false;
  const ml = selector.matchLabels ?? {};
  for (const [k, v] of Object.entries(ml)) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, expr.key);
    const val = labels[expr.key];
    if (expr.operator === "In" && !(has && expr.values.includes(val))) return false;
    if (expr.operator === "NotIn" && has && expr.values.includes(val)) return false;
    if (expr.operator === "Exists" && !has) return false;
    if (expr.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

// Abseil duration ("30s", "1m30s", "500ms") -> seconds.
function parseDurationSeconds(text) {
  const unit = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 };
  let total = 0;
  let rest = text.trim();
  if (rest === "0") return 0;
  while (rest.length > 0) {
    const m = /^([0-9]*\.?[0-9]+)(ms|us|ns|h|m|s)/.exec(rest);
    if (!m) return NaN;
    total += Number(m[1]) * unit[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

function parseFlagfile(text) {
  const flags = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^--([A-Za-z0-9_]+)(?:=(.*))?$/.exec(line);
    if (m) flags.set(m[1], m[2] ?? "true");
    else flags.set(`<malformed:${line}>`, "");
  }
  return flags;
}

function checkServerDeployment(dep, objects, where, contract) {
  const spec = dep.spec?.template?.spec ?? {};
  const podLabels = dep.spec?.template?.metadata?.labels ?? {};
  if (!matches(dep.spec?.selector, podLabels)) {
    fail(where, "spec.selector does not match the pod template labels");
  }
  const server = (spec.containers ?? []).find((c) =>
    (c.args ?? c.command ?? []).some((a) => String(a).endsWith("openelm_server")));
  if (!server) {
    fail(where, "no container runs openelm_server");
    return;
  }
  const at = `${where} container ${server.name}`;

  // Guaranteed QoS with integer CPUs (static CPU manager eligibility).
  const req = server.resources?.requests ?? {};
  const lim = server.resources?.limits ?? {};
  for (const r of ["cpu", "memory"]) {
    if (req[r] === undefined || lim[r] === undefined) {
      fail(at, `resources.requests.${r} and limits.${r} are required`);
    } else if (String(req[r]) !== String(lim[r])) {
      fail(at, `requests.${r} (${req[r]}) != limits.${r} (${lim[r]}): not Guaranteed QoS`);
    }
  }
  if (lim.cpu !== undefined && !/^[1-9][0-9]*$/.test(String(lim.cpu))) {
    fail(at, `limits.cpu ${lim.cpu} is not a whole number of CPUs`);
  }

  // Probes: health checks on the gRPC port (see checkProbes, after the flags).
  const grpcPort = (server.ports ?? []).find((p) => p.name === "grpc")?.containerPort;
  if (grpcPort === undefined) fail(at, "no container port named grpc");
  const window = (p) => (p?.periodSeconds ?? 10) * (p?.failureThreshold ?? 3);
  if (server.livenessProbe && window(server.livenessProbe) < 60) {
    fail(at, `livenessProbe fails after ${window(server.livenessProbe)} s; allow >= 60 s`);
  }
  if (server.startupProbe && window(server.startupProbe) < 300) {
    fail(at, `startupProbe allows only ${window(server.startupProbe)} s for model load; allow >= 300 s`);
  }

  // Drain timing: grace period >= preStop sleep + --drain_timeout + 5 s.
  const flagVolume = (spec.volumes ?? []).find((v) =>
    (server.volumeMounts ?? []).some((m) => m.name === v.name && m.mountPath === "/etc/openelm"));
  const cmName = flagVolume?.configMap?.name;
  const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata?.name === cmName);
  if (!cm || typeof cm.data?.["server.flags"] !== "string") {
    fail(at, `flag ConfigMap ${cmName} with server.flags not found in the same build`);
    return;
  }
  const flags = parseFlagfile(cm.data["server.flags"]);
  for (const [name] of flags) {
    if (name.startsWith("<malformed:")) fail(`ConfigMap ${cmName}`, `bad flag line ${name}`);
  }
  if (flags.get("host") !== "0.0.0.0") fail(`ConfigMap ${cmName}`, "--host must be 0.0.0.0 in a pod");
  if (Number(flags.get("port")) !== grpcPort) {
    fail(`ConfigMap ${cmName}`, `--port ${flags.get("port")} != container grpc port ${grpcPort}`);
  }
  const metricsPort = (server.ports ?? []).find((p) => p.name === "metrics")?.containerPort;
  if (Number(flags.get("metrics_port")) !== metricsPort) {
    fail(`ConfigMap ${cmName}`, `--metrics_port ${flags.get("metrics_port")} != container metrics port ${metricsPort}`);
  }
  checkProbes(server, flags, grpcPort, at);
  checkMountedFiles(server, spec, objects, flags, at, `ConfigMap ${cmName}`);
  const drain = parseDurationSeconds(flags.get("drain_timeout") ?? "30s");
  if (Number.isNaN(drain)) fail(`ConfigMap ${cmName}`, "--drain_timeout is not an Abseil duration");
  const preStop = server.lifecycle?.preStop?.exec?.command ?? [];
  const sleep = preStop[0] === "sleep" ? Number(preStop[1]) : 0;
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  if (grace < sleep + drain + 5) {
    fail(where, `terminationGracePeriodSeconds ${grace} < preStop ${sleep} s + drain_timeout ${drain} s + 5 s`);
  }

  // Everything of this app that selects pods must select the server pods.
  const app = podLabels["app.kubernetes.io/name"];
  for (const o of objects) {
    const ow = `${o.kind} ${o.metadata?.name}`;
    if (o.kind === "GRPCRoute") {
      for (const rule of o.spec?.rules ?? []) {
        for (const ref of rule.backendRefs ?? []) {
          const svc = objects.find((s) => s.kind === "Service" && s.metadata?.name === ref.name);
          if (!svc || !(svc.spec?.ports ?? []).some((p) => p.port === ref.port)) {
            fail(ow, `backendRef ${ref.name}:${ref.port} is not a Service port of this build`);
          }
        }
      }
    }
    if (o.metadata?.labels?.["app.kubernetes.io/name"] !== app) continue;
    if (o.kind === "Service" && !matches({ matchLabels: o.spec?.selector }, podLabels)) {
      fail(ow, "selector does not match the server pods");
    }
    if (o.kind === "Service") {
      for (const p of o.spec?.ports ?? []) {
        if (typeof p.targetPort === "string" &&
            !(server.ports ?? []).some((cp) => cp.name === p.targetPort)) {
          fail(ow, `targetPort ${p.targetPort} is not a container port name`);
        }
      }
    }
    if ((o.kind === "PodDisruptionBudget" || o.kind === "NetworkPolicy") &&
        !matches(o.kind === "NetworkPolicy" ? o.spec?.podSelector : o.spec?.selector, podLabels)) {
      fail(ow, "selector does not match the server pods");
    }
    if (o.kind === "HorizontalPodAutoscaler") {
      const ref = o.spec?.scaleTargetRef ?? {};
      if (ref.kind !== "Deployment" || ref.name !== dep.metadata?.name) {
        fail(ow, `scaleTargetRef ${ref.kind}/${ref.name} is not the server Deployment`);
      } else if (dep.spec?.replicas !== undefined) {
        fail(where, "sets spec.replicas although an HPA scales it (apply would reset the count)");
      }
      for (const m of o.spec?.metrics ?? []) {
        const name = m.pods?.metric?.name ?? m.object?.metric?.name ?? m.external?.metric?.name;
        if (name !== undefined && !contract.all.has(name)) {
          fail(ow, `metric ${name} is not in the metrics contract`);
        }
      }
    }
    if (o.kind === "ServiceMonitor") {
      const svc = objects.filter((s) => s.kind === "Service" && matches(o.spec?.selector, s.metadata?.labels ?? {}));
      if (svc.length === 0) fail(ow, "selects no Service");
      for (const ep of o.spec?.endpoints ?? []) {
        if (!svc.some((s) => (s.spec?.ports ?? []).some((p) => p.name === ep.port))) {
          fail(ow, `no selected Service has a port named ${ep.port}`);
        }
      }
    }
  }
}

// Probes: native gRPC probes (plaintext only), or, when the gRPC port speaks
// TLS, exec probes that run `openelm health` over TLS on loopback.
function checkProbes(server, flags, grpcPort, at) {
  const tls = flags.has("tls_cert");
  for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const probe = server[kind];
    if (probe?.grpc) {
      if (tls) fail(at, `${kind}: native grpc probes cannot speak TLS, but --tls_cert is set`);
      if (probe.grpc.port !== grpcPort) fail(at, `${kind} port ${probe.grpc.port} != grpc port ${grpcPort}`);
      if (kind === "readinessProbe" && probe.grpc.service !== "openelm.v1.InferenceService") {
        fail(at, "readinessProbe must ask for service openelm.v1.InferenceService");
      }
      continue;
    }
    const cmd = (probe?.exec?.command ?? []).map(String);
    if (!(cmd[0]?.endsWith("/openelm") || cmd[0] === "openelm") || cmd[1] !== "health") {
      fail(at, `${kind} must be a grpc probe or an exec probe running \`openelm health\``);
      continue;
    }
    const arg = (name) => cmd.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
    const target = arg("target");
    if (target !== `127.0.0.1:${grpcPort}` && target !== `localhost:${grpcPort}`) {
      fail(at, `${kind}: --target=${target} is not the loopback gRPC port ${grpcPort}`);
    }
    if (tls && !arg("tls_ca")) fail(at, `${kind}: the gRPC port speaks TLS; pass --tls_ca`);
    if (flags.has("tls_client_ca") && !(arg("tls_cert") && arg("tls_key"))) {
      fail(at, `${kind}: mutual TLS is on; pass --tls_cert and --tls_key`);
    }
    if (!tls && arg("tls_ca")) fail(at, `${kind}: passes --tls_ca but the server has no --tls_cert`);
    const service = arg("service") ?? "";
    if (kind === "readinessProbe" && service !== "openelm.v1.InferenceService") {
      fail(at, "readinessProbe must pass --service=openelm.v1.InferenceService");
    }
    const timeout = parseDurationSeconds(arg("timeout") ?? "5s");
    if (!(timeout < (probe.timeoutSeconds ?? 1))) {
      fail(at, `${kind}: --timeout must be shorter than timeoutSeconds ${probe.timeoutSeconds ?? 1}`);
    }
  }
}

// Every file a server flag or a probe names must come from a volume mounted
// in the server container: a Secret or ConfigMap key that exists when the
// object is part of the build, from a volume that is not optional.
function checkMountedFiles(server, spec, objects, flags, at, flagsWhere) {
  const refs = [];
  for (const name of ["tenants_config", "tls_cert", "tls_key", "tls_client_ca"]) {
    if (flags.has(name)) refs.push([`${flagsWhere} --${name}`, flags.get(name), name]);
  }
  for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    for (const a of (server[kind]?.exec?.command ?? []).map(String)) {
      const m = /^--(tls_ca|tls_cert|tls_key)=(.+)$/.exec(a);
      if (m) refs.push([`${at} ${kind} --${m[1]}`, m[2], m[1]]);
    }
  }
  if (flags.has("tls_cert") !== flags.has("tls_key")) fail(flagsWhere, "--tls_cert and --tls_key go together");
  if (flags.has("tls_client_ca") && !flags.has("tls_cert")) fail(flagsWhere, "--tls_client_ca needs --tls_cert");
  for (const [where, file, flag] of refs) {
    if (!file.startsWith("/")) {
      fail(where, `${file} is not an absolute path`);
      continue;
    }
    const mount = (server.volumeMounts ?? [])
      .filter((m) => file === m.mountPath || file.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    if (!mount) {
      fail(where, `${file} is on no volume mounted in container ${server.name}`);
      continue;
    }
    const volume = (spec.volumes ?? []).find((v) => v.name === mount.name);
    const source = volume?.secret ?? volume?.configMap;
    if (!source) {
      fail(where, `${file}: volume ${mount.name} is not a Secret or ConfigMap`);
      continue;
    }
    if (mount.subPath && flag === "tenants_config") {
      fail(where, `${file}: subPath mounts never see Secret updates, so tenants reloads would not happen`);
    }
    if (source.optional === true) {
      fail(where, `${file}: volume ${mount.name} is optional; the server would fail to start without it`);
    }
    const rel = mount.subPath ?? file.slice(mount.mountPath.replace(/\/$/, "").length + 1);
    let key = rel;
    if (source.items) {
      const item = source.items.find((i) => i.path === rel);
      if (!item) {
        fail(where, `${file}: volume ${mount.name} projects only ${source.items.map((i) => i.path).join(", ")}`);
        continue;
      }
      key = item.key;
    }
    const kind = volume.secret ? "Secret" : "ConfigMap";
    const name = volume.secret ? source.secretName : source.name;
    const obj = objects.find((o) => o.kind === kind && o.metadata?.name === name);
    if (!obj && !source.items) {
      fail(where, `${file}: ${kind} ${name} is created outside this build; list its keys in volume ${mount.name}'s items`);
    } else if (obj && !Object.hasOwn({ ...(obj.data ?? {}), ...(obj.stringData ?? {}) }, key)) {
      fail(where, `${file}: ${kind} ${name} in this build has no key ${key}`);
    }
  }
}

function metricNamesIn(text) {
  return [...text.matchAll(/\bopenelm_[a-z0-9_]+/g)].map((m) => m[0]);
}

function isContractSeries(name, contract) {
  if (contract.all.has(name)) return true;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return base !== name && contract.histograms.has(base);
}

function checkEmbeddedConfigs(objects, contract) {
  for (const o of objects) {
    if (o.kind !== "ConfigMap") continue;
    const ow = `ConfigMap ${o.metadata?.name}`;
    for (const [key, text] of Object.entries(o.data ?? {})) {
      if (!/\.ya?ml$/.test(key)) continue;
      let doc;
      try {
        doc = yaml.load(text);
      } catch (e) {
        fail(ow, `${key} is not valid YAML: ${e.message.split("\n")[0]}`);
        continue;
      }
      // prometheus-adapter rules: every series must be a contract metric.
      if (Array.isArray(doc?.rules)) {
        for (const rule of doc.rules) {
          if (typeof rule.seriesQuery !== "string" || typeof rule.metricsQuery !== "string") {
            fail(ow, `${key}: adapter rule needs seriesQuery and metricsQuery`);
            continue;
          }
          for (const n of metricNamesIn(rule.seriesQuery)) {
            if (!isContractSeries(n, contract)) fail(ow, `${key}: ${n} is not in the metrics contract`);
          }
          if (!rule.metricsQuery.includes("<<.Series>>")) fail(ow, `${key}: metricsQuery must use <<.Series>>`);
        }
      }
      // Envoy bootstrap: upstream addresses must name Services of this build.
      for (const cluster of doc?.static_resources?.clusters ?? []) {
        for (const group of cluster.load_assignment?.endpoints ?? []) {
          for (const lb of group.lb_endpoints ?? []) {
            const addr = lb.endpoint?.address?.socket_address;
            const host = String(addr?.address ?? "");
            const svc = host.split(".")[0];
            const ns = host.split(".")[1];
            const target = objects.find((s) => s.kind === "Service" && s.metadata?.name === svc);
            if (!target) {
              fail(ow, `${key}: envoy cluster ${cluster.name} points at ${host}, no such Service`);
            } else if (ns && target.metadata?.namespace && ns !== target.metadata.namespace) {
              fail(ow, `${key}: envoy cluster ${cluster.name} uses namespace ${ns}, Service is in ${target.metadata.namespace}`);
            } else if (!(target.spec?.ports ?? []).some((p) => p.port === addr?.port_value)) {
              fail(ow, `${key}: envoy cluster ${cluster.name} port ${addr?.port_value} not on Service ${svc}`);
            }
          }
        }
      }
    }
  }
}

// -------------------------------------------------------------------- main --

async function main() {
  const args = process.argv.slice(2);
  let contractPath = path.join(path.dirname(new URL(import.meta.url).pathname), "metrics-contract.json");
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--contract") contractPath = args[++i];
    else files.push(args[i]);
  }
  if (files.length === 0) {
    console.error("usage: validate-manifests.mjs [--contract FILE] MANIFEST.yaml...");
    process.exit(2);
  }
  const c = JSON.parse(fs.readFileSync(contractPath, "utf8"));
  const contract = {
    all: new Set([...c.gauges, ...c.histograms, ...c.counters]),
    histograms: new Set(c.histograms),
  };

  let count = 0;
  for (const file of files) {
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d !== null && d !== undefined);
    } catch (e) {
      fail(file, `not valid YAML: ${e.message.split("\n")[0]}`);
      continue;
    }
    if (docs.length === 0) fail(file, "no objects");
    const seen = new Set();
    for (const obj of docs) {
      const where = `${path.basename(file)}: ${obj?.kind} ${obj?.metadata?.namespace ?? ""}/${obj?.metadata?.name}`;
      if (typeof obj?.apiVersion !== "string" || typeof obj?.kind !== "string") {
        fail(where, "apiVersion and kind are required");
        continue;
      }
      const id = `${obj.apiVersion}|${obj.kind}|${obj.metadata?.namespace}|${obj.metadata?.name}`;
      if (seen.has(id)) fail(where, "duplicate object");
      seen.add(id);
      await validateSchema(obj, where);
      count++;
    }
    for (const dep of docs.filter((d) => d?.kind === "Deployment" &&
        d.metadata?.labels?.["app.kubernetes.io/component"] === "server")) {
      checkServerDeployment(dep, docs, `${path.basename(file)}: Deployment ${dep.metadata.name}`, contract);
    }
    checkEmbeddedConfigs(docs, contract);
  }

  if (errors.length > 0) {
    for (const e of errors) console.error(`FAIL ${e}`);
    console.error(`validate-manifests: ${errors.length} problem(s) in ${files.length} file(s)`);
    process.exit(1);
  }
  console.log(`validate-manifests: ${count} objects in ${files.length} file(s) OK`);
}

await main();
