# shellcheck shell=bash
# Shared helpers for the cdcd service scripts. Source it; do not execute it.

log() { echo "[cdcd-scripts] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (apt-get / chroot / mount)"
}

# now_ms: wall clock in milliseconds (no bc needed)
now_ms() { date +%s%3N; }
# since_s START_MS: seconds elapsed, one decimal
since_s() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }

# proc_alive PID COMM: true if PID is a live (not zombie) process whose name is COMM
# (a stale pid file after a crash or reboot may name a reused pid or an unreaped zombie)
proc_alive() {
  local stat
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }                 # drop "pid (comm) ", leaving "STATE ppid ..."
  [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}

# port_in_use PORT: true if something listens on 127.0.0.1:PORT
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port_free PORT [SECONDS]: wait (default 15 s) for a dying previous owner to release PORT
wait_port_free() {
  local i
  for (( i = 0; i < ${2:-15} * 5; i++ )); do port_in_use "$1" || return 0; sleep 0.2; done
  return 1
}

# print_export NAME VALUE: one shell-safe export line on stdout
print_export() { printf 'export %s=%q\n' "$1" "$2"; }

# apt_install PKG...: install the Debian packages that are not installed yet
# (apt-get update only when something is missing, and at most once an hour).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "installing ${missing[*]}"
  (
    # serialise our own parallel callers (services.sh starts services concurrently)
    flock -w 900 9 || die "timed out waiting for /var/lock/cdcd-apt.lock"
    local stamp=/var/lib/apt/periodic/cdcd-update-stamp
    # apt-get update at most once per hour across all scripts (the lists go stale, not the rest)
    local out=/tmp/cdcd-apt.log
    if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
      log "apt-get update"
      apt-get -o DPkg::Lock::Timeout=600 update -qq > "$out" 2>&1 || { tail -20 "$out" >&2; die "apt-get update failed"; }
      mkdir -p "$(dirname "$stamp")" && touch "$stamp"
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" > "$out" 2>&1 || { tail -30 "$out" >&2; die "apt-get install ${missing[*]} failed"; }
  ) 9>/var/lock/cdcd-apt.lock
}

# gen_tls DIR: self-signed CA + server cert (SAN localhost, 127.0.0.1, ::1) written as
# DIR/ca.pem DIR/ca-key.pem DIR/server-cert.pem DIR/server-key.pem. Regenerated when missing
# or when either certificate expires within 7 days. v3 extensions everywhere so that
# rustls/webpki accepts the chain (CA: basicConstraints CA:TRUE; leaf: serverAuth + SAN).
gen_tls() {
  local t=$1
  if [ -f "$t/server-cert.pem" ] && [ -f "$t/server-key.pem" ] && [ -f "$t/ca.pem" ] &&
     openssl x509 -checkend 604800 -noout -in "$t/ca.pem" >/dev/null 2>&1 &&
     openssl x509 -checkend 604800 -noout -in "$t/server-cert.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || apt_install openssl
  log "generating test CA + server certificate in $t"
  mkdir -p "$t"
  cat > "$t/ext.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cdcd test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
CNF
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -config "$t/ext.cnf" -extensions ca \
    -keyout "$t/ca-key.pem" -out "$t/ca.pem" >/dev/null 2>&1 || die "openssl: CA generation failed"
  openssl req -new -newkey rsa:2048 -nodes -config "$t/ext.cnf" -subj "/CN=localhost" \
    -keyout "$t/server-key.pem" -out "$t/server.csr" >/dev/null 2>&1 || die "openssl: CSR failed"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" \
    -CAcreateserial -days 3650 -extfile "$t/ext.cnf" -extensions server \
    -out "$t/server-cert.pem" >/dev/null 2>&1 || die "openssl: server certificate failed"
  rm -f "$t/server.csr"
  chmod 600 "$t/ca-key.pem" "$t/server-key.pem"
  chmod 644 "$t/ca.pem" "$t/server-cert.pem"
}

# ensure_users: runs $USERS_SQL through the caller's `client` function once per datadir ($DATADIR),
# and again only when the SQL changes (a stamp file in the datadir remembers what ran).
ensure_users() {
  local stamp=$DATADIR/cdcd-users.sql
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$USERS_SQL" ] && return 0
  client -e "$USERS_SQL"
  printf '%s' "$USERS_SQL" > "$stamp"
}

# bench_options DEFAULT_SERVER "$@": the benchmarks' command line: sets SERVER (mariadb|mysql,
# DEFAULT_SERVER unless --server) and KEEP (1 with --keep); --help prints the calling script's
# header comment.
bench_options() {
  local other
  SERVER=$1 KEEP=0
  shift
  if [ "$SERVER" = mysql ]; then other=mariadb; else other=mysql; fi
  local usage="usage: $0 [--server $SERVER|$other] [--keep]"
  while [ $# -gt 0 ]; do
    case "$1" in
      --server) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; SERVER=$2; shift 2 ;;
      --server=*) SERVER=${1#*=}; shift ;;
      --keep) KEEP=1; shift ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
      *) echo "$usage" >&2; exit 2 ;;
    esac
  done
}

# build_release LOG: cargo build --release -p cdcd (output in LOG, its tail shown on failure);
# sets CDCD to the binary, honouring CARGO_TARGET_DIR. Needs ROOT.
build_release() {
  local t0 target
  t0=$(now_ms)
  log "building cdcd (cargo build --release -p cdcd)"
  (cd "$ROOT" && cargo build --release -p cdcd) > "$1" 2>&1 ||
    { tail -40 "$1" >&2; die "cargo build --release -p cdcd failed"; }
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  case "$target" in /*) ;; *) target=$ROOT/$target ;; esac
  CDCD=$target/release/cdcd
  [ -x "$CDCD" ] || die "no binary at $CDCD after the build"
  log "cdcd built in $(since_s "$t0") s: $CDCD"
}
