// Checks that the kustomize overlays and the demo do what they say, on `kubectl kustomize` output (the
// schema check is check.mjs). Run by `make istio-check` with KUBECTL naming the kubectl binary.
//
// - release: sets `url` (and `sha256` when given) on all three plugins, and every other overlay and the
//   demo take these values from it: a copy of istio/ with other values in the release file must render
//   them everywhere.
// - namespace: puts every object in its `namespace:`, and `kustomize edit set namespace` (the same line
//   changed in a copy) moves them all.
// - workload: every plugin selects pods by `selector.matchLabels`, under prefixed names that do not clash
//   with the namespace-wide ones.
// - demo: what the walkthrough relies on (namespace with injection, plugins for the whole namespace,
//   frontend calling checkout's service port, the DestinationRule's pool limits and outlier detection).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse, parseAllDocuments, stringify } from "yaml";

const kubectl = process.env.KUBECTL || "kubectl";
const istio = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const PLUGINS = ["circuit-breaker", "fallback", "trace-context"];

function render(dir) {
  const out = execFileSync(kubectl, ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return parseAllDocuments(out).map((d) => d.toJS()).filter((o) => o !== null);
}

const plugins = (objs) => objs.filter((o) => o.kind === "WasmPlugin");
const byKind = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);

/** The url and sha256 the release overlay sets, by plugin name, read from its patches. */
function releaseValues(kustomizationFile) {
  const k = parse(fs.readFileSync(kustomizationFile, "utf8"));
  const values = {};
  for (const p of k.patches ?? []) {
    const patch = parse(p.patch);
    values[patch.metadata.name] = { url: patch.spec?.url, sha256: patch.spec?.sha256 };
  }
  return values;
}

/** Problems if the rendered plugins do not carry the release values. */
function checkRelease(objs, values, prefix = "") {
  const found = [];
  const names = Object.keys(values).sort();
  if (names.join() !== PLUGINS.join()) found.push(`the release patches name ${names.join(", ")}, not ${PLUGINS.join(", ")}`);
  for (const name of PLUGINS) {
    const plugin = byKind(objs, "WasmPlugin", prefix + name);
    const want = values[name] ?? {};
    if (!plugin) found.push(`no WasmPlugin ${prefix + name}`);
    else if (!want.url || plugin.spec.url !== want.url) found.push(`${prefix + name}: url ${plugin.spec.url}, want ${want.url}`);
    else if (plugin.spec.sha256 !== want.sha256) found.push(`${prefix + name}: sha256 ${plugin.spec.sha256}, want ${want.sha256}`);
  }
  return found;
}

/** Problems if any object is outside `namespace` (Namespace objects: named so). */
function checkNamespace(objs, namespace) {
  const found = [];
  if (!namespace) found.push("no namespace set");
  for (const o of objs) {
    const ns = o.kind === "Namespace" ? o.metadata.name : o.metadata?.namespace;
    if (ns !== namespace) found.push(`${o.kind} ${o.metadata?.name}: namespace ${ns}, want ${namespace}`);
  }
  return found;
}

/** Problems if a plugin applies to more than the pods its selector names, or its name clashes. */
function checkWorkload(objs, prefix, namespaceWide) {
  const found = [];
  if (plugins(objs).length !== PLUGINS.length) found.push(`${plugins(objs).length} WasmPlugins, want ${PLUGINS.length}`);
  for (const p of plugins(objs)) {
    const labels = p.spec.selector?.matchLabels ?? {};
    if (Object.keys(labels).length === 0) found.push(`${p.metadata.name}: no selector.matchLabels (it would apply to every pod)`);
    if (p.spec.targetRefs) found.push(`${p.metadata.name}: targetRefs set next to the selector`);
    if (!prefix || !p.metadata.name.startsWith(prefix)) found.push(`${p.metadata.name}: not prefixed with ${prefix}`);
    if (namespaceWide.includes(p.metadata.name)) found.push(`${p.metadata.name}: same name as a namespace-wide plugin`);
    if (!PLUGINS.includes(p.spec.pluginName)) found.push(`${p.metadata.name}: pluginName ${p.spec.pluginName} changed`);
  }
  return found;
}

