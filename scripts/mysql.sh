#!/usr/bin/env bash
# Real Oracle MySQL (Debian sid's mysql-server-core, 9.7.x at the time of writing) for the cdcd
# test suite, on a Debian 12 host. Bookworm ships no MySQL and sid's mysqld needs a newer libc,
# so it runs inside a minimal debootstrap'ed sid chroot at $SIDROOT.
#
#   scripts/mysql.sh install      # one-off, ~3 min, ~1.4 GB: debootstrap sid + mysql-server-core + client
#   scripts/mysql.sh start        # install if missing, init datadir if missing, start on 127.0.0.1:$PORT
#   scripts/mysql.sh stop         # clean shutdown (SIGTERM to the pid in the pid file)
#   scripts/mysql.sh reset        # stop, wipe the datadir (binlogs included), start fresh
#   scripts/mysql.sh sql "SQL"    # run SQL as root through the chroot's mysql client (socket)
#   scripts/mysql.sh env          # print the CDCD_TEST_MYSQL_* exports
#   scripts/mysql.sh status
#
# Server: GTID on, ROW binlog, FULL row image, FULL row metadata, rows_query events, CRC32,
# max_allowed_packet 1G, max_binlog_size 256M, server-id 1, no X plugin.
# TLS: a throw-away CA + server cert with SAN localhost/127.0.0.1 (generated once under
# $SIDROOT/var/lib/cdc-mysql-tls) is installed as ca.pem/server-cert.pem/server-key.pem in the
# datadir, replacing mysqld's auto-generated certs (those carry no SAN, so hostname verification
# against 127.0.0.1 would fail). Host path of the CA: $SIDROOT/var/lib/cdc-mysql/ca.pem.
# Users: root@localhost and root@127.0.0.1 (no password), repl/replpw (REPLICATION SLAVE,
# REPLICATION CLIENT, SELECT; caching_sha2_password), app/apppw (ALL), norepl/noreplpw (SELECT).
# Database: cdc.
#
# Env: SIDROOT=/var/cache/cdc-mysql-sid PORT=3399 MIRROR=http://deb.debian.org/debian
#      MYSQLD_EXTRA="--binlog-transaction-compression=ON ..." extra server flags (applied at start)
#      INSTANCE=fail-a SERVER_ID=2 PORT=3430: a private instance beside the shared one (tests that
#        stop or reconfigure a server), in the same chroot with a datadir, socket, pid file, error
#        log and config of its own (/var/lib/cdc-mysql-$INSTANCE, /run/cdc-mysql-$INSTANCE.*, …);
#        a fresh datadir gets a fresh server_uuid. Unset: the shared instance, paths as above.
# Caveats: sid moves, so the exact version is not pinned; the mirror's sid Release file may be past
# its Valid-Until date, hence -o Acquire::Check-Valid-Until=false. Needs root (debootstrap, chroot, mount).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

SIDROOT=${SIDROOT:-/var/cache/cdc-mysql-sid}
PORT=${PORT:-3399}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
APT=(-o Acquire::Check-Valid-Until=false -o Acquire::Retries=3)
SERVER_ID=${SERVER_ID:-1}
NAME=cdc-mysql${INSTANCE:+-$INSTANCE}      # every per-instance path derives from it
case "$NAME" in *[!a-zA-Z0-9_-]*|cdc-mysql-tls) die "INSTANCE=$INSTANCE: letters, digits, - and _ only, not tls (the CA's directory)";; esac
DATADIR_IN=/var/lib/$NAME                  # paths as seen inside the chroot
DATADIR=$SIDROOT$DATADIR_IN                # ... and from the host
TLSDIR=$SIDROOT/var/lib/cdc-mysql-tls      # one CA for every instance
SOCK_IN=/run/$NAME.sock
PID_IN=/run/$NAME.pid
PIDFILE=$SIDROOT$PID_IN
ERRLOG_IN=/var/lib/$NAME.err
ERRLOG=$SIDROOT$ERRLOG_IN
CNF_IN=/etc/$NAME.cnf

in_root() { chroot "$SIDROOT" "$@"; }
client() { in_root mysql --no-defaults --socket="$SOCK_IN" -uroot "$@"; }

mount_proc() { mountpoint -q "$SIDROOT/proc" || mount -t proc proc "$SIDROOT/proc"; }

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  proc_alive "$pid" mysqld || return 1
  echo "$pid"
}

