#!/usr/bin/env bash
# Private MariaDB 10.11 (Debian 12 `mariadb-server`) for the cdcd test suite, with the binlog
# configured the way a CDC reader needs it. This is NOT the Debian system service (which may be
# running on :3306 and is left alone): own datadir under $BASE, --no-defaults, 127.0.0.1:$PORT.
#
#   scripts/mariadb.sh start        # install mariadb-server if missing, init datadir, start, create users
#   scripts/mariadb.sh stop         # clean shutdown (SIGTERM to the pid in the pid file)
#   scripts/mariadb.sh reset        # stop, wipe the datadir (binlogs included), start fresh
#   scripts/mariadb.sh sql "SQL"    # run SQL as root over the private socket
#   scripts/mariadb.sh env          # print the CDCD_TEST_MARIADB_* exports
#   scripts/mariadb.sh status
#
# Server: ROW binlog, FULL row image, binlog_row_metadata=$ROW_METADATA (default FULL), CRC32,
# GTID strict mode, ANNOTATE_ROWS on, max_allowed_packet 1G, max_binlog_size 256M, server-id 1,
# TLS with a throw-away CA (SAN localhost/127.0.0.1) generated once under $BASE/tls.
# Users: root (no password; socket, localhost and 127.0.0.1), repl/replpw (REPLICATION SLAVE,
# BINLOG MONITOR, SELECT), app/apppw (ALL), norepl/noreplpw (SELECT only). Database: cdc.
#
# Env: BASE=/tmp/cdcd-mariadb PORT=3307 ROW_METADATA=FULL (NO_LOG|MINIMAL|FULL)
#      MARIADBD_EXTRA="--flag ..." extra server flags (only applied when the server starts)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

BASE=${BASE:-/tmp/cdcd-mariadb}
PORT=${PORT:-3307}
ROW_METADATA=${ROW_METADATA:-FULL}
DATADIR=$BASE/data
TLSDIR=$BASE/tls
SOCK=$BASE/mysqld.sock
PIDFILE=$BASE/mysqld.pid
ERRLOG=$BASE/mysqld.err

client() { mariadb --no-defaults --protocol=socket -S "$SOCK" -uroot "$@"; }

running_pid() {  # prints the pid and succeeds if our mariadbd is alive
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  proc_alive "$pid" mariadbd || return 1
  echo "$pid"
}

ensure_installed() {
  command -v mariadbd >/dev/null && command -v mariadb >/dev/null && command -v mariadb-install-db >/dev/null && return 0
  apt_install mariadb-server mariadb-client
  command -v mariadbd >/dev/null || die "mariadbd still missing after installing mariadb-server"
}

do_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"
    log "mariadb ($BASE): not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true          # SIGTERM = clean shutdown
  for _ in $(seq 1 300); do proc_alive "$pid" mariadbd || break; sleep 0.2; done
  if proc_alive "$pid" mariadbd; then die "mariadbd pid $pid did not stop within 60 s (see $ERRLOG)"; fi
  rm -f "$PIDFILE"
  log "mariadb: stopped (pid $pid)"
}

# Users and database, run once per datadir (and again whenever this SQL changes): re-running it at
# every start would add events to the binlog each time.
USERS_SQL="CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'replpw';
GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO 'repl'@'%';
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'apppw';
GRANT ALL ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'norepl'@'%' IDENTIFIED BY 'noreplpw';
GRANT SELECT ON *.* TO 'norepl'@'%';
CREATE DATABASE IF NOT EXISTS cdc;"