/** Problems with what the demo walkthrough relies on. */
function checkDemo(objs) {
  const found = [];
  const ns = byKind(objs, "Namespace", "mesh-demo");
  if (ns?.metadata.labels?.["istio-injection"] !== "enabled") found.push("Namespace mesh-demo without istio-injection=enabled");
  found.push(...checkNamespace(objs, "mesh-demo"));
  if (plugins(objs).length !== PLUGINS.length) found.push(`${plugins(objs).length} WasmPlugins, want ${PLUGINS.length}`);
  for (const p of plugins(objs)) {
    if (p.spec.selector || p.spec.targetRefs) found.push(`${p.metadata.name}: limited to some pods; the demo uses the whole namespace`);
  }
  const checkout = byKind(objs, "Service", "checkout");
  const port = checkout?.spec.ports?.[0];
  if (!port?.name?.startsWith("http")) found.push("Service checkout: its port needs a name starting with http (Istio's protocol selection)");
  const frontend = byKind(objs, "Deployment", "frontend");
  const args = frontend?.spec.template.spec.containers[0].args ?? [];
  const proxy = args[args.indexOf("-M") + 1] ?? "";
  if (!args.includes("-M") || proxy.split(" ")[1] !== `http://checkout:${port?.port}`) {
    found.push(`Deployment frontend: -M "${proxy}" does not proxy to the checkout Service port ${port?.port}`);
  }
  const rule = byKind(objs, "DestinationRule", "checkout");
  if (rule?.spec.host !== "checkout") found.push("DestinationRule checkout: host is not checkout");
  if (!rule?.spec.trafficPolicy?.connectionPool) found.push("DestinationRule checkout: no connectionPool");
  if (!rule?.spec.trafficPolicy?.outlierDetection) found.push("DestinationRule checkout: no outlierDetection");
  return found;
}

let failed = false;
function report(what, found) {
  for (const p of found) console.error(`istio-check: ${what}: ${p}`);
  failed ||= found.length > 0;
}

// The shipped files as they are.
const release = render(path.join(istio, "overlays/release"));
const namespaceK = parse(fs.readFileSync(path.join(istio, "overlays/namespace/kustomization.yaml"), "utf8"));
const workloadK = parse(fs.readFileSync(path.join(istio, "overlays/workload/kustomization.yaml"), "utf8"));
const namespaceObjs = render(path.join(istio, "overlays/namespace"));
const workloadObjs = render(path.join(istio, "overlays/workload"));
const demo = render(path.join(istio, "demo"));
const values = releaseValues(path.join(istio, "overlays/release/kustomization.yaml"));
report("overlays/release", checkRelease(release, values));
report("overlays/namespace", [...checkNamespace(namespaceObjs, namespaceK.namespace), ...checkRelease(namespaceObjs, values)]);
report("overlays/workload", [
  ...checkWorkload(workloadObjs, workloadK.namePrefix, plugins(release).map((p) => p.metadata.name)),
  ...checkNamespace(workloadObjs, workloadK.namespace),
  ...checkRelease(workloadObjs, values, workloadK.namePrefix),
]);
report("demo", [...checkDemo(demo), ...checkRelease(demo, values)]);

// A copy of istio/ with other release values and another namespace, as the image tool and
// `kustomize edit set namespace` would leave it: every overlay and the demo must follow.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "istio-check-"));
try {
  fs.cpSync(istio, path.join(tmp, "istio"), { recursive: true, filter: (src) => !src.includes("node_modules") });
  const releaseFile = path.join(tmp, "istio/overlays/release/kustomization.yaml");
  const k = parse(fs.readFileSync(releaseFile, "utf8"));
  const changed = {};
  k.patches = k.patches.map((p) => {
    const patch = parse(p.patch);
    const name = patch.metadata.name;
    changed[name] = { url: `oci://registry.check.invalid/other/${name}:9.9.9`, sha256: name.length.toString(16).padStart(64, "0") };
    patch.spec = { ...patch.spec, ...changed[name] };
    return { ...p, patch: stringify(patch) };
  });
  fs.writeFileSync(releaseFile, stringify(k));
  const nsFile = path.join(tmp, "istio/overlays/namespace/kustomization.yaml");
  fs.writeFileSync(nsFile, stringify({ ...parse(fs.readFileSync(nsFile, "utf8")), namespace: "check-ns" }));
  const at = (dir) => render(path.join(tmp, "istio", dir));
  report("release values reach overlays/release", checkRelease(at("overlays/release"), changed));
  const movedNs = at("overlays/namespace");
  report("release values reach overlays/namespace", [...checkRelease(movedNs, changed), ...checkNamespace(movedNs, "check-ns")]);
  report("release values reach overlays/workload", checkRelease(at("overlays/workload"), changed, workloadK.namePrefix));
  report("release values reach demo", checkRelease(at("demo"), changed));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

// The checks must be able to fail: the base has no selectors, no namespace, no changed values.
const base = render(path.join(istio, "base"));
const missed = [];
if (checkWorkload(release, "frontend-", []).length === 0) missed.push("the release overlay as a workload overlay");
if (checkNamespace(base, "my-namespace").length === 0) missed.push("the base without a namespace");
if (checkRelease(base, { ...values, fallback: { url: "oci://elsewhere/fallback:1" } }).length === 0) missed.push("a url the base does not carry");
if (checkDemo(namespaceObjs).length === 0) missed.push("the namespace overlay as the demo");
if (missed.length > 0) report("self-test: the checks missed", missed);

if (failed) process.exit(1);
console.log(
  `istio-check: overlays release, namespace (${namespaceK.namespace}), workload (${workloadK.namePrefix}*, by selector) and the demo ` +
    "do what they say; release values and the namespace propagate",
);
