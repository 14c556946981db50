#!/usr/bin/env bash
# Checks the deployment artifacts offline and prints what it checked; exits non-zero on any failure
# (every step runs either way):
#
#   Helm chart  deploy/helm/cdcd, for the default values and every deploy/helm/ci-values/*.yaml:
#               helm lint --strict; helm template; the value sets under ci-values/invalid/ must be
#               refused with the message their "# expect:" line names; cross-reference checks
#               (deploy/ci/check_deploy.py: selectors, ports, probes, security contexts, the
#               rendered config.toml parses with integers intact, secret files mounted);
#               kubernetes-validate --strict against the oldest and newest supported Kubernetes
#               (schemas ship inside the package: offline), with a canary that must fail;
#               ServiceMonitor/PrometheusRule against the prometheus-operator CRD schemas (npm
#               @kubernetes-models/prometheus-operator); checkov (kubernetes + Dockerfile).
#   Prometheus  promtool check rules on the rule groups extracted from the rendered PrometheusRule;
#               deploy/prometheus/cdcd-alerts.yml in sync with the chart; promtool test rules;
#               every cdcd_* metric the rules use is in docs/operations.md's metrics table.
#   cdcd        every rendered config.toml and the systemd example are loaded by the real cdcd
#               binary when one is built (unknown keys are errors there).
#   systemd     deploy/systemd/install.sh into a staging root; systemd-analyze verify prints
#               nothing; systemd-analyze security --offline=true rates the unit OK or better.
#   Other       Docker build context (.dockerignore) complete; IAM policies valid and scoped;
#               example config parses; scripts/notify-listener.py self-test with systemd-notify.
#
#   scripts/check-deploy.sh [--write-alerts]   (--write-alerts regenerates deploy/prometheus/cdcd-alerts.yml)
#
# Tools: from $CDCD_TEST_TOOLS_BIN (scripts/aws.sh install; read from the services env file when
# unset), else PATH: helm, kubernetes-validate, checkov, promtool, systemd-analyze, node, python3
# with PyYAML (the venv behind kubernetes-validate). The npm package
# @kubernetes-models/prometheus-operator is looked up in $CDCD_TEST_TOOLS_NODE_MODULES, else
# $CDCD_TEST_TOOLS_BIN/../npm/node_modules or ../node_modules.
# Env: CDCD_MAX_EXPOSURE (default 1.5): the highest systemd exposure accepted.
#      CDCD_BIN: a cdcd binary for systemd-analyze verify and for loading the rendered configs
#        (else target/{release,debug}/cdcd, $CARGO_TARGET_DIR/…, /var/cache/cdcd-ci-target/…;
#        without one, verify uses /usr/bin/true as the ExecStart binary and the config step skips).
#      CDCD_DEPLOY_SKIP_BINARY_CONFIGS=1 skips loading the configs with cdcd.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

WRITE_ALERTS=0
for arg in "$@"; do
  case $arg in
    --write-alerts) WRITE_ALERTS=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

CHART=deploy/helm/cdcd
CI_VALUES=deploy/helm/ci-values
RELEASE=cdcd
NAMESPACE=cdcd
# Oldest (Chart.yaml kubeVersion) and newest Kubernetes the manifests are validated against.
K8S_VERSIONS=(1.29 1.35)
MAX_EXPOSURE=${CDCD_MAX_EXPOSURE:-1.5}
# Custom resources kubernetes-validate has no schema for; validated by other steps below.
CRD_KINDS='ServiceMonitor|PrometheusRule|SecretProviderClass'

# checkov checks skipped, each with its justification (printed in the report):
#  CKV_K8S_43 "Image should use digest": the default image is referenced by its release tag because
#    its digest exists only once the image is published; production sets image.digest (docs/deploy.md),
#    and the s3-checkpoint value set pins a digest, which the "image by digest" step verifies.
CHECKOV_SKIPS=(CKV_K8S_43)
# Also skipped inline, by annotation on the `helm test` pod (templates/tests/check.yaml):
#  CKV_K8S_8/CKV_K8S_9 (liveness/readiness probes): a run-to-completion pod serves no endpoint.

