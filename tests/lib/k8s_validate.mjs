// Validates Kubernetes manifests offline against the API schema bundled in
// the npm package kubernetes-models (each object through its model's
// validate(): types, required fields, enums, unknown fields where the schema
// forbids them). Usage: node k8s_validate.mjs MODULES_DIR FILE.yaml...
// Prints one line per object; exit 1 when one is invalid or of an unknown kind.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, ...files] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const yaml = require("js-yaml");
const root = path.dirname(require.resolve("kubernetes-models/package.json"));

async function modelFor(apiVersion, kind) {
  // "apps/v1" -> apps/v1, "v1" -> v1, "policy/v1" -> policy/v1
  const file = path.join(root, apiVersion, kind + ".js");
  try {
    const m = await import(pathToFileURL(file).href);
    return m[kind];
  } catch (e) {
    return null;
  }
}

let bad = 0, n = 0;
for (const f of files) {
  for (const doc of yaml.loadAll(readFileSync(f, "utf8"))) {
    if (!doc) continue;
    n++;
    const where = `${path.basename(f)}: ${doc.kind}/${doc.metadata && doc.metadata.name}`;
    if (doc.apiVersion === "kustomize.config.k8s.io/v1beta1") {
      // not an API object: check what kubectl -k needs
      const ok = doc.kind === "Kustomization" && Array.isArray(doc.resources) && doc.resources.length > 0;
      console.log(`${ok ? "ok" : "INVALID"} ${where}`);
      if (!ok) bad++;
      continue;
    }
    const Model = await modelFor(doc.apiVersion, doc.kind);
    if (!Model) {
      console.log(`UNKNOWN ${where} (apiVersion ${doc.apiVersion})`);
      bad++;
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`ok ${where}`);
    } catch (e) {
      bad++;
      console.log(`INVALID ${where}: ${e.message}`);
    }
  }
}
console.log(`${n} objects, ${bad} invalid`);
process.exit(bad ? 1 : 0);