do_install() {
  local t0; t0=$(now_ms)
  if [ -x "$SIDROOT/usr/sbin/mysqld" ] && [ -x "$SIDROOT/usr/bin/mysql" ] && [ -x "$SIDROOT/usr/bin/mysqlbinlog" ]; then
    log "mysql: already installed in $SIDROOT ($(in_root mysqld --version 2>/dev/null | sed 's/^.*Ver //'))"
    return 0
  fi
  need_root "mysql.sh install"
  case "$SIDROOT" in /?*/?*) ;; *) die "refusing SIDROOT=$SIDROOT (want an absolute path at least two levels deep)";; esac
  if [ ! -x "$SIDROOT/usr/sbin/mysqld" ] && { [ ! -x "$SIDROOT/usr/bin/apt-get" ] || [ ! -f "$SIDROOT/.cdcd-debootstrap-done" ]; }; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    if [ -e "$SIDROOT" ]; then      # a half-finished debootstrap: start over (never with proc mounted)
      log "mysql: removing incomplete chroot $SIDROOT"
      ! mountpoint -q "$SIDROOT/proc" || umount "$SIDROOT/proc"
      rm -rf --one-file-system "$SIDROOT"
    fi
    mkdir -p "$SIDROOT"
    log "mysql: debootstrap sid into $SIDROOT (a few minutes)"
    debootstrap --variant=minbase --include=ca-certificates sid "$SIDROOT" "$MIRROR" \
      > /tmp/cdcd-debootstrap.log 2>&1 || { tail -30 /tmp/cdcd-debootstrap.log >&2; die "debootstrap failed"; }
    touch "$SIDROOT/.cdcd-debootstrap-done"
  fi
  mount_proc
  [ -s "$SIDROOT/etc/resolv.conf" ] || cp /etc/resolv.conf "$SIDROOT/etc/resolv.conf" 2>/dev/null || true
  log "mysql: apt-get install mysql-server-core mysql-client-core (in the chroot)"
  local out=/tmp/cdcd-mysql-sid-apt.log
  in_root apt-get "${APT[@]}" update -qq > "$out" 2>&1 || { tail -20 "$out" >&2; die "apt-get update in $SIDROOT failed"; }
  DEBIAN_FRONTEND=noninteractive in_root apt-get "${APT[@]}" install -y -qq --no-install-recommends \
    mysql-server-core mysql-client-core > "$out" 2>&1 || { tail -30 "$out" >&2; die "apt-get install in $SIDROOT failed"; }
  if ! in_root sh -c 'command -v mysqlbinlog' >/dev/null; then
    # mysqlbinlog moved between packages over time; the full client package has it for sure
    DEBIAN_FRONTEND=noninteractive in_root apt-get "${APT[@]}" install -y -qq --no-install-recommends \
      mysql-client > "$out" 2>&1 || true
  fi
  in_root sh -c 'command -v mysqlbinlog' >/dev/null || die "mysqlbinlog missing in $SIDROOT"
  log "mysql: installed $(in_root mysqld --version | awk '{print $3}') in $(since_s "$t0") s"
}

write_cnf() {
  cat > "$SIDROOT$CNF_IN" <<CNF
# generated by cdcd scripts/mysql.sh
[mysqld]
user=root
datadir=$DATADIR_IN
socket=$SOCK_IN
pid-file=$PID_IN
log-error=$ERRLOG_IN
bind-address=127.0.0.1
port=$PORT
mysqlx=OFF
server-id=$SERVER_ID
log-bin=binlog
binlog-format=ROW
binlog-row-image=FULL
binlog-row-metadata=FULL
binlog-rows-query-log-events=ON
binlog-checksum=CRC32
gtid-mode=ON
enforce-gtid-consistency=ON
max-allowed-packet=1G
max-binlog-size=256M
binlog-expire-logs-seconds=259200
character-set-server=utf8mb4
innodb-buffer-pool-size=512M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
performance-schema=OFF
secure-file-priv=""
CNF
}

install_tls() {  # our SAN certs over mysqld's auto-generated ones (same file names in the datadir)
  gen_tls "$TLSDIR"
  local f
  for f in ca.pem ca-key.pem server-cert.pem server-key.pem; do
    cmp -s "$TLSDIR/$f" "$DATADIR/$f" || cp "$TLSDIR/$f" "$DATADIR/$f"
  done
  # the auto-generated client cert is signed by the replaced CA: drop it to avoid confusion
  rm -f "$DATADIR/client-cert.pem" "$DATADIR/client-key.pem"
}

# Users and database, run once per datadir (and again whenever this SQL changes): re-running it at
# every start would add CREATE USER events to the binlog each time.
USERS_SQL="CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED WITH caching_sha2_password BY 'replpw';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'%';
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'apppw';
GRANT ALL ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'norepl'@'%' IDENTIFIED BY 'noreplpw';
GRANT SELECT ON *.* TO 'norepl'@'%';
CREATE DATABASE IF NOT EXISTS cdc;"