T_START=$(now_ms)
WORK=$(mktemp -d /tmp/cdcd-check-deploy.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failed=()
results=()
step() {  # step NAME CMD...: run, time and record one check
  local name=$1 t0 rc; shift
  t0=$(now_ms)
  log "==> $name"
  "$@"; rc=$?
  if [ $rc = 0 ]; then
    results+=("ok      $(printf '%6s' "$(since_s "$t0")")s  $name")
  else
    results+=("FAILED  $(printf '%6s' "$(since_s "$t0")")s  $name")
    failed+=("$name")
  fi
  log "<== $name: $([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)") ($(since_s "$t0") s)"
}

# ---------------------------------------------------------------- tools
if [ -z "${CDCD_TEST_TOOLS_BIN:-}" ] && [ -f "${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}" ]; then
  line=$(grep -E '^export CDCD_TEST_TOOLS_BIN=' "${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}" | tail -1)
  [ -n "$line" ] && eval "$line"
fi
missing=()
tool() {  # tool NAME: the path of a tool, from $CDCD_TEST_TOOLS_BIN, else PATH
  if [ -n "${CDCD_TEST_TOOLS_BIN:-}" ] && [ -x "$CDCD_TEST_TOOLS_BIN/$1" ]; then
    echo "$CDCD_TEST_TOOLS_BIN/$1"
  elif command -v "$1" 2>/dev/null; then
    :
  else
    missing+=("$1"); echo "/nonexistent/$1"
  fi
}
HELM=$(tool helm); KV=$(tool kubernetes-validate); CHECKOV=$(tool checkov)
PROMTOOL=$(tool promtool); SYSTEMD_ANALYZE=$(tool systemd-analyze); NODE=$(tool node)
# helm, kubernetes-validate … print into command substitutions; re-run tool() in this shell for missing[]
for t in helm kubernetes-validate checkov promtool systemd-analyze node; do tool "$t" >/dev/null; done
# Python with PyYAML: the venv behind kubernetes-validate, else python3.
PYTHON=""
for p in "${CDCD_TEST_TOOLS_BIN:+$CDCD_TEST_TOOLS_BIN/python3}" \
         "$(dirname "$(readlink -f "$KV" 2>/dev/null || echo /nonexistent)")/python" python3; do
  [ -n "$p" ] || continue
  if "$p" -c 'import yaml, tomllib' 2>/dev/null; then PYTHON=$p; break; fi
done
[ -n "$PYTHON" ] || missing+=("python3 with PyYAML (and Python 3.11+)")
NODE_MODULES=""
for d in "${CDCD_TEST_TOOLS_NODE_MODULES:-}" "${CDCD_TEST_TOOLS_BIN:+$CDCD_TEST_TOOLS_BIN/../npm/node_modules}" \
         "${CDCD_TEST_TOOLS_BIN:+$CDCD_TEST_TOOLS_BIN/../node_modules}"; do
  if [ -n "$d" ] && [ -f "$d/@kubernetes-models/prometheus-operator/package.json" ]; then NODE_MODULES=$d; break; fi
