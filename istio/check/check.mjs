// Validates WasmPlugin manifests against Istio's WasmPlugin CRD schema (@kubernetes-models/istio), plus the
// rules the schema cannot express. Run by `make istio-check` (part of `make test`).
//
//   node check.mjs                  every manifest in istio/base/ (each document must be a WasmPlugin)
//   node check.mjs FILE|- ...       multi-document YAML files, `-` for stdin (`kubectl kustomize DIR | node
//                                   check.mjs -`): each must hold at least one WasmPlugin; the other
//                                   documents are checked against their own schemas (kubernetes-models for
//                                   the built-in kinds, @kubernetes-models/istio for Istio's), and a kind
//                                   with no schema here is an error, so nothing passes unchecked.
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { VirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Service } from "kubernetes-models/v1/Service";
import { parseAllDocuments } from "yaml";
import fs from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);

/** Problems with one WasmPlugin object; empty when it is valid. */
function problems(obj) {
  const found = [];
  try {
    new WasmPlugin(obj).validate();
  } catch (e) {
    found.push(e.message);
  }
  const spec = obj.spec ?? {};
  if (spec.selector && spec.targetRefs) found.push("spec: selector and targetRefs exclude each other");
  if (!spec.url) found.push("spec.url is required");
  if (spec.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(spec.sha256)) {
    found.push("spec.sha256 must be 64 lower-case hex digits");
  }
  if (!spec.pluginName) found.push("spec.pluginName: the filters prefix their shared data with it");
  if (spec.pluginConfig !== undefined && (typeof spec.pluginConfig !== "object" || Array.isArray(spec.pluginConfig))) {
    found.push("spec.pluginConfig must be an object");
  }
  return found;
}

// The other kinds the shipped kustomizations may render (the demo's), by apiVersion and kind.
const models = {
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "networking.istio.io/v1/DestinationRule": DestinationRule,
  "networking.istio.io/v1/VirtualService": VirtualService,
};

/** Problems with any other object; empty when it is valid. */
function otherProblems(obj) {
  const Model = models[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) return [`no schema here for ${obj.apiVersion} ${obj.kind}: add it to check.mjs`];
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    return [e.message];
  }
}

/** The validator must catch a broken manifest, or passing means nothing. */
function selfTest(good) {
  const broken = structuredClone(good);
  broken.spec.phase = "LAST";
  broken.spec.failStrategy = "FAIL_SOMETIMES";
  broken.spec.selector = { matchLabels: { app: "x" } };
  broken.spec.targetRefs = [{ kind: "Service", name: "x" }];
  const found = problems(broken);
  const expected = ["phase", "failStrategy", "targetRefs"];
  const missed = expected.filter((word) => !found.some((p) => p.includes(word)));
  const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" }, spec: { replicas: "one" } };
  if (otherProblems(deployment).length === 0) missed.push("a Deployment's replicas");
  if (missed.length > 0) {
    console.error(`istio-check: the validator missed broken ${missed.join(", ")}: ${found.join("; ")}`);
    process.exit(1);
  }
}

/** The inputs: [label, text, onlyWasmPlugins]. */
function inputs(args) {
  if (args.length === 0) {
    const dir = path.resolve(here, "..", "base");
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
      .sort()
      .map((f) => [`istio/base/${f}`, fs.readFileSync(path.join(dir, f), "utf8"), true]);
  }
  return args.map((a) => (a === "-" ? ["stdin", fs.readFileSync(0, "utf8"), false] : [a, fs.readFileSync(a, "utf8"), false]));
}

let failed = false;
let checked = 0;
let others = 0;
let first;
for (const [label, text, onlyWasmPlugins] of inputs(process.argv.slice(2))) {
  let plugins = 0;
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      console.error(`${label}: ${doc.errors.map((e) => e.message).join("; ")}`);
      failed = true;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const name = `${label} (${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"})`;
    const isPlugin = obj.apiVersion === "extensions.istio.io/v1alpha1" && obj.kind === "WasmPlugin";
    if (!isPlugin && onlyWasmPlugins) {
      console.error(`${name}: expected an extensions.istio.io/v1alpha1 WasmPlugin`);
      failed = true;
      continue;
    }
    const found = isPlugin ? problems(obj) : otherProblems(obj);
    for (const p of found) console.error(`${name}: ${p}`);
    failed ||= found.length > 0;
    if (isPlugin) {
      first ??= obj;
      plugins += 1;
    } else {
      others += 1;
    }
  }
  if (plugins === 0 && !onlyWasmPlugins) {
    console.error(`${label}: no WasmPlugin in it`);
    failed = true;
  }
  checked += plugins;
}
if (checked === 0) {
  console.error("istio-check: no WasmPlugin manifests found");
  process.exit(1);
}
selfTest(first);
if (failed) process.exit(1);
const rest = others > 0 ? `, ${others} other objects match theirs` : "";
console.log(`istio-check: ${checked} WasmPlugin manifests match Istio's CRD schema${rest}`);
