#!/usr/bin/env bash
# Throughput benchmark of `cdcd tail` against a live server, with the server vendor's own binlog
# decoder as the baseline. Loads 1,000,000 rows into a fresh database in a binlog file of their
# own, then streams exactly that binlog range to /dev/null with
#   (a) cdcd tail --until-end --format native
#   (b) cdcd tail --until-end --format dms
#   (c) mariadb-binlog --read-from-remote-server --base64-output=decode-rows -v   (MariaDB)
#       mysqlbinlog    --read-from-remote-server --base64-output=decode-rows -v   (MySQL, --server mysql)
# BENCH_RUNS times each (interleaved), and prints the median wall time, rows/s, peak RSS, the ratio
# to the baseline and the median CPU time, plus PASS/FAIL for the bar "native rows/s >= 2x the
# baseline's rows/s". Rows/s is rows / wall seconds.
#
#   scripts/bench-tail.sh                   # MariaDB 10.11 on 127.0.0.1:3307
#   scripts/bench-tail.sh --server mysql    # MySQL 9.7 on 127.0.0.1:3399, chroot mysqlbinlog baseline
#   scripts/bench-tail.sh --keep            # keep the cdcd_bench database afterwards
#
# Env: BENCH_RUNS=3  timed runs per reader (the median is reported)
#      BENCH_ROWS=1000000  rows to load (a multiple of 1000, at most 1000000)
#      BENCH_TLS=on  on: cdcd --tls-mode preferred and the baseline's default (TLS);
#                    off: cdcd --tls-mode disabled and the baseline with --skip-ssl / --ssl-mode=DISABLED
#      CARGO_TARGET_DIR  honoured for the release build (binary: ${CARGO_TARGET_DIR:-target}/release/cdcd)
#
# The report goes to stdout, progress to stderr. Exit 0 when the benchmark ran and the row counts
# are right, whether the bar passed or not (it is a report); non-zero on any error or wrong count.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

bench_options mariadb "$@"

RUNS=${BENCH_RUNS:-3}
ROWS=${BENCH_ROWS:-1000000}
TLS=${BENCH_TLS:-on}
DB=cdcd_bench
TABLE=bench
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$RUNS: want a positive integer"
if ! [[ $ROWS =~ ^[1-9][0-9]*$ ]] || [ $((ROWS % 1000)) != 0 ] || [ "$ROWS" -gt 1000000 ]; then
  die "BENCH_ROWS=$ROWS: want a multiple of 1000, at most 1000000"
fi
case "$TLS" in on|off) ;; *) die "BENCH_TLS=$TLS: want on or off" ;; esac

case "$SERVER" in
  mariadb)
    PORT=3307
    STATUS_SQL='SHOW MASTER STATUS'
    BASE_NAME=mariadb-binlog
    BASELINE=(mariadb-binlog)
    if [ "$TLS" = off ]; then BASELINE+=(--skip-ssl); fi
    ;;
  mysql)
    PORT=3399
    STATUS_SQL='SHOW BINARY LOG STATUS'
    BASE_NAME=mysqlbinlog
    BASELINE=("$HERE/mysqlbinlog")
    if [ "$TLS" = off ]; then BASELINE+=(--ssl-mode=DISABLED); fi
    ;;
  *) die "--server $SERVER: want mariadb or mysql" ;;
esac
BASELINE+=(--read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=repl --password=replpw
  --base64-output=decode-rows -v)
SOURCE="mysql://repl:replpw@127.0.0.1:$PORT"
CDCD_TLS=preferred
if [ "$TLS" = off ]; then CDCD_TLS=disabled; fi
# A server id of our own, so that a concurrent cdcd with the default id is not kicked off (or us).
export CDCD_SOURCE__SERVER_ID=${CDCD_SOURCE__SERVER_ID:-52470}

TMP=$(mktemp -d /tmp/cdcd-bench.XXXXXX)
DB_CREATED=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ "$DB_CREATED" = 1 ] && [ "$KEEP" = 0 ]; then
    if sql -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null; then
      log "dropped database $DB"
    else
      log "WARNING: could not drop database $DB"
    fi
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

sql() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B "$@"; }