do_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"
    log "mysql ($SIDROOT): not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do proc_alive "$pid" mysqld || break; sleep 0.2; done
  if proc_alive "$pid" mysqld; then die "mysqld pid $pid did not stop within 60 s (see $ERRLOG)"; fi
  rm -f "$PIDFILE"
  log "mysql: stopped (pid $pid)"
}

do_start() {
  local pid t0
  if [ ! -x "$SIDROOT/usr/sbin/mysqld" ] || [ ! -x "$SIDROOT/usr/bin/mysqlbinlog" ]; then do_install; fi
  mount_proc
  if pid=$(running_pid); then
    log "mysql: already running (pid $pid) on 127.0.0.1:$PORT"
    return 0
  fi
  # not running: a killed mysqld leaves its socket lock behind (mysqld refuses to start while the pid
  # in it looks alive, e.g. as a not yet reaped zombie)
  rm -f "$PIDFILE" "$SIDROOT$SOCK_IN" "$SIDROOT$SOCK_IN.lock"
  wait_port_free "$PORT" || die "127.0.0.1:$PORT is in use by another process (not ours: no live pid in our pid file)"
  write_cnf
  if [ ! -d "$DATADIR/mysql" ]; then
    t0=$(now_ms)
    rm -rf "$DATADIR"
    in_root mysqld --defaults-file="$CNF_IN" --initialize-insecure \
      || { tail -30 "$ERRLOG" >&2; die "mysqld --initialize-insecure failed"; }
    log "mysql: datadir initialised in $(since_s "$t0") s"
  fi
  install_tls

  t0=$(now_ms)
  # detached: own session, no inherited stdio (CI runners and terminals must not wait on it)
  # shellcheck disable=SC2086
  setsid chroot "$SIDROOT" mysqld --defaults-file="$CNF_IN" \
    --ssl-ca="$DATADIR_IN/ca.pem" --ssl-cert="$DATADIR_IN/server-cert.pem" --ssl-key="$DATADIR_IN/server-key.pem" \
    ${MYSQLD_EXTRA:-} < /dev/null > "$SIDROOT/var/lib/$NAME.stdout" 2>&1 &
  local bg=$! ok=0
  for _ in $(seq 1 900); do
    if client -e 'SELECT 1' >/dev/null 2>&1; then ok=1; break; fi
    if ! kill -0 "$bg" 2>/dev/null && ! running_pid >/dev/null; then break; fi
    sleep 0.1
  done
  if [ $ok != 1 ]; then
    tail -30 "$ERRLOG" >&2 2>/dev/null || true
    tail -10 "$SIDROOT/var/lib/$NAME.stdout" >&2 2>/dev/null || true
    die "mysqld did not come up on 127.0.0.1:$PORT (log: $ERRLOG)"
  fi
  ensure_users
  log "mysql: up in $(since_s "$t0") s (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, $(client -N -e \
    "SELECT CONCAT(@@version, ' gtid_mode=', @@gtid_mode, ' row_image=', @@binlog_row_image, ' row_metadata=', @@binlog_row_metadata, ' rows_query=', @@binlog_rows_query_log_events, ' checksum=', @@binlog_checksum, ' tls=', IF(@@ssl_ca = '', 'NO', 'YES'))")"
}

do_env() {
  print_export CDCD_TEST_MYSQL_URL "mysql://root@127.0.0.1:$PORT"
  print_export CDCD_TEST_MYSQL_REPL_URL "mysql://repl:replpw@127.0.0.1:$PORT"
  print_export CDCD_TEST_MYSQL_NOREPL_URL "mysql://norepl:noreplpw@127.0.0.1:$PORT"
  print_export CDCD_TEST_MYSQL_TLS_CA "$DATADIR/ca.pem"
  print_export CDCD_TEST_MYSQL_SIDROOT "$SIDROOT"
  print_export CDCD_TEST_MYSQL_DATADIR "$DATADIR"
  # mysqlbinlog runs in the chroot; this wrapper maps host file arguments into it
  print_export CDCD_TEST_MYSQLBINLOG "$HERE/mysqlbinlog"
}

case "${1:-start}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  reset) do_stop; rm -rf "$DATADIR" "$ERRLOG"; do_start ;;
  sql) shift; mount_proc; client -e "$*" ;;
  env) do_env ;;
  status) if pid=$(running_pid); then echo "mysql: running (pid $pid) on 127.0.0.1:$PORT"; else echo "mysql: stopped"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|reset|sql \"SQL\"|env|status" >&2; exit 2 ;;
esac
