// Validates every manifest in istio/base/ against Istio's WasmPlugin CRD schema (@kubernetes-models/istio),
// plus the rules the schema cannot express. Run by `make istio-check` (part of `make test`).
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { parseAllDocuments } from "yaml";
import fs from "node:fs";
import path from "node:path";

const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "base");

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
  if (missed.length > 0) {
    console.error(`istio-check: the validator missed broken ${missed.join(", ")}: ${found.join("; ")}`);
    process.exit(1);
  }
}

let failed = false;
let checked = 0;
let first;
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort()) {
  const docs = parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8"));
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      console.error(`istio/base/${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
      failed = true;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const name = `istio/base/${file} (${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"})`;
    if (obj.apiVersion !== "extensions.istio.io/v1alpha1" || obj.kind !== "WasmPlugin") {
      console.error(`${name}: expected an extensions.istio.io/v1alpha1 WasmPlugin`);
      failed = true;
      continue;
    }
    const found = problems(obj);
    for (const p of found) console.error(`${name}: ${p}`);
    failed ||= found.length > 0;
    first ??= obj;
    checked += 1;
  }
}
if (checked === 0) {
  console.error("istio-check: no WasmPlugin manifests found");
  process.exit(1);
}
selfTest(first);
if (failed) process.exit(1);
console.log(`istio-check: ${checked} WasmPlugin manifests match Istio's CRD schema`);
