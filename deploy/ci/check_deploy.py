#!/usr/bin/env python3
"""Checks behind scripts/check-deploy.sh that no off-the-shelf tool does. Needs PyYAML (the tools
venv has it) and Python 3.11+ (tomllib).

  check_deploy.py manifests RENDERED.yaml...   cross-reference checks of rendered chart output
  check_deploy.py rules RENDERED.yaml OUT.yml  the PrometheusRule groups as a Prometheus rules file
  check_deploy.py alerts-file RENDERED.yaml OUT.yml [--check]
                                               the standalone alerts file for non-Kubernetes
                                               Prometheus (deploy/prometheus/cdcd-alerts.yml);
                                               --check: fail when OUT differs
  check_deploy.py iam DIR                      IAM policy documents: valid, no wildcards
  check_deploy.py docker-context REPO          the Dockerfile's build context (.dockerignore) holds
                                               everything `cargo build -p cdcd` reads
  check_deploy.py toml FILE...                 TOML files parse
  check_deploy.py configs OUTDIR RENDERED.yaml...
                                               write every rendered config.toml to
                                               OUTDIR/<set>--<ConfigMap>.toml
  check_deploy.py crd-json RENDERED.yaml...    the custom resources as one JSON array (for
                                               validate-crds.cjs)

Each prints one line per thing checked and exits 1 on the first kind of failure it finds (after
printing all of them).
"""
import json
import os
import re
import subprocess
import sys
import tomllib

import yaml

FAILURES = []


def ok(msg):
    print(f"  ok   {msg}")


def fail(msg):
    print(f"  FAIL {msg}")
    FAILURES.append(msg)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


# ---------------------------------------------------------------------------------------------
# manifests


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc["spec"], doc["metadata"].get("labels", {}), doc["metadata"].get("annotations", {})
    t = doc["spec"]["template"]
    return t["spec"], t["metadata"].get("labels", {}), doc["metadata"].get("annotations", {})