done
[ -n "$NODE_MODULES" ] || missing+=("npm package @kubernetes-models/prometheus-operator@6.0.0 (set CDCD_TEST_TOOLS_NODE_MODULES to its node_modules)")
if [ ${#missing[@]} -gt 0 ]; then
  log "missing tools: ${missing[*]}"
  die "install them with scripts/aws.sh install (then CDCD_TEST_TOOLS_BIN is exported by scripts/services.sh start), or put them on PATH"
fi
log "tools: helm $("$HELM" version --short 2>/dev/null), kubernetes-validate $("$KV" --version), checkov $("$CHECKOV" --version 2>/dev/null), $("$PROMTOOL" --version 2>&1 | head -1 | cut -d' ' -f1-3), $("$SYSTEMD_ANALYZE" --version | head -1), node $("$NODE" --version), $("$PYTHON" --version) ($PYTHON), prometheus-operator models $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$NODE_MODULES/@kubernetes-models/prometheus-operator/package.json")"

# ---------------------------------------------------------------- value sets
SETS=(default)
for f in "$CI_VALUES"/*.yaml; do SETS+=("$(basename "$f" .yaml)"); done
values_args() { [ "$1" = default ] || echo "-f $CI_VALUES/$1.yaml"; }
mkdir -p "$WORK/rendered" "$WORK/checkov"

helm_lint() {
  local s rc=0 out
  for s in "${SETS[@]}"; do
    # shellcheck disable=SC2046
    if out=$("$HELM" lint --strict "$CHART" --namespace "$NAMESPACE" $(values_args "$s") 2>&1); then
      echo "  ok   helm lint --strict ($s): $(echo "$out" | tail -1)"
    else
      echo "$out" | sed 's/^/       /'; echo "  FAIL helm lint --strict ($s)"; rc=1
    fi
  done
  return $rc
}

helm_template() {
  local s rc=0
  for s in "${SETS[@]}"; do
    # shellcheck disable=SC2046
    if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" $(values_args "$s") \
        > "$WORK/rendered/$s.yaml" 2> "$WORK/rendered/$s.err"; then
      mkdir -p "$WORK/checkov/$s" && cp "$WORK/rendered/$s.yaml" "$WORK/checkov/$s/manifests.yaml"
      echo "  ok   helm template ($s): $(grep -E '^kind: ' "$WORK/rendered/$s.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')"
    else
      sed 's/^/       /' "$WORK/rendered/$s.err"; echo "  FAIL helm template ($s)"; rc=1
    fi
  done
  return $rc
}

helm_invalid() {
  local f expect err rc=0
  for f in "$CI_VALUES"/invalid/*.yaml; do
    expect=$(sed -n 's/^# expect: //p' "$f" | head -1)
    [ -n "$expect" ] || { echo "  FAIL $f has no '# expect:' line"; rc=1; continue; }
    if err=$("$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$f" 2>&1 >/dev/null); then
      echo "  FAIL $(basename "$f"): rendered, but should be refused ($expect)"; rc=1
    elif grep -qF -- "$expect" <<< "$err"; then
      echo "  ok   $(basename "$f") refused: $(grep -F -- "$expect" <<< "$err" | head -1 | sed 's/^Error: //; s/^- //' | cut -c1-150)"
    else
      echo "$err" | sed 's/^/       /'; echo "  FAIL $(basename "$f"): refused, but not with \"$expect\""; rc=1
    fi
  done
  return $rc
}

cross_checks() {
  local s files=()
  for s in "${SETS[@]}"; do files+=("$WORK/rendered/$s.yaml"); done
  "$PYTHON" deploy/ci/check_deploy.py manifests "${files[@]}"
}

kube_validate() {
  local s out rc=0 kargs=() v errors warns
  for v in "${K8S_VERSIONS[@]}"; do kargs+=(-k "$v"); done
  # Canary: the validator must reject a Deployment with an unknown field and a mistyped one,
  # proving its schemas are there (offline) and --strict works.
  cat > "$WORK/canary.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: canary}
spec:
  replicas: "one"
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: x, bogusField: 1}]
EOF
  if "$KV" --strict "${kargs[@]}" "$WORK/canary.yaml" > "$WORK/canary.out" 2>&1; then
    cat "$WORK/canary.out"; echo "  FAIL kubernetes-validate accepted the broken canary Deployment"; rc=1
  else
    echo "  ok   kubernetes-validate rejects a broken canary: $(grep -m1 ERROR "$WORK/canary.out" | sed 's/.*did not validate//' | cut -c1-110)"
  fi
  for s in "${SETS[@]}"; do
    out=$("$KV" --strict "${kargs[@]}" "$WORK/rendered/$s.yaml" 2>&1)
    errors=$(grep -E '^(ERROR|FATAL)' <<< "$out")
    warns=$(grep -E '^WARN' <<< "$out" | grep -vE "for kind ($CRD_KINDS) ")
    if [ -n "$errors$warns" ] || ! grep -q '^INFO' <<< "$out"; then
      echo "$out" | grep -v '^INFO' | sed 's/^/       /'; echo "  FAIL kubernetes-validate ($s)"; rc=1
    else
      echo "  ok   kubernetes-validate --strict ($s): $(grep -c '^INFO' <<< "$out") object validations passed (Kubernetes ${K8S_VERSIONS[*]})$(grep -oE "for kind ($CRD_KINDS) " <<< "$out" | sort -u | awk '{printf "%s%s", (NR==1 ? "; no schema for CRD " : ", "), $3}')"
    fi
  done
  return $rc
}

crd_validate() {
  local files=() s
  for s in "${SETS[@]}"; do files+=("$WORK/rendered/$s.yaml"); done
  "$PYTHON" deploy/ci/check_deploy.py crd-json "${files[@]}" > "$WORK/crds.json" || return 1
  "$NODE" deploy/ci/validate-crds.mjs "$NODE_MODULES" < "$WORK/crds.json"
}

run_checkov() {
  local rc skip
  skip=$(IFS=,; echo "${CHECKOV_SKIPS[*]}")
  cp Dockerfile "$WORK/checkov/Dockerfile"
  "$CHECKOV" -d "$WORK/checkov" --framework kubernetes dockerfile --skip-check "$skip" \
    -o json > "$WORK/checkov.json" 2> "$WORK/checkov.err"; rc=$?
  "$PYTHON" - "$WORK/checkov.json" "$rc" <<'PY' || { sed 's/^/       /' "$WORK/checkov.err" | tail -20; return 1; }
import json, sys
try:
    reports = json.load(open(sys.argv[1]))
except ValueError as e:
    print(f"  FAIL checkov printed no JSON report (exit {sys.argv[2]}): {e}")
    sys.exit(1)
if isinstance(reports, dict):
    reports = [reports]
bad = 0
for r in reports:
    s = r["summary"]
    skipped = sorted({f"{c['check_id']} ({c['resource']})" if r["check_type"] != "kubernetes" else c["check_id"]
                      for c in r["results"].get("skipped_checks", [])})
    print(f"  checkov {r['check_type']}: passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']}"
          + (f" [{', '.join(skipped)}]" if skipped else ""))
    for c in r["results"].get("failed_checks", []):
        bad += 1
        print(f"  FAIL {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})")
if bad or sys.argv[2] != "0":
    print(f"  FAIL checkov: {bad} failed check(s), exit {sys.argv[2]}")
    sys.exit(1)
print("  ok   checkov: no failed check; skipped: CKV_K8S_43 on the command line (not run, so not counted),"
      " CKV_K8S_8/9 by annotation on the helm test pods (justifications in scripts/check-deploy.sh)")
PY
}

image_digest() {
  if grep -q 'image: ghcr.io/cdcd/cdcd@sha256:' "$WORK/rendered/s3-checkpoint.yaml" &&
     grep -q 'image: ghcr.io/cdcd/cdcd:' "$WORK/rendered/default.yaml"; then
    echo "  ok   image.digest pins the image (s3-checkpoint); the default is the appVersion tag ($(grep -m1 -o 'ghcr.io/cdcd/cdcd:[^ ]*' "$WORK/rendered/default.yaml"))"
  else
    echo "  FAIL image references: expected @sha256: with image.digest and :<appVersion> by default"; return 1
  fi
}

# ---------------------------------------------------------------- Prometheus
prom_rules() {
  local s rc=0 n=0
  for s in "${SETS[@]}"; do
    grep -q '^kind: PrometheusRule' "$WORK/rendered/$s.yaml" || continue
    n=$((n + 1))
    "$PYTHON" deploy/ci/check_deploy.py rules "$WORK/rendered/$s.yaml" "$WORK/rules-$s.yml" || { rc=1; continue; }
    if "$PROMTOOL" check rules "$WORK/rules-$s.yml" > "$WORK/promtool.out" 2>&1; then
      echo "  ok   promtool check rules ($s): $(grep -o 'SUCCESS.*' "$WORK/promtool.out")"
    else
      sed 's/^/       /' "$WORK/promtool.out"; echo "  FAIL promtool check rules ($s)"; rc=1
    fi
  done
  [ $n -gt 0 ] || { echo "  FAIL no value set renders a PrometheusRule"; rc=1; }
  return $rc
}

prom_alerts_file() {
  local rc=0
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set prometheusRule.enabled=true \
    --set-string 'prometheusRule.selector=job="cdcd"' --show-only templates/prometheusrule.yaml \
    > "$WORK/standalone.yaml" || return 1
  if [ $WRITE_ALERTS = 1 ]; then
    "$PYTHON" deploy/ci/check_deploy.py alerts-file "$WORK/standalone.yaml" deploy/prometheus/cdcd-alerts.yml || rc=1
  else
    "$PYTHON" deploy/ci/check_deploy.py alerts-file "$WORK/standalone.yaml" deploy/prometheus/cdcd-alerts.yml --check || rc=1
  fi
  if "$PROMTOOL" check rules deploy/prometheus/cdcd-alerts.yml > "$WORK/promtool.out" 2>&1; then
    echo "  ok   promtool check rules deploy/prometheus/cdcd-alerts.yml: $(grep -o 'SUCCESS.*' "$WORK/promtool.out")"
  else
    sed 's/^/       /' "$WORK/promtool.out"; echo "  FAIL promtool check rules deploy/prometheus/cdcd-alerts.yml"; rc=1
  fi
  if "$PROMTOOL" test rules deploy/prometheus/cdcd-alerts.test.yml > "$WORK/promtest.out" 2>&1; then
    echo "  ok   promtool test rules: $(grep -c 'alertname:' deploy/prometheus/cdcd-alerts.test.yml) alert evaluations as expected (labels and annotations)"
  else
    sed 's/^/       /' "$WORK/promtest.out"; echo "  FAIL promtool test rules deploy/prometheus/cdcd-alerts.test.yml"; rc=1
  fi
  # An alert on a metric cdcd does not export never fires: every cdcd_* name the rules use must be
  # in the metrics table of docs/operations.md (which lists what /metrics serves).
  local name used=0
  for name in $(grep -o 'cdcd_[a-z_]*' deploy/prometheus/cdcd-alerts.yml | sort -u); do
    used=$((used + 1))
    if ! grep -q "^| \`$name\` |" docs/operations.md; then
      echo "  FAIL the alert rules use $name, which is not a metric in docs/operations.md"; rc=1
    fi
  done
  [ $rc != 0 ] || echo "  ok   the $used cdcd_* metrics the alert rules use are in docs/operations.md's metrics table"
  return $rc
}

# ---------------------------------------------------------------- systemd
find_cdcd_binary() {
  local b
  for b in "${CDCD_BIN:-}" target/release/cdcd target/debug/cdcd \
           "${CARGO_TARGET_DIR:-/nonexistent}/release/cdcd" "${CARGO_TARGET_DIR:-/nonexistent}/debug/cdcd" \
           /var/cache/cdcd-ci-target/release/cdcd /var/cache/cdcd-ci-target/debug/cdcd; do
    if [ -n "$b" ] && [ -x "$b" ]; then readlink -f "$b"; return; fi
  done
  echo /usr/bin/true
}

systemd_checks() {
  local stage=$WORK/stage bin unit out rc=0 exposure rating
  bin=$(find_cdcd_binary)
  if ! DESTDIR=$stage deploy/systemd/install.sh --binary "$bin" > "$WORK/install.out" 2>&1; then
    sed 's/^/       /' "$WORK/install.out"; echo "  FAIL deploy/systemd/install.sh (DESTDIR)"; return 1
  fi
  out=$(cd "$stage" && find . -mindepth 1 \( -type f -o -name credstore \) -printf '%m %p\n' | sort -k2 | tr '\n' ' ')
  if [ "$out" = "600 ./etc/cdcd/cdcd.env 644 ./etc/cdcd/config.toml 700 ./etc/credstore 644 ./etc/systemd/system/cdcd.service 755 ./usr/local/bin/cdcd " ]; then
    echo "  ok   install.sh staged: $out"
  else
    echo "  FAIL install.sh staged unexpected files/modes: $out"; rc=1
  fi
  # Second run keeps the existing configuration.
  out=$(DESTDIR=$stage deploy/systemd/install.sh --binary "$bin" 2>&1)
  if grep -q 'kept the existing /etc/cdcd/config.toml' <<< "$out"; then
    echo "  ok   install.sh keeps an existing /etc/cdcd/config.toml"
  else
    echo "  FAIL install.sh does not keep an existing config"; rc=1
  fi
  # systemd-analyze verify requires ExecStart's binary to exist. The unit names the installed path
  # /usr/local/bin/cdcd, which exists only on an installed host, so verify a copy whose ExecStart
  # points at the staged binary instead: the same file install.sh put there (a real cdcd build when
  # one is found, else /usr/bin/true standing in; verify does not execute it). Nothing else differs.
  unit=$WORK/verify/cdcd.service
  mkdir -p "$WORK/verify"
  sed "s|^ExecStart=/usr/local/bin/cdcd |ExecStart=$stage/usr/local/bin/cdcd |" "$stage/etc/systemd/system/cdcd.service" > "$unit"
  if diff <(grep -v '^ExecStart=' deploy/systemd/cdcd.service) <(grep -v '^ExecStart=' "$unit") > /dev/null &&
     [ "$(grep -c '^ExecStart=' "$unit")" = 1 ] && grep -q "^ExecStart=$stage/usr/local/bin/cdcd run --config /etc/cdcd/config.toml$" "$unit"; then
    echo "  ok   verify copy differs from deploy/systemd/cdcd.service only in ExecStart's path (binary: $bin)"
  else
    echo "  FAIL the verify copy differs from the unit beyond ExecStart"; rc=1
  fi
  out=$("$SYSTEMD_ANALYZE" verify "$unit" 2>&1); local vrc=$?
  if [ $vrc = 0 ] && [ -z "$out" ]; then
    echo "  ok   systemd-analyze verify: no output, exit 0"
  else
    echo "$out" | sed 's/^/       /'; echo "  FAIL systemd-analyze verify (exit $vrc, output above)"; rc=1
  fi
  out=$("$SYSTEMD_ANALYZE" security --offline=true "$unit" 2>&1)
  exposure=$(grep -oE 'Overall exposure level for cdcd.service: [0-9.]+ [A-Z]+' <<< "$out" | awk '{print $(NF-1)}')
  rating=$(grep -oE 'Overall exposure level for cdcd.service: [0-9.]+ [A-Z]+' <<< "$out" | awk '{print $NF}')
  if [ -z "$exposure" ]; then
    echo "$out" | tail -5 | sed 's/^/       /'; echo "  FAIL systemd-analyze security: no exposure level found"; rc=1
  elif [[ $rating =~ ^(PERFECT|SAFE|OK)$ ]] && awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    echo "  ok   systemd-analyze security --offline=true: exposure $exposure $rating (limit $MAX_EXPOSURE); remaining: $(grep '^✗' <<< "$out" | awk '{print $2}' | tr '\n' ' ')"
  else
    grep '^✗' <<< "$out" | sed 's/^/       /'
    echo "  FAIL systemd-analyze security: exposure $exposure $rating (needs OK or better and <= $MAX_EXPOSURE)"; rc=1
  fi
  # The credentials the unit loads are the files the example config reads.
  local cred
  for cred in $(sed -n 's/^LoadCredential=\([^:]*\).*/\1/p' deploy/systemd/cdcd.service); do
    if grep -q "\"/run/credentials/cdcd.service/$cred\"" deploy/systemd/config.toml; then
      echo "  ok   credential $cred is read by deploy/systemd/config.toml"
    else
      echo "  FAIL credential $cred: deploy/systemd/config.toml does not read /run/credentials/cdcd.service/$cred"; rc=1
    fi
  done
  "$PYTHON" deploy/ci/check_deploy.py toml deploy/systemd/config.toml config.toml || rc=1
  bash -n deploy/systemd/install.sh && echo "  ok   bash -n deploy/systemd/install.sh" || rc=1
  return $rc
}

