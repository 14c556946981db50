#!/usr/bin/env bash
# Regenerates our own binlog fixtures from the live servers, with their reference decodes:
#
#   crates/binlog/tests/fixtures/mariadb1011/   MariaDB 10.11, decoded by its mariadb-binlog
#   crates/binlog/tests/fixtures/mysql97-live/  Oracle MySQL 9.7, decoded by scripts/mysqlbinlog
#   crates/binlog/tests/fixtures/mysql97-geometry-as-blob/
#                                               the transactions with spatial columns of our
#                                               mysql97*/ binlogs, those columns made LONGBLOB
#                                               (scripts/geometry-as-blob.py), which mysqlbinlog
#                                               can print
#
#   scripts/make-fixtures.sh [mariadb] [mysql] [geometry]     (default: all three, in this order)
#
# For each server it runs crates/binlog/tests/fixtures/sql/workload-<server>.sql in a binlog file
# of its own (FLUSH BINARY LOGS before and after), copies that file to <dir>/binlog/ and writes
# the decode `-vv` with table metadata to <dir>/decoded/. The fixture test
# (crates/binlog/tests/fixtures.rs) compares our decoder with those decodes.
#
# Nothing else may write to the server while the workload runs: the script checks that all
# statements in the file came from the workload's connection and fails otherwise (run it again).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

ROOT=$(cd "$HERE/.." && pwd)
FIXTURES=$ROOT/crates/binlog/tests/fixtures
SCHEMA=cdc_fixture             # the database the workloads create
MAX_BYTES=$((1024 * 1024))     # no fixture file may reach this size

# sql SERVER SQL: runs SQL (any number of statements) as root on mariadb or mysql
sql() { "$HERE/$1.sh" sql "$2"; }

# current_binlog SERVER: the binlog file the server writes to now
current_binlog() {
  local status
  case $1 in
    mariadb) status="SHOW BINLOG STATUS" ;;
    mysql) status="SHOW BINARY LOG STATUS" ;;
  esac
  sql "$1" "$status" | awk 'NR == 2 { print $1 }'
}

# decode SERVER BINLOG: the reference decode of a binlog file, on stdout
decode() {
  case $1 in
    mariadb) mariadb-binlog --no-defaults -vv --base64-output=decode-rows --print-table-metadata "$2" ;;
    mysql) "$HERE/mysqlbinlog" -vv --print-table-metadata --base64-output=DECODE-ROWS "$2" ;;
  esac
}

# check_decode DECODE: the decode shows only the workload: one connection, one database
check_decode() {
  local threads tables
  threads=$(grep -o 'thread_id=[0-9]*' "$1" | sort -u)
  [ "$(printf '%s\n' "$threads" | grep -c .)" = 1 ] ||
    die "$1: statements of several connections ($(echo "$threads" | tr '\n' ' ')): another client wrote to the server during the workload; run again"
  # shellcheck disable=SC2016  # the backticks are literal
  tables=$(grep -o 'Table_map: `[^`]*`' "$1" | sort -u)
  [ "$tables" = "Table_map: \`$SCHEMA\`" ] ||
    die "$1: rows of other databases ($(echo "$tables" | tr '\n' ' ')); run again"
}

# make SERVER DIR NAME DATADIR DECODE_SUFFIX
make_one() {
  local server=$1 dir=$FIXTURES/$2 name=$3 datadir=$4 suffix=$5
  local workload=$FIXTURES/sql/workload-$server.sql file binlog decoded t0
  t0=$(now_ms)
  [ -f "$workload" ] || die "missing $workload"
  sql "$server" "DROP DATABASE IF EXISTS $SCHEMA"
  sql "$server" "FLUSH BINARY LOGS"
  file=$(current_binlog "$server")
  [ -n "$file" ] || die "$server: cannot tell the current binlog file"
  log "$server: running $(basename "$workload") in $file"
  sql "$server" "$(cat "$workload")" > /dev/null
  sql "$server" "FLUSH BINARY LOGS"
  [ "$(current_binlog "$server")" != "$file" ] || die "$server: FLUSH BINARY LOGS did not rotate $file"
  sql "$server" "DROP DATABASE IF EXISTS $SCHEMA"

  mkdir -p "$dir/binlog" "$dir/decoded"
  binlog=$dir/binlog/$name.binlog
  decoded=$dir/decoded/$name.$suffix
  cp -- "$datadir/$file" "$binlog"
  chmod 644 "$binlog"
  decode "$server" "$binlog" > "$decoded.tmp"
  check_decode "$decoded.tmp"
  mv -f -- "$decoded.tmp" "$decoded"
  local f size
  for f in "$binlog" "$decoded"; do
    size=$(stat -c %s "$f")
    [ "$size" -lt $MAX_BYTES ] || die "$f is $size bytes; keep fixtures under $MAX_BYTES"
  done
  log "$server: wrote ${binlog#"$ROOT"/} ($(stat -c %s "$binlog") bytes) and ${decoded#"$ROOT"/} ($(stat -c %s "$decoded") bytes) in $(since_s "$t0") s"
}

# geometry_as_blob: mysql97-geometry-as-blob/ from the binlogs of mysql97/ and mysql97-live/
geometry_as_blob() {
  local out=$FIXTURES/mysql97-geometry-as-blob in name rc
  command -v python3 >/dev/null || apt_install python3
  rm -rf "$out"
  mkdir -p "$out/binlog" "$out/decoded"
  for in in "$FIXTURES"/mysql97/binlog/*.binlog "$FIXTURES"/mysql97-live/binlog/*.binlog; do
    name=$(basename "$in" .binlog)
    rc=0
    python3 "$HERE/geometry-as-blob.py" "$in" "$out/binlog/$name.binlog" || rc=$?
    case $rc in
      0) ;;
      3) continue ;;  # no spatial column
      *) die "geometry-as-blob.py failed on $in" ;;
    esac
    decode mysql "$out/binlog/$name.binlog" > "$out/decoded/$name.mysqlbinlog-vv.txt"
    ! grep -q '^###   @[0-9]*=!!' "$out/decoded/$name.mysqlbinlog-vv.txt" ||
      die "mysqlbinlog still cannot print a column of $out/binlog/$name.binlog"
  done
  log "geometry: wrote ${out#"$ROOT"/}/ ($(find "$out/binlog" -type f | wc -l) binlogs)"
}

main() {
  local servers=("$@") s
  [ ${#servers[@]} -gt 0 ] || servers=(mariadb mysql geometry)
  for s in "${servers[@]}"; do
    case $s in
      mariadb|mysql|geometry) ;;
      *) echo "usage: $0 [mariadb] [mysql] [geometry]" >&2; exit 2 ;;
    esac
  done
  "$HERE/services.sh" start
  # shellcheck source=/dev/null
  . "${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}"
  command -v mariadb-binlog >/dev/null || apt_install mariadb-client
  for s in "${servers[@]}"; do
    case $s in
      mariadb)
        make_one mariadb mariadb1011 mariadb1011-01-workload "$CDCD_TEST_MARIADB_DATADIR" mariadb-binlog-vv.txt ;;
      mysql)
        make_one mysql mysql97-live mysql97-live-01-workload "$CDCD_TEST_MYSQL_DATADIR" mysqlbinlog-vv.txt ;;
      geometry)
        geometry_as_blob ;;
    esac
  done
}

main "$@"