def walk_floats(value, path=""):
    """Integral floats in a parsed TOML document: numbers that Helm turned into floats."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk_floats(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_floats(v, f"{path}[{i}]")
    elif isinstance(value, float) and value.is_integer():
        yield path


def check_manifests(path):
    docs = load_docs(path)
    print(f"{path}: {len(docs)} objects")
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        ns = d["metadata"].get("namespace")
        if not ns:
            fail(f"{name_of(d)} has no metadata.namespace")
    services = by_kind.get("Service", [])
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    accounts = {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}
    spcs = {d["metadata"]["name"] for d in by_kind.get("SecretProviderClass", [])}
    workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", []) + by_kind.get("Pod", [])
    long_running = [w for w in workloads if w["kind"] != "Pod"]

    for w in by_kind.get("StatefulSet", []):
        n = name_of(w)
        if w["spec"].get("replicas") != 1:
            fail(f"{n}: replicas {w['spec'].get('replicas')} (a capture is a single writer)")
        else:
            ok(f"{n}: single writer (replicas 1)")
        if not any(s["metadata"]["name"] == w["spec"]["serviceName"] for s in services):
            fail(f"{n}: serviceName {w['spec']['serviceName']} is not rendered")

    for w in workloads:
        n = name_of(w)
        spec, labels, annotations = pod_spec(w)
        hook = "helm.sh/hook" in annotations
        if w["kind"] != "Pod" and not subset(w["spec"]["selector"]["matchLabels"], labels):
            fail(f"{n}: selector does not match the pod template labels")
        sa = spec.get("serviceAccountName")
        if sa not in accounts and sa != "default":
            print(f"  note {n}: service account {sa} is not created by the chart (expected to exist)")
        if spec.get("automountServiceAccountToken") is not False:
            fail(f"{n}: automountServiceAccountToken is not false")
        psc = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        if w["kind"] == "StatefulSet":
            for t in w["spec"].get("volumeClaimTemplates", []):
                volumes[t["metadata"]["name"]] = {"persistentVolumeClaim": t["spec"]}
        for c in spec["containers"]:
            cn = f"{n} container {c['name']}"
            sc = c.get("securityContext", {})
            problems = []
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                problems.append("runAsNonRoot")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append("readOnlyRootFilesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append("allowPrivilegeEscalation=false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append("capabilities.drop ALL")
            if (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append("seccompProfile RuntimeDefault")
            if not c.get("resources", {}).get("limits") or not c.get("resources", {}).get("requests"):
                problems.append("resources")
            if problems:
                fail(f"{cn}: missing {', '.join(problems)}")
            else:
                ok(f"{cn}: non-root, read-only root, no privilege escalation, caps dropped, seccomp, resources")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            if not hook:
                want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
                for probe, p in want.items():
                    got = c.get(probe, {}).get("httpGet", {})
                    if got.get("path") != p or got.get("port") not in ports:
                        fail(f"{cn}: {probe} is not GET {p} on a declared port ({got})")
                ok(f"{cn}: probes /healthz (startup, liveness) and /readyz (readiness) on port {ports}")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    fail(f"{cn}: mount {m['name']} has no volume")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            args = c.get("args", [])
            if "--config" in args:
                cfg_path = args[args.index("--config") + 1]
                vol = volumes.get(mounts.get(os.path.dirname(cfg_path), ""), {})
                cm = configmaps.get(vol.get("configMap", {}).get("name"))
                if not cm:
                    fail(f"{cn}: --config {cfg_path} is not a rendered ConfigMap")
                    continue
                text = cm["data"].get(os.path.basename(cfg_path), "")
                try:
                    cfg = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    fail(f"{cn}: {name_of(cm)} config.toml is not TOML: {e}")
                    continue
                floats = list(walk_floats(cfg))
                if floats:
                    fail(f"{cn}: {name_of(cm)} has integral floats (Helm numbers): {floats}")
                listen = cfg.get("metrics", {}).get("listen", "")
                if ports and not listen.endswith(f":{next(iter(ports.values()))}"):
                    fail(f"{cn}: metrics.listen {listen!r} is not the container port {ports}")
                if args[0] in ("run", "check") and not cfg.get("source", {}).get("url"):
                    fail(f"{cn}: no source.url")
                for key in (("source", "password_file"), ("masking", "hmac_key_file")):
                    f = cfg.get(key[0], {}).get(key[1])
                    if f and not any(f.startswith(mp + "/") for mp in mounts):
                        fail(f"{cn}: {'.'.join(key)} {f} is on no mounted volume")
                    elif f:
                        vol = volumes[mounts[os.path.dirname(f)]]
                        if "csi" in vol:
                            spc = vol["csi"]["volumeAttributes"]["secretProviderClass"]
                            objects = []
                            for d in by_kind.get("SecretProviderClass", []):
                                if d["metadata"]["name"] == spc:
                                    objects = yaml.safe_load(d["spec"]["parameters"]["objects"])
                            aliases = {o.get("objectAlias") or o["objectName"] for o in objects}
                            aliases |= {j["objectAlias"] for o in objects for j in o.get("jmesPath", [])}
                            if os.path.basename(f) not in aliases:
                                fail(f"{cn}: {'.'.join(key)} {os.path.basename(f)} is not an object of {spc} ({sorted(aliases)})")
                ok(f"{cn}: {name_of(cm)} parses as TOML, integers stay integers, listen {listen}, secret files mounted")
        for v in volumes.values():
            if "csi" in v:
                spc = v["csi"]["volumeAttributes"]["secretProviderClass"]
                if spc not in spcs:
                    print(f"  note {n}: SecretProviderClass {spc} is not rendered (existing one)")
                else:
                    ok(f"{n}: SecretProviderClass {spc} rendered")

    for s in services:
        n = name_of(s)
        sel = s["spec"].get("selector", {})
        matched = [w for w in long_running if subset(sel, pod_spec(w)[1])]
        if len(matched) != len(long_running):
            fail(f"{n}: selects {len(matched)} of {len(long_running)} workloads")
        else:
            ok(f"{n}: selects every workload ({len(matched)})")
        for p in s["spec"]["ports"]:
            for w in matched:
                names = {cp["name"] for c in pod_spec(w)[0]["containers"] for cp in c.get("ports", [])}
                if p["targetPort"] not in names:
                    fail(f"{n}: targetPort {p['targetPort']} is not a port of {name_of(w)}")

    for sm in by_kind.get("ServiceMonitor", []):
        n = name_of(sm)
        targets = [s for s in services if subset(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        port_names = {p["name"] for s in targets for p in s["spec"]["ports"]}
        if not targets:
            fail(f"{n}: selects no Service")
        for e in sm["spec"]["endpoints"]:
            if e["port"] not in port_names:
                fail(f"{n}: endpoint port {e['port']} is not a port of {[name_of(s) for s in targets]}")
            if e.get("path") != "/metrics":
                fail(f"{n}: endpoint path {e.get('path')}")
        if sm["metadata"]["namespace"] not in sm["spec"].get("namespaceSelector", {}).get("matchNames", [sm["metadata"]["namespace"]]):
            fail(f"{n}: namespaceSelector misses its own namespace")
        ok(f"{n}: selects {[name_of(s) for s in targets]}, port {[e['port'] for e in sm['spec']['endpoints']]}, /metrics")

    for spc in by_kind.get("SecretProviderClass", []):
        n = name_of(spc)
        if spc["apiVersion"] != "secrets-store.csi.x-k8s.io/v1" or spc["spec"].get("provider") != "aws":
            fail(f"{n}: not a secrets-store.csi.x-k8s.io/v1 SecretProviderClass for provider aws")
            continue
        objects = yaml.safe_load(spc["spec"]["parameters"]["objects"])
        problems = []
        for o in objects if isinstance(objects, list) else [None]:
            if not isinstance(o, dict) or not o.get("objectName"):
                problems.append(f"object without objectName: {o}")
                continue
            if o.get("objectType", "secretsmanager") not in ("secretsmanager", "ssmparameter"):
                problems.append(f"objectType {o.get('objectType')}")
            for j in o.get("jmesPath", []):
                if not (j.get("path") and j.get("objectAlias")):
                    problems.append(f"jmesPath entry needs path and objectAlias: {j}")
        if problems:
            fail(f"{n}: {problems}")
        else:
            ok(f"{n}: provider aws, {len(objects)} object(s) with names, types and aliases")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        n = name_of(pdb)
        matched = [w for w in long_running if subset(pdb["spec"]["selector"]["matchLabels"], pod_spec(w)[1])]
        if len(matched) != 1:
            fail(f"{n}: selects {len(matched)} workloads, expected exactly one")
        else:
            ok(f"{n}: covers {name_of(matched[0])}")

    for np in by_kind.get("NetworkPolicy", []):
        n = name_of(np)
        sel = np["spec"]["podSelector"].get("matchLabels", {})
        matched = [w for w in long_running if subset(sel, pod_spec(w)[1])]
        if len(matched) != len(long_running):
            fail(f"{n}: applies to {len(matched)} of {len(long_running)} workloads")
        else:
            ok(f"{n}: applies to every workload, ingress only on {[p['port'] for r in np['spec']['ingress'] for p in r.get('ports', [])]}")


# ---------------------------------------------------------------------------------------------
# rules


def rule_groups(path):
    groups = []
    for d in load_docs(path):
        if d["kind"] == "PrometheusRule":
            groups.extend(d["spec"]["groups"])
    if not groups:
        fail(f"{path}: no PrometheusRule")
    return groups


def write_rules(path, out):
    groups = rule_groups(path)
    with open(out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False, width=1000)
    print(f"  ok   {path}: {sum(len(g['rules']) for g in groups)} rules in {len(groups)} group(s) -> {out}")


ALERTS_HEADER = """\
# cdcd alerting rules for a Prometheus outside Kubernetes (e.g. scraping the systemd service with a
# job named "cdcd"). GENERATED from deploy/helm/cdcd/templates/prometheusrule.yaml by
# scripts/check-deploy.sh --write-alerts, which also checks that this file is up to date.
# Unit tests: deploy/prometheus/cdcd-alerts.test.yml (promtool test rules).
"""


def alerts_file(path, out, check):
    groups = rule_groups(path)
    text = ALERTS_HEADER + yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)
    if check:
        current = open(out).read() if os.path.exists(out) else ""
        if current != text:
            fail(f"{out} is out of date with the chart: run scripts/check-deploy.sh --write-alerts")
        else:
            ok(f"{out} matches the chart's PrometheusRule")
    else:
        with open(out, "w") as f:
            f.write(text)
        print(f"  wrote {out}")


# ---------------------------------------------------------------------------------------------
# IAM


def check_iam(directory):
    for fn in sorted(os.listdir(directory)):
        if not fn.endswith(".json"):
            continue
        p = os.path.join(directory, fn)
        try:
            doc = json.load(open(p))
        except json.JSONDecodeError as e:
            fail(f"{p}: not JSON: {e}")
            continue
        if doc.get("Version") != "2012-10-17":
            fail(f"{p}: Version is not 2012-10-17")
        sids = set()
        actions = []
        for st in doc.get("Statement", []):
            sid = st.get("Sid")
            if not sid or sid in sids:
                fail(f"{p}: statement without a unique Sid")
            sids.add(sid)
            if st.get("Effect") != "Allow":
                fail(f"{p} {sid}: Effect {st.get('Effect')}")
            acts = st.get("Action")
            acts = [acts] if isinstance(acts, str) else acts
            if not acts:
                fail(f"{p} {sid}: no Action")
                continue
            for a in acts:
                if "*" in a:
                    fail(f"{p} {sid}: wildcard action {a}")
            actions += acts
            if "Principal" in st:   # a trust policy
                continue
            res = st.get("Resource")
            res = [res] if isinstance(res, str) else res
            if not res or any(r == "*" or re.fullmatch(r"arn:aws:[a-z0-9-]+:[^:]*:[^:]*:\*", r) for r in res):
                fail(f"{p} {sid}: Resource {res} is not scoped")
            if "NotAction" in st or "NotResource" in st:
                fail(f"{p} {sid}: NotAction/NotResource")
        ok(f"{p}: {len(sids)} statement(s), actions {sorted(set(actions))}, all resources scoped")


# ---------------------------------------------------------------------------------------------
# Docker build context


def dockerignore_patterns(repo):
    pats = []
    path = os.path.join(repo, ".dockerignore")
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**", i):
                rx += ".*"
                i += 2
                if i < len(pat) and pat[i] == "/":
                    rx = rx[:-2] + "(?:.*/)?"
                    i += 1
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((neg, re.compile(rx + "(?:/.*)?$")))
    return pats


def in_context(pats, rel):
    included = True
    for neg, rx in pats:
        if rx.match(rel):
            included = neg
    return included


def check_docker_context(repo):
    files = subprocess.run(["git", "-C", repo, "ls-files", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True, text=True).stdout.split()
    files = [f for f in files if os.path.exists(os.path.join(repo, f))]
    pats = dockerignore_patterns(repo)
    ctx = {f for f in files if in_context(pats, f)}
    print(f"  build context: {len(ctx)} of {len(files)} files")
    for bad in ("target/", ".git/", "deploy/", "docs/", "scripts/"):
        leaked = [f for f in ctx if f.startswith(bad)]
        if leaked:
            fail(f"context includes {bad}: {leaked[:3]}")
    needed = set()
    # COPY sources of the build stage (not --from)
    for line in open(os.path.join(repo, "Dockerfile")):
        m = re.match(r"\s*COPY\s+(.*)", line)
        if m and "--from" not in m.group(1):
            parts = [p for p in m.group(1).split() if not p.startswith("--")]
            needed.update(p.rstrip("/") for p in parts[:-1])
    # workspace members, explicit target paths, and files pulled in by include_str!/include_bytes!
    root = tomllib.load(open(os.path.join(repo, "Cargo.toml"), "rb"))
    for member in root.get("workspace", {}).get("members", []):
        needed.add(f"{member}/Cargo.toml")
        manifest = tomllib.load(open(os.path.join(repo, member, "Cargo.toml"), "rb"))
        for kind in ("bin", "test", "bench", "example"):
            for t in manifest.get(kind, []):
                if "path" in t:
                    needed.add(os.path.normpath(os.path.join(member, t["path"])))
        for dirpath, _, names in os.walk(os.path.join(repo, member, "src")):
            for fn in names:
                if fn.endswith(".rs"):
                    src = os.path.join(dirpath, fn)
                    for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', open(src).read()):
                        needed.add(os.path.relpath(os.path.normpath(os.path.join(dirpath, inc)), repo))
        if os.path.exists(os.path.join(repo, member, "build.rs")):
            needed.add(f"{member}/build.rs")
    missing = []
    for n in sorted(needed):
        if n in ctx or any(f.startswith(n + "/") for f in ctx):
            continue
        missing.append(n)
    if missing:
        fail(f"the build needs files the context excludes: {missing}")
    else:
        ok(f"context holds every COPY source, workspace manifest, target path and include_str! file ({len(needed)})")


# ---------------------------------------------------------------------------------------------


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "manifests":
        for p in args:
            check_manifests(p)
    elif cmd == "rules":
        write_rules(args[0], args[1])
    elif cmd == "alerts-file":
        alerts_file(args[0], args[1], "--check" in args[2:])
    elif cmd == "iam":
        check_iam(args[0])
    elif cmd == "docker-context":
        check_docker_context(args[0])
    elif cmd == "configs":
        out = args[0]
        os.makedirs(out, exist_ok=True)
        for p in args[1:]:
            stem = os.path.splitext(os.path.basename(p))[0]
            for d in load_docs(p):
                if d["kind"] == "ConfigMap" and "config.toml" in d.get("data", {}):
                    with open(os.path.join(out, f"{stem}--{d['metadata']['name']}.toml"), "w") as f:
                        f.write(d["data"]["config.toml"])
    elif cmd == "crd-json":
        docs = [d for p in args for d in load_docs(p) if "." in d["apiVersion"].split("/")[0]
                and not d["apiVersion"].endswith(".k8s.io/v1")]
        json.dump(docs, sys.stdout)
    elif cmd == "toml":
        for p in args:
            try:
                tomllib.load(open(p, "rb"))
                ok(f"{p} parses as TOML")
            except tomllib.TOMLDecodeError as e:
                fail(f"{p}: {e}")
    else:
        print(__doc__)
        return 2
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
