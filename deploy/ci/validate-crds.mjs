#!/usr/bin/env node
// Validates the chart's Prometheus Operator objects (ServiceMonitor, PrometheusRule) against the
// upstream CRD schemas shipped in the npm package @kubernetes-models/prometheus-operator, offline
// (kubernetes-validate only knows the built-in kinds).
//
//   node validate-crds.mjs NODE_MODULES_DIR < docs.json     (a JSON array of objects)
//
// Prints one line per object; exits 1 if any is invalid, 2 if the package is missing.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: validate-crds.mjs NODE_MODULES_DIR < docs.json");
  process.exit(2);
}
const pkg = path.resolve(modules, "@kubernetes-models/prometheus-operator");
const load = async (kind) =>
  (await import(pathToFileURL(path.join(pkg, "monitoring.coreos.com/v1", `${kind}.js`)).href))[kind];
let models;
try {
  models = {
    "monitoring.coreos.com/v1/ServiceMonitor": await load("ServiceMonitor"),
    "monitoring.coreos.com/v1/PrometheusRule": await load("PrometheusRule"),
  };
} catch (e) {
  console.error(`validate-crds: @kubernetes-models/prometheus-operator not usable under ${modules}: ${e.message}`);
  process.exit(2);
}

const docs = JSON.parse(fs.readFileSync(0, "utf8"));
let bad = 0;
let checked = 0;
for (const doc of docs) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const Model = models[key];
  if (!Model) continue;
  checked++;
  try {
    new Model(doc).validate();
    console.log(`  ok   ${doc.kind}/${doc.metadata.name} valid against the ${key} CRD schema`);
  } catch (e) {
    bad++;
    console.log(`  FAIL ${doc.kind}/${doc.metadata.name}: ${e.message}`);
  }
}
console.log(`  ${checked} Prometheus Operator object(s) checked, ${bad} invalid`);
process.exit(bad ? 1 : 0);