# The configurations the chart renders, and the systemd example, loaded by the real cdcd (when a
# build is around): `cdcd athena-ddl` loads and checks the whole config (unknown keys are errors
# naming the key), then connects to the source, which is pointed at a closed local port. Reaching
# "cannot connect" means the config was accepted. Secrets are pointed at stand-in files.
binary_configs() {
  local bin f out rc=0 n=0 files=() s
  if [ "${CDCD_DEPLOY_SKIP_BINARY_CONFIGS:-0}" = 1 ]; then
    echo "  skip CDCD_DEPLOY_SKIP_BINARY_CONFIGS=1: configs not loaded by cdcd"
    return 0
  fi
  bin=$(find_cdcd_binary)
  if [ "$bin" = /usr/bin/true ]; then
    echo "  skip no cdcd binary (CDCD_BIN, target/{release,debug}/cdcd, \$CARGO_TARGET_DIR): configs not loaded by cdcd"
    return 0
  fi
  for s in "${SETS[@]}"; do files+=("$WORK/rendered/$s.yaml"); done
  "$PYTHON" deploy/ci/check_deploy.py configs "$WORK/configs" "${files[@]}" || return 1
  cp deploy/systemd/config.toml "$WORK/configs/systemd-example.toml"
  printf 'stand-in\n' > "$WORK/secret"
  # A CA certificate stands in for tls_ca files that exist only where cdcd is deployed.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=check -days 1 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" > /dev/null 2>&1 || { echo "  FAIL openssl could not make a stand-in CA"; return 1; }
  for f in "$WORK"/configs/*.toml; do
    n=$((n + 1))
    local tls=()
    if grep -q '^tls_ca *=' "$f"; then tls=(CDCD_SOURCE__TLS_CA="$WORK/ca.pem"); fi
    out=$(cd "$WORK" && env -u CDCD_CONFIG CDCD_SOURCE__URL=mysql://check@127.0.0.1:9 "${tls[@]}" \
          CDCD_SOURCE__PASSWORD_FILE="$WORK/secret" CDCD_MASKING__HMAC_KEY_FILE="$WORK/secret" \
          timeout 20 "$bin" athena-ddl --config "$f" --location s3://check/lake 2>&1)
    if grep -q 'cannot connect to 127.0.0.1:9' <<< "$out"; then
      echo "  ok   $(basename "$f" .toml): accepted by $bin"
    else
      echo "  FAIL $(basename "$f" .toml): $bin refuses it: $(head -3 <<< "$out")"; rc=1
    fi
  done
  [ $n -gt 0 ] || { echo "  FAIL no config rendered"; rc=1; }
  return $rc
}

notify_listener() {
  local out rc=0
  if out=$("$PYTHON" scripts/notify-listener.py --notify-access all --expect READY=1 -- systemd-notify --ready 2>&1); then
    echo "$out" | sed 's/^/       /'
    echo "  ok   notify-listener received READY=1 from systemd-notify --ready"
  else
    echo "$out" | sed 's/^/       /'; echo "  FAIL notify-listener with systemd-notify --ready"; rc=1
  fi
  # A stand-in daemon: READY, watchdog pings, STOPPING on SIGTERM, exit 0 (what cdcd run must do).
  if out=$("$PYTHON" scripts/notify-listener.py --expect READY=1 --expect STOPPING=1 --check-watchdog \
      --watchdog-usec 1000000 --term-after-ready 1 --expect-exit 0 --quiet -- "$PYTHON" -c '
import os, signal, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
assert os.environ["WATCHDOG_PID"] == str(os.getpid())
period = int(os.environ["WATCHDOG_USEC"]) / 2e6
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
while not stop:
    s.sendto(b"WATCHDOG=1", os.environ["NOTIFY_SOCKET"]); time.sleep(period)
s.sendto(b"STOPPING=1", os.environ["NOTIFY_SOCKET"])' 2>&1); then
    echo "  ok   notify-listener checks a stand-in daemon: $(tail -1 <<< "$out" | sed 's/^\[notify\] //')"
  else
    echo "$out" | sed 's/^/       /'; echo "  FAIL notify-listener with a stand-in daemon"; rc=1
  fi
  # …and fails one that never pings the watchdog.
  if out=$("$PYTHON" scripts/notify-listener.py --expect READY=1 --check-watchdog --watchdog-usec 300000 \
      --quiet -- "$PYTHON" -c '
import os, socket, time
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"]); time.sleep(0.8)' 2>&1); then
    echo "$out" | sed 's/^/       /'; echo "  FAIL notify-listener accepted a daemon that never pinged the watchdog"; rc=1
  else
    echo "  ok   notify-listener fails a daemon that misses its watchdog: $(tail -1 <<< "$out" | sed 's/^\[notify\] summary: //')"
  fi
  return $rc
}

# ---------------------------------------------------------------- run
step "helm lint --strict (${#SETS[@]} value sets: ${SETS[*]})" helm_lint
step "helm template (${#SETS[@]} value sets)" helm_template
step "invalid value sets are refused" helm_invalid
step "cross-reference checks of the rendered manifests" cross_checks
step "kubernetes-validate --strict (offline schemas)" kube_validate
step "ServiceMonitor/PrometheusRule against the CRD schemas" crd_validate
step "checkov (kubernetes, Dockerfile)" run_checkov
step "image by digest" image_digest
step "promtool check rules (rendered PrometheusRule)" prom_rules
step "deploy/prometheus/cdcd-alerts.yml: in sync, check rules, test rules" prom_alerts_file
step "systemd unit: install.sh, verify, security" systemd_checks
step "rendered configs loaded by the cdcd binary" binary_configs
step "Docker build context" "$PYTHON" deploy/ci/check_deploy.py docker-context "$REPO"
step "IAM policies (deploy/iam)" "$PYTHON" deploy/ci/check_deploy.py iam deploy/iam
step "scripts/notify-listener.py self-test" notify_listener

log "summary:"
for r in "${results[@]}"; do log "  $r"; done
if [ ${#failed[@]} -gt 0 ]; then
  log "check-deploy FAILED (${#failed[@]} of ${#results[@]} steps) in $(since_s "$T_START") s: ${failed[*]}"
  exit 1
fi
log "check-deploy: all ${#results[@]} steps passed in $(since_s "$T_START") s"