# ---- 1) tools, release build, services -------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
if ! command -v mariadb >/dev/null || ! command -v mariadb-binlog >/dev/null; then
  apt_install mariadb-client
fi

build_release "$TMP/build.log"

"$HERE/services.sh" start
VERSION=$(sql -e 'SELECT @@version')
log "$SERVER: $VERSION on 127.0.0.1:$PORT"

# binlog_status: "FILE POS" of the server's current binlog end
binlog_status() { sql -e "$STATUS_SQL" | awk -F'\t' 'NR == 1 { print $1, $2 }'; }

# ---- 2) the data ----------------------------------------------------------------------------
t0=$(now_ms)
log "creating database $DB"
sql -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
DB_CREATED=1
sql "$DB" -e "
CREATE TABLE h (n INT NOT NULL PRIMARY KEY);
INSERT INTO h WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) SELECT n FROM s;
CREATE TABLE $TABLE (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  quantity INT NOT NULL,
  status TINYINT NOT NULL,
  email VARCHAR(64) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  note TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"

# The load gets a binlog file of its own: flush before it (and after it, below).
sql -e 'FLUSH BINARY LOGS'
read -r START_FILE START_POS < <(binlog_status)
[ -n "${START_POS:-}" ] || die "$STATUS_SQL returned nothing (is the binlog on?)"

BATCHES=4
OUTER=$((ROWS / 1000))
log "loading $ROWS rows into $DB.$TABLE in $BATCHES transactions (from $START_FILE:$START_POS)"
load_sql="SET SESSION binlog_format = ROW;"
for (( b = 0; b < BATCHES; b++ )); do
  lo=$(( OUTER * b / BATCHES + 1 )); hi=$(( OUTER * (b + 1) / BATCHES ))
  [ "$lo" -le "$hi" ] || continue
  load_sql+="
BEGIN;
INSERT INTO $TABLE
SELECT id,
       1 + id * 7919 % 100000,
       1 + id % 50,
       id % 5,
       CONCAT('user', LPAD(id, 8, '0'), '@', SUBSTR(SHA2(id, 256), 1, 12), '.example.com'),
       (id * 7717 % 10000000) / 100,
       '2024-01-01 00:00:00.000000' + INTERVAL (id * 31536001) MICROSECOND,
       CONCAT('order ', id, ' ', ELT(1 + id % 4, 'new', 'paid', 'shipped', 'returned'), ' ',
              SUBSTR(SHA2(id, 224), 1, 16))
FROM (SELECT (a.n - 1) * 1000 + b.n AS id FROM h a CROSS JOIN h b WHERE a.n BETWEEN $lo AND $hi) t;
COMMIT;"
done
sql "$DB" -e "$load_sql"
read -r END_FILE END_POS < <(binlog_status)
sql -e 'FLUSH BINARY LOGS'
got=$(sql -e "SELECT COUNT(*) FROM $DB.$TABLE")
[ "$got" = "$ROWS" ] || die "the table has $got rows, want $ROWS"
avg=$(sql -e "SELECT ROUND(AVG(8 + 4 + 4 + 1 + 1 + LENGTH(email) + 6 + 8 + 2 + LENGTH(note))) FROM $DB.$TABLE")

# Files of the range, and its size in bytes.
mapfile -t FILES < <(sql -e 'SHOW BINARY LOGS' |
  awk -F'\t' -v a="$START_FILE" -v b="$END_FILE" '$1 >= a && $1 <= b { print $1 }')
if [ ${#FILES[@]} = 0 ] || [ "${FILES[0]}" != "$START_FILE" ] || [ "${FILES[-1]}" != "$END_FILE" ]; then
  die "could not list the binlog files from $START_FILE to $END_FILE"
fi
BYTES=$(sql -e 'SHOW BINARY LOGS' | awk -F'\t' -v a="$START_FILE" -v b="$END_FILE" \
  -v sp="$START_POS" -v ep="$END_POS" '$1 >= a && $1 <= b {
    s = ($1 == a) ? sp : 0; e = ($1 == b) ? ep : $2; t += e - s } END { print t }')
MIB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
log "loaded in $(since_s "$t0") s: $START_FILE:$START_POS .. $END_FILE:$END_POS (${#FILES[@]} file(s), $MIB MiB, ~$avg bytes of column data per row)"

CDCD_ARGS=(tail --source "$SOURCE" --from "file:$START_FILE:$START_POS" --until-end
  --tables "$DB.$TABLE" --tls-mode "$CDCD_TLS")
BASE_ARGS=("${BASELINE[@]}" --start-position="$START_POS" --stop-position="$END_POS" "${FILES[@]}")

# ---- 3) row counts (untimed; they also warm the server's page cache) --------------------------
# count NAME PATTERN CMD...: sets TOTAL (output lines of CMD) and MATCHED (lines containing
# PATTERN) and CMD_RC; CMD's stderr goes to $TMP/NAME.err
count() {
  local name=$1 pattern=$2; shift 2
  read -r TOTAL MATCHED < <({ "$@" 2> "$TMP/$name.err"; echo $? > "$TMP/$name.rc"; } |
    awk -v p="$pattern" '{ n++ } index($0, p) { m++ } END { print n + 0, m + 0 }')
  CMD_RC=$(cat "$TMP/$name.rc")
}
# show_err NAME: the command's stderr, without mysqlbinlog's password-on-the-command-line warning
show_err() { grep -v 'Using a password on the command line' "$TMP/$1.err" >&2 || true; }

# check_cdcd FORMAT PATTERN WHAT: cdcd must print exactly $ROWS lines, all matching PATTERN
check_cdcd() {
  local format=$1 pattern=$2 what=$3
  log "counting rows: cdcd tail --format $format"
  count "$format" "$pattern" "$CDCD" "${CDCD_ARGS[@]}" --format "$format"
  if [ "$CMD_RC" != 0 ]; then show_err "$format"; die "cdcd tail --format $format exited $CMD_RC"; fi
  if [ -s "$TMP/$format.err" ]; then log "cdcd $format stderr:"; show_err "$format"; fi
  if [ "$TOTAL" != "$ROWS" ] || [ "$MATCHED" != "$ROWS" ]; then
    die "cdcd tail --format $format printed $TOTAL lines ($MATCHED $what), want $ROWS"
  fi
  log "cdcd $format: $TOTAL lines, all $what"
}
check_cdcd native "\"schema\":\"$DB\",\"table\":\"$TABLE\"" "for $DB.$TABLE"
check_cdcd dms '{"data":' "data records"

BASE_OK=1
log "counting rows: $BASE_NAME"
count baseline '### INSERT INTO' "${BASE_ARGS[@]}"
if [ "$CMD_RC" != 0 ] || [ "$MATCHED" != "$ROWS" ]; then
  show_err baseline
  if [ "$SERVER" = mysql ]; then
    log "WARNING: $BASE_NAME could not read the MySQL stream (exit $CMD_RC, $MATCHED rows decoded);"
    log "WARNING: no baseline for MySQL: use the MariaDB run (--server mariadb) as the only baseline"
    BASE_OK=0
  else
    die "$BASE_NAME exited $CMD_RC and decoded $MATCHED rows, want $ROWS"
  fi
else
  log "$BASE_NAME: $MATCHED rows decoded ($TOTAL lines of output)"
fi

# Traffic written after the load by other clients: cdcd --until-end reads it too (and filters it
# out), the baseline stops at the end of the load. Reported, so that a busy server shows.
after_mib() {
  sql -e 'SHOW BINARY LOGS' | awk -F'\t' -v f="$END_FILE" -v p="$END_POS" '
    $1 == f { t += $2 - p } $1 > f { t += $2 } END { printf "%.1f", t / 1048576 }'
}
AFTER0=$(after_mib)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "binlog after the load range: $AFTER0 MiB (cdcd --until-end reads it too); load average $LOAD0"

# ---- 4) timed runs --------------------------------------------------------------------------
# timed NAME CMD...: one run to /dev/null; appends "wall-s peak-RSS-KiB cpu-s" to $TMP/NAME.times
timed() {
  local name=$1 rc=0 t0 t1; shift
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%e %M %U %S' -o "$TMP/time" "$@" > /dev/null 2> "$TMP/$name.err" || rc=$?
  t1=$EPOCHREALTIME
  if [ $rc != 0 ]; then
    show_err "$name"
    cat "$TMP/time" >&2 || true
    die "$name run exited $rc: $*"
  fi
  # wall time from bash's clock (ms resolution; time's %e has 10 ms), peak RSS (KiB) and
  # user + system CPU seconds of the reader process from time
  tail -1 "$TMP/time" | awk -v a="$t0" -v b="$t1" '{ printf "%.3f %d %.2f\n", b - a, $2, $3 + $4 }' >> "$TMP/$name.times"
  log "  $name: $(tail -1 "$TMP/$name.times" | awk '{ printf "%s s, %.1f MiB, %s s CPU", $1, $2 / 1024, $3 }')"
}

READERS=(native dms)
if [ "$BASE_OK" = 1 ]; then READERS+=(baseline); fi
for (( i = 1; i <= RUNS; i++ )); do
  log "run $i/$RUNS"
  timed native "$CDCD" "${CDCD_ARGS[@]}" --format native
  timed dms "$CDCD" "${CDCD_ARGS[@]}" --format dms
  if [ "$BASE_OK" = 1 ]; then timed baseline "${BASE_ARGS[@]}"; fi
done

AFTER1=$(after_mib)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- 5) report ------------------------------------------------------------------------------
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { awk '{ print $1 }' "$TMP/$1.times" | median | awk '{ printf "%.3f\n", $1 }'; }
med_cpu() { awk '{ print $3 }' "$TMP/$1.times" | median | awk '{ printf "%.2f\n", $1 }'; }
peak_mib() { awk '$2 > m { m = $2 } END { printf "%.1f", m / 1024 }' "$TMP/$1.times"; }
runs() { awk '{ printf "%s%s", (NR > 1 ? " " : ""), $1 }' "$TMP/$1.times"; }
rate() { awk -v r="$ROWS" -v s="$1" 'BEGIN { if (s > 0) printf "%d", r / s; else print "inf" }'; }

base_rate=
if [ "$BASE_OK" = 1 ]; then base_rate=$(rate "$(med baseline)"); fi
declare -A LABEL=([native]="cdcd tail --format native" [dms]="cdcd tail --format dms"
  [baseline]="$BASE_NAME -v (decode-rows)")

echo
echo "cdcd tail benchmark, $(date -u +%FT%TZ), $(nproc) cores, $VERSION on 127.0.0.1:$PORT (TLS $TLS)"
echo "$("$CDCD" --version) (source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git checkout'))"
echo "$ROWS rows in $DB.$TABLE, binlog $START_FILE:$START_POS .. $END_FILE:$END_POS ($MIB MiB), $RUNS runs each, output to /dev/null"
echo
FMT="%-33s %9s %9s %13s %$((4 + ${#BASE_NAME}))s %6s   %s\n"
# shellcheck disable=SC2059  # the format is ours
printf "$FMT" reader "median s" "rows/s" "peak RSS MiB" "vs $BASE_NAME" "CPU s" "runs (s)"
for r in "${READERS[@]}"; do
  s=$(med "$r"); rr=$(rate "$s")
  ratio=n/a
  [ -z "$base_rate" ] || ratio=$(awk -v a="$rr" -v b="$base_rate" 'BEGIN { printf "%.2fx", a / b }')
  # shellcheck disable=SC2059
  printf "$FMT" "${LABEL[$r]}" "$s" "$rr" "$(peak_mib "$r")" "$ratio" "$(med_cpu "$r")" "$(runs "$r")"
done
echo
echo "binlog written by other clients after the range (read by cdcd only): $AFTER0 MiB before the timed runs, $AFTER1 MiB after"
echo "load average (1/5/15 min): $LOAD0 before the timed runs, $LOAD1 after"
if [ -n "$base_rate" ]; then
  native_rate=$(rate "$(med native)")
  if awk -v a="$native_rate" -v b="$base_rate" 'BEGIN { exit !(a >= 2 * b) }'; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  echo "bar: cdcd native rows/s >= 2x $BASE_NAME rows/s: $verdict ($(awk -v a="$native_rate" -v b="$base_rate" 'BEGIN { printf "%.2fx", a / b }'))"
else
  echo "bar: n/a ($BASE_NAME could not read the stream; see the MariaDB run)"
fi