do_start() {
  local pid t0 cur
  ensure_installed
  if pid=$(running_pid); then
    cur=$(client -N -e 'select @@binlog_row_metadata' 2>/dev/null || echo '?')
    log "mariadb: already running (pid $pid) on 127.0.0.1:$PORT, binlog_row_metadata=$cur"
    if [ "$cur" != "$ROW_METADATA" ]; then
      log "WARNING: ROW_METADATA=$ROW_METADATA requested but the running server has $cur; run '$0 stop' then start"
    fi
    return 0
  fi
  rm -f "$PIDFILE"
  wait_port_free "$PORT" || die "127.0.0.1:$PORT is in use by another process (not ours: no live pid in our pid file)"
  mkdir -p "$BASE"
  gen_tls "$TLSDIR"

  # 1) System tables in a private datadir (~2-3 s). 'normal' root auth: root@localhost has no
  #    password and no unix_socket dependency; the server only listens on 127.0.0.1 anyway.
  if [ ! -d "$DATADIR/mysql" ]; then
    t0=$(now_ms)
    rm -rf "$DATADIR"
    mariadb-install-db --no-defaults --user=root --datadir="$DATADIR" \
      --auth-root-authentication-method=normal --skip-test-db \
      > "$BASE/install-db.log" 2>&1 || { tail -20 "$BASE/install-db.log" >&2; die "mariadb-install-db failed"; }
    log "mariadb: datadir initialised in $(since_s "$t0") s"
  fi

  # 2) Start detached (own session, no inherited stdio) so CI runners and terminals don't wait on it.
  #    flush-at-commit=2 / sync_binlog=0 only speed up bulk loads; they do not change binlog content.
  t0=$(now_ms)
  # shellcheck disable=SC2086
  setsid mariadbd --no-defaults --user=root \
    --datadir="$DATADIR" --socket="$SOCK" --pid-file="$PIDFILE" --log-error="$ERRLOG" \
    --bind-address=127.0.0.1 --port="$PORT" \
    --server-id=1 \
    --log-bin=mysql-bin --log-bin-index=mysql-bin.index \
    --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata="$ROW_METADATA" \
    --binlog-checksum=CRC32 \
    --binlog-annotate-row-events=ON \
    --gtid-strict-mode=ON \
    --max-binlog-size=256M \
    --binlog-expire-logs-seconds=259200 \
    --max-allowed-packet=1G \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
    --ssl-ca="$TLSDIR/ca.pem" --ssl-cert="$TLSDIR/server-cert.pem" --ssl-key="$TLSDIR/server-key.pem" \
    ${MARIADBD_EXTRA:-} \
    < /dev/null > "$BASE/mariadbd.stdout" 2>&1 &

  # 3) Wait until it answers (up to 60 s).
  local ok=0
  for _ in $(seq 1 600); do
    if client -e 'select 1' >/dev/null 2>&1; then ok=1; break; fi
    if ! kill -0 "$!" 2>/dev/null && ! running_pid >/dev/null; then break; fi
    sleep 0.1
  done
  if [ $ok != 1 ]; then
    tail -30 "$ERRLOG" >&2 2>/dev/null || true
    tail -10 "$BASE/mariadbd.stdout" >&2 2>/dev/null || true
    die "mariadbd did not come up on 127.0.0.1:$PORT (log: $ERRLOG)"
  fi
  ensure_users
  log "mariadb: up in $(since_s "$t0") s (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, $(client -N -e \
    "select concat(@@version, ' binlog_format=', @@binlog_format, ' row_image=', @@binlog_row_image, ' row_metadata=', @@binlog_row_metadata, ' checksum=', @@binlog_checksum, ' gtid_strict=', @@gtid_strict_mode, ' tls=', @@have_ssl)")"
}

do_env() {
  print_export CDCD_TEST_MARIADB_URL "mysql://root@127.0.0.1:$PORT"
  print_export CDCD_TEST_MARIADB_REPL_URL "mysql://repl:replpw@127.0.0.1:$PORT"
  print_export CDCD_TEST_MARIADB_NOREPL_URL "mysql://norepl:noreplpw@127.0.0.1:$PORT"
  print_export CDCD_TEST_MARIADB_TLS_CA "$TLSDIR/ca.pem"
  print_export CDCD_TEST_MARIADB_BASE "$BASE"
  print_export CDCD_TEST_MARIADB_DATADIR "$DATADIR"
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  reset) do_stop; rm -rf "$DATADIR"; do_start ;;
  sql) shift; ensure_installed; client -e "$*" ;;
  env) do_env ;;
  status) if pid=$(running_pid); then echo "mariadb: running (pid $pid) on 127.0.0.1:$PORT"; else echo "mariadb: stopped"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|reset|sql \"SQL\"|env|status" >&2; exit 2 ;;
esac
