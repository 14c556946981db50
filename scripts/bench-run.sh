#!/usr/bin/env bash
# Benchmark of `cdcd run`: catch-up throughput into a local lake and into S3 (SeaweedFS), with
# `cdcd tail` on the same binlog range as the baseline, then the lake's freshness under a steady
# write load.
#
# Catch-up: loads BENCH_ROWS (1,000,000) rows into a fresh database, in transactions of
# BENCH_TXN_ROWS (1,000) rows, into a users-like table whose name, email and phone are masked with
# `action = "hmac"`. The server's GTID state before the load is the start of every reader:
#   (a) cdcd tail --from gtid:… --until-end --tables DB.users   (same masking rules) > /dev/null
#   (b) the same without masking rules
#   (c) cdcd run --until-end, [run] start = "gtid:…", lake in a fresh local directory
#   (d) the same with the lake in a fresh s3://cdcd-test/bench-run/… prefix (SeaweedFS)
# BENCH_RUNS times each (interleaved, a fresh lake every run). Every lake is read back with DuckDB:
# exactly BENCH_ROWS rows, ids 1..BENCH_ROWS once each, the three columns HMAC-SHA256 hex (row 1
# checked against an HMAC computed here). Prints the median wall time, rows/s, peak RSS, CPU time,
# objects and bytes written, and PASS/FAIL for the bar "each lake keeps at least half of (a)'s
# rows/s".
#
# Freshness: for each flush_seconds in BENCH_FRESH_FLUSH ("5.0 1.0"; 5.0 is the default), runs
# `cdcd run` (no --until-end) into a fresh local lake while a writer commits BENCH_FRESH_RATE
# (1,000) rows/s for BENCH_FRESH_SECONDS (30) s, in transactions of BENCH_FRESH_TXN_ROWS (10)
# rows, each row stamped with the server's NOW(6). A poller lists the lake every 20 ms and notes
# when each object appears; a row's latency is (object first seen) - (its NOW(6)). Prints
# min/p50/p95/max over all rows, and fails if a row did not appear.
#
#   scripts/bench-run.sh                   # MariaDB 10.11 on 127.0.0.1:3307
#   scripts/bench-run.sh --server mysql    # MySQL 9.7 on 127.0.0.1:3399
#   scripts/bench-run.sh --keep            # keep the database, the lakes and the S3 objects
#
# Env: BENCH_RUNS=3  timed runs per reader (the median is reported)
#      BENCH_ROWS=1000000  rows to load (a multiple of BENCH_TXN_ROWS)
#      BENCH_TXN_ROWS=1000  rows per load transaction (1..1000)
#      BENCH_FRESH_SECONDS=30  length of each freshness run (0: no freshness runs)
#      BENCH_FRESH_RATE=1000  rows/s the writer commits
#      BENCH_FRESH_TXN_ROWS=10  rows per writer transaction
#      BENCH_FRESH_FLUSH="5.0 1.0"  lake.flush_seconds of the freshness runs
#      BENCH_TLS=on  on: --tls-mode preferred (TLS); off: --tls-mode disabled
#      CDCD_BENCH_MASKING_KEY  the HMAC key (a fixed test key unless set)
#      CARGO_TARGET_DIR  honoured for the release build (binary: ${CARGO_TARGET_DIR:-target}/release/cdcd)
#
# The report goes to stdout, progress to stderr. Exit 0 when every row arrived and the bar passed;
# 1 on any error, lost or extra row; 3 when the bar failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

bench_options mariadb "$@"

RUNS=${BENCH_RUNS:-3}
ROWS=${BENCH_ROWS:-1000000}
TXN_ROWS=${BENCH_TXN_ROWS:-1000}
FRESH_SECONDS=${BENCH_FRESH_SECONDS:-30}
FRESH_RATE=${BENCH_FRESH_RATE:-1000}
FRESH_TXN_ROWS=${BENCH_FRESH_TXN_ROWS:-10}
read -r -a FRESH_FLUSH <<< "${BENCH_FRESH_FLUSH:-5.0 1.0}"
TLS=${BENCH_TLS:-on}
DB=cdcd_bench_run
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
posint "$RUNS" || die "BENCH_RUNS=$RUNS: want a positive integer"
{ posint "$TXN_ROWS" && [ "$TXN_ROWS" -le 1000 ]; } || die "BENCH_TXN_ROWS=$TXN_ROWS: want 1..1000"
{ posint "$ROWS" && [ $((ROWS % TXN_ROWS)) = 0 ]; } ||
  die "BENCH_ROWS=$ROWS: want a positive multiple of BENCH_TXN_ROWS ($TXN_ROWS)"
[[ $FRESH_SECONDS =~ ^[0-9]+$ ]] || die "BENCH_FRESH_SECONDS=$FRESH_SECONDS: want a whole number"
posint "$FRESH_RATE" || die "BENCH_FRESH_RATE=$FRESH_RATE: want a positive integer"
posint "$FRESH_TXN_ROWS" || die "BENCH_FRESH_TXN_ROWS=$FRESH_TXN_ROWS: want a positive integer"
for f in "${FRESH_FLUSH[@]}"; do
  [[ $f =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_FRESH_FLUSH: $f is not a number of seconds"
done
case "$TLS" in on) CDCD_TLS=preferred ;; off) CDCD_TLS=disabled ;; *) die "BENCH_TLS=$TLS: want on or off" ;; esac

case "$SERVER" in
  mariadb) PORT=3307; STATUS_SQL='SHOW MASTER STATUS'; GTID_SQL='SELECT @@gtid_binlog_pos' ;;
  mysql) PORT=3399; STATUS_SQL='SHOW BINARY LOG STATUS'; GTID_SQL="SELECT REPLACE(@@gtid_executed, '\n', '')" ;;
  *) die "--server $SERVER: want mariadb or mysql" ;;
esac
SOURCE="mysql://repl:replpw@127.0.0.1:$PORT"
# A server id of our own, so that a concurrent cdcd with the default id is not kicked off (or us).
export CDCD_SOURCE__SERVER_ID=${CDCD_SOURCE__SERVER_ID:-52471}
export CDCD_BENCH_MASKING_KEY=${CDCD_BENCH_MASKING_KEY:-bench-run-hmac-key-0123456789abcdef}
unset CDCD_CONFIG

TMP=$(mktemp -d /tmp/cdcd-bench-run.XXXXXX)
DB_CREATED=0
S3_ROOT=
BG_PIDS=()   # cdcd and the poller of a freshness run, while they run
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then
    log "kept: database $DB, lakes in $TMP${S3_ROOT:+, objects under $S3_ROOT}"
    return
  fi
  if [ "$DB_CREATED" = 1 ]; then
    if sql -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null; then
      log "dropped database $DB"
    else
      log "WARNING: could not drop database $DB"
    fi
  fi
  if [ -n "$S3_ROOT" ]; then
    "$PY" "$TMP/bench.py" s3-delete "$S3_ROOT" >&2 || log "WARNING: could not delete $S3_ROOT"
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

sql() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B "$@"; }

# ---- 1) tools, release build, services -------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
command -v mariadb >/dev/null || apt_install mariadb-client

build_release "$TMP/build.log"

"$HERE/services.sh" start
ENV_FILE=${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}
# shellcheck disable=SC1090
. "$ENV_FILE"
PY=$CDCD_TEST_DUCKDB_PYTHON
BUCKET=$CDCD_TEST_S3_BUCKET
[ -x "$PY" ] || die "no DuckDB python at $PY (scripts/aws.sh install)"
VERSION=$(sql -e 'SELECT @@version')
log "$SERVER: $VERSION on 127.0.0.1:$PORT"

# The Python side: lake checks with DuckDB, S3 listing with boto3, the writer and the poller.
cat > "$TMP/bench.py" <<'PY'
import hashlib, hmac, json, os, sys, time, urllib.parse


def duck(lake):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    if lake.startswith("s3://"):
        con.execute(f"LOAD '{os.environ['CDCD_TEST_DUCKDB_HTTPFS_EXT']}'")
        endpoint = urllib.parse.urlparse(os.environ["CDCD_TEST_S3_ENDPOINT"])
        con.execute(f"SET s3_endpoint='{endpoint.netloc}'")
        con.execute(f"SET s3_use_ssl={'true' if endpoint.scheme == 'https' else 'false'}")
        con.execute("SET s3_url_style='path'")
        con.execute(f"SET s3_access_key_id='{os.environ['AWS_ACCESS_KEY_ID']}'")
        con.execute(f"SET s3_secret_access_key='{os.environ['AWS_SECRET_ACCESS_KEY']}'")
        con.execute(f"SET s3_region='{os.environ.get('AWS_REGION', 'us-east-1')}'")
    return con


def s3(url):
    import boto3
    u = urllib.parse.urlparse(url)
    client = boto3.client("s3", endpoint_url=os.environ["CDCD_TEST_S3_ENDPOINT"],
                          config=__import__("botocore.config").config.Config(s3={"addressing_style": "path"}))
    return client, u.netloc, u.path.lstrip("/").rstrip("/") + "/"


def s3_objects(url):
    client, bucket, prefix = s3(url)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield client, bucket, o


def verify(lake, table, rows, name, email, phone):
    """The lake holds ids 1..rows once each, name/email/phone masked with the HMAC key."""
    rows = int(rows)
    con = duck(lake)
    glob = f"{lake.rstrip('/')}/{table.replace('.', '/')}/*/*/*/*/*.parquet"
    hexes = " AND ".join(f"regexp_full_match({c}, '[0-9a-f]{{64}}')" for c in ("name", "email", "phone"))
    got = con.execute(
        f"SELECT count(*), count(DISTINCT id), min(id), max(id), count(*) FILTER (WHERE {hexes}), "
        f"count(DISTINCT filename) FROM read_parquet('{glob}', hive_partitioning = true, filename = true)"
    ).fetchone()
    key = os.environ["CDCD_BENCH_MASKING_KEY"].encode()
    want = [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in (name, email, phone)]
    first = con.execute(f"SELECT name, email, phone FROM read_parquet('{glob}') WHERE id = 1").fetchall()
    problems = []
    if list(got[:4]) != [rows, rows, 1, rows]:
        problems.append(f"{got[0]} rows, {got[1]} distinct ids from {got[2]} to {got[3]}; want {rows} rows, ids 1..{rows}")
    if got[4] != rows:
        problems.append(f"{rows - got[4]} rows with a name, email or phone that is not 64 hex digits")
    if first != [tuple(want)]:
        problems.append(f"row 1 masked as {first}, want HMAC-SHA256 {want}")
    if problems:
        sys.exit(f"{lake}: " + "; ".join(problems))
    print(f"{got[0]} rows in {got[5]} objects, ids 1..{rows} once each, name/email/phone HMAC-SHA256")


def s3_bytes(url):
    n = total = 0
    for _, _, o in s3_objects(url):
        if o["Key"].endswith(".parquet"):
            n += 1
            total += o["Size"]
    print(n, total)


def s3_delete(url):
    n = 0
    for client, bucket, o in s3_objects(url):
        client.delete_object(Bucket=bucket, Key=o["Key"])
        n += 1
    print(f"[cdcd-scripts] deleted {n} objects under {url}", file=sys.stderr)


def writer(table, first_id, rate, txn_rows, seconds):
    """SQL on stdout: one INSERT of txn_rows rows (an autocommit transaction) every txn_rows/rate
    seconds, on a fixed schedule; each row carries the server's NOW(6) in written_us."""
    first_id, rate, txn_rows, seconds = int(first_id), int(rate), int(txn_rows), float(seconds)
    interval = txn_rows / rate
    count = int(rate * seconds) // txn_rows
    stamp = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
    out = sys.stdout
    start = time.monotonic()
    late = 0.0
    for t in range(count):
        delay = start + t * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        values = []
        for r in range(txn_rows):
            i = first_id + t * txn_rows + r
            values.append(f"({i},{stamp},'Live User {i}','live{i}@example.com','+1 555 {i % 10000:04d}','US',{i % 4},{i % 100000}.25,NOW(6),'live')")
        out.write(f"INSERT INTO {table} VALUES {','.join(values)};\n")
        out.flush()
    print(f"[cdcd-scripts] writer: {count} transactions of {txn_rows} rows in {time.monotonic() - start:.1f} s "
          f"(at most {late * 1000:.0f} ms behind schedule)", file=sys.stderr)


def poll(lake, stop, out):
    """Notes when each object of a local lake first appears (rename into place), every 20 ms."""
    seen = {}
    while not os.path.exists(stop):
        for root, dirs, files in os.walk(lake):
            dirs[:] = [d for d in dirs if d != "_cdcd"]
            now = time.time()
            for f in files:
                if f.endswith(".parquet"):
                    seen.setdefault(os.path.join(root, f), now)
        time.sleep(0.02)
    with open(out, "w") as o:
        json.dump(seen, o)


def fresh_report(lake, seen_file, rows):
    """p50/p95/max of (object first seen) - (row's NOW(6)) over every row."""
    rows = int(rows)
    seen = json.load(open(seen_file))
    con = duck(lake)
    glob = f"{lake.rstrip('/')}/*/*/*/*/*/*/*.parquet"
    got = con.execute(f"SELECT filename, written_us FROM read_parquet('{glob}', filename = true)").fetchall()
    missing = [f for f, _ in got if f not in seen]
    if len(got) != rows or missing:
        sys.exit(f"{lake}: {len(got)} rows, want {rows}; {len(set(missing))} objects appeared after the poller stopped")
    lat = sorted(seen[f] * 1e3 - w / 1e3 for f, w in got)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    span = (max(w for _, w in got) - min(w for _, w in got)) / 1e6
    rate = rows / span if span > 0 else float("inf")
    print(f"{rows} {len(seen)} {pct(50):.0f} {pct(95):.0f} {lat[-1]:.0f} {lat[0]:.0f} {rate:.0f}")


if __name__ == "__main__":
    {"verify": verify, "s3-bytes": s3_bytes, "s3-delete": s3_delete, "writer": writer,
     "poll": poll, "fresh-report": fresh_report}[sys.argv[1]](*sys.argv[2:])
PY

# ---- 2) the data ----------------------------------------------------------------------------
binlog_status() { sql -e "$STATUS_SQL" | awk -F'\t' 'NR == 1 { print $1, $2 }'; }
server_gtids() { sql -e "$GTID_SQL"; }

USERS_COLUMNS="
  id BIGINT NOT NULL PRIMARY KEY,
  written_us BIGINT,
  name VARCHAR(64) NOT NULL,
  email VARCHAR(96) NOT NULL,
  phone VARCHAR(24) NOT NULL,
  country CHAR(2) NOT NULL,
  plan TINYINT NOT NULL,
  balance DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  note TEXT"
t0=$(now_ms)
log "creating database $DB"
sql -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
DB_CREATED=1
sql "$DB" -e "
CREATE TABLE h (n INT NOT NULL PRIMARY KEY);
INSERT INTO h WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) SELECT n FROM s;
CREATE TABLE users ($USERS_COLUMNS) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE live ($USERS_COLUMNS) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"

sql -e 'FLUSH BINARY LOGS'
read -r START_FILE START_POS < <(binlog_status)
[ -n "${START_POS:-}" ] || die "$STATUS_SQL returned nothing (is the binlog on?)"
GTID=$(server_gtids)
[ -n "$GTID" ] || die "the server has no GTID state ($GTID_SQL)"
TXNS=$((ROWS / TXN_ROWS))
log "loading $ROWS rows into $DB.users in $TXNS transactions of $TXN_ROWS rows (after gtid:$GTID)"
{
  echo "SET SESSION binlog_format = ROW;"
  for (( t = 0; t < TXNS; t++ )); do
    echo "INSERT INTO users SELECT id, NULL,
  CONCAT(ELT(1 + id % 8, 'Ada', 'Alan', 'Grace', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'), ' ',
         ELT(1 + id * 7 % 8, 'Lovelace', 'Turing', 'Hopper', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson'), ' ', id),
  CONCAT('user', LPAD(id, 8, '0'), '@', SUBSTR(SHA2(id, 256), 1, 12), '.example.com'),
  CONCAT('+1 ', LPAD(id * 7919 % 1000, 3, '0'), ' 555 ', LPAD(id % 10000, 4, '0')),
  ELT(1 + id % 5, 'US', 'GB', 'DE', 'FR', 'JP'), id % 4, (id * 7717 % 10000000) / 100,
  '2024-01-01 00:00:00.000000' + INTERVAL (id * 31536001) MICROSECOND,
  CONCAT('signed up via ', ELT(1 + id % 3, 'web', 'ios', 'android'))
FROM (SELECT $((t * TXN_ROWS)) + n AS id FROM h WHERE n <= $TXN_ROWS) t;"
  done
} | sql "$DB"
read -r END_FILE END_POS < <(binlog_status)
sql -e 'FLUSH BINARY LOGS'
got=$(sql -e "SELECT COUNT(*) FROM $DB.users")
[ "$got" = "$ROWS" ] || die "the table has $got rows, want $ROWS"
IFS=$'\t' read -r NAME1 EMAIL1 PHONE1 < <(sql -e "SELECT name, email, phone FROM $DB.users WHERE id = 1")
BYTES=$(sql -e 'SHOW BINARY LOGS' | awk -F'\t' -v a="$START_FILE" -v b="$END_FILE" \
  -v sp="$START_POS" -v ep="$END_POS" '$1 >= a && $1 <= b {
    s = ($1 == a) ? sp : 0; e = ($1 == b) ? ep : $2; t += e - s } END { print t }')
MIB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
log "loaded in $(since_s "$t0") s: $START_FILE:$START_POS .. $END_FILE:$END_POS ($MIB MiB of binlog)"

# ---- 3) configurations ----------------------------------------------------------------------
# config FILE LAKE_URL TABLE MASKED [FLUSH_SECONDS]
config() {
  local file=$1 lake=$2 table=$3 masked=$4 flush=${5:-5.0}
  {
    cat <<EOF
[source]
url = "$SOURCE"
tls_mode = "$CDCD_TLS"
tables = "$DB.$table"

[run]
start = "gtid:$GTID"

[lake]
url = "$lake"
flush_seconds = $flush

[lake.s3]
endpoint = "$CDCD_TEST_S3_ENDPOINT"
force_path_style = true
EOF
    if [ "$masked" = 1 ]; then
      cat <<EOF

[masking]
hmac_key_env = "CDCD_BENCH_MASKING_KEY"

[[masking.rules]]
columns = "$DB.*.name"
action = "hmac"

[[masking.rules]]
columns = "$DB.*.email"
action = "hmac"

[[masking.rules]]
columns = "$DB.*.phone"
action = "hmac"
EOF
    fi
  } > "$file"
}
config "$TMP/tail.toml" "$TMP/unused" users 1
config "$TMP/tail-plain.toml" "$TMP/unused" users 0
S3_ROOT="s3://$BUCKET/bench-run/$(date -u +%Y%m%dT%H%M%SZ)-$$"
TAIL_ARGS=(tail --from "gtid:$GTID" --until-end --tables "$DB.users")

# ---- 4) row counts (untimed; they also warm the server's page cache) --------------------------
# count CONFIG PATTERN: cdcd tail must print exactly $ROWS lines, all matching PATTERN (awk regex)
count() {
  local c=$1 pattern=$2 total matched
  log "counting rows: cdcd tail --config $c.toml"
  read -r total matched < <({ "$CDCD" "${TAIL_ARGS[@]}" --config "$TMP/$c.toml" 2> "$TMP/count.err" ||
    echo "cdcd tail exited $?" >> "$TMP/count.err"; } |
    awk -v p="$pattern" '{ n++ } $0 ~ p { m++ } END { print n + 0, m + 0 }')
  if grep -q 'cdcd tail exited' "$TMP/count.err" || [ "$total" != "$ROWS" ] || [ "$matched" != "$ROWS" ]; then
    cat "$TMP/count.err" >&2
    die "cdcd tail --config $c.toml printed $total lines ($matched matching $pattern), want $ROWS"
  fi
}
count tail '"email":"[0-9a-f]{64}"'
count tail-plain '"email":"user[0-9]{8}@'
# Traffic written after the load by other clients: every reader here reads it too (and filters
# it out). Reported, so that a busy server shows.
after_mib() {
  sql -e 'SHOW BINARY LOGS' | awk -F'\t' -v f="$END_FILE" -v p="$END_POS" '
    $1 == f { t += $2 - p } $1 > f { t += $2 } END { printf "%.1f", t / 1048576 }'
}
AFTER0=$(after_mib)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- 5) timed catch-up runs -----------------------------------------------------------------
# timed NAME CMD...: one run, stdout to /dev/null; appends "wall-s peak-RSS-KiB cpu-s" to $TMP/NAME.times
timed() {
  local name=$1 rc=0 t0 t1; shift
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%e %M %U %S' -o "$TMP/time" "$@" > /dev/null 2> "$TMP/$name.err" || rc=$?
  t1=$EPOCHREALTIME
  if [ $rc != 0 ]; then
    cat "$TMP/$name.err" "$TMP/time" >&2 || true
    die "$name run exited $rc: $*"
  fi
  tail -1 "$TMP/time" | awk -v a="$t0" -v b="$t1" '{ printf "%.3f %d %.2f\n", b - a, $2, $3 + $4 }' >> "$TMP/$name.times"
  log "  $name: $(tail -1 "$TMP/$name.times" | awk '{ printf "%s s, %.1f MiB, %s s CPU", $1, $2 / 1024, $3 }')"
}

# SeaweedFS runs on this machine and shares its cores: its own CPU seconds so far (utime + stime
# of the server scripts/aws.sh started), to report what the S3 runs cost the store.
STORE_PID=$(cat "${CDCD_AWS_BASE:-/tmp/cdcd-aws}/run/s3.pid" 2>/dev/null || true)
store_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$STORE_PID/stat" 2>/dev/null || echo nan
}

# lake_run NAME LAKE_URL: cdcd run --until-end into a fresh lake, then its rows checked and
# its objects and bytes appended to $TMP/NAME.objects
lake_run() {
  local name=$1 lake=$2 out cpu0
  config "$TMP/$name.toml" "$lake" users 1
  cpu0=$(store_cpu)
  timed "$name" "$CDCD" run --config "$TMP/$name.toml" --until-end
  if [[ $lake == s3://* ]]; then
    awk -v a="$cpu0" -v b="$(store_cpu)" 'BEGIN { printf "%.2f\n", b - a }' >> "$TMP/$name.store_cpu"
  fi
  out=$("$PY" "$TMP/bench.py" verify "$lake" "$DB.users" "$ROWS" "$NAME1" "$EMAIL1" "$PHONE1") ||
    die "$name: the lake at $lake does not hold the $ROWS rows"
  log "  $name: $out"
  if [[ $lake == s3://* ]]; then
    "$PY" "$TMP/bench.py" s3-bytes "$lake" >> "$TMP/$name.objects"
  else
    find "$lake" -name '*.parquet' -printf '%s\n' | awk '{ n++; b += $1 } END { print n + 0, b + 0 }' >> "$TMP/$name.objects"
  fi
}

for (( i = 1; i <= RUNS; i++ )); do
  log "run $i/$RUNS"
  timed tail "$CDCD" "${TAIL_ARGS[@]}" --config "$TMP/tail.toml"
  timed tail-plain "$CDCD" "${TAIL_ARGS[@]}" --config "$TMP/tail-plain.toml"
  lake_run run-local "$TMP/lake-$i"
  lake_run run-s3 "$S3_ROOT/catch-up-$i"
done
AFTER1=$(after_mib)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- 6) freshness ---------------------------------------------------------------------------
# fresh N FLUSH: cdcd run on a fresh local lake while the writer commits FRESH_RATE rows/s;
# appends "flush rows objects p50 p95 max min rate cpu peak" to $TMP/fresh
fresh() {
  local n=$1 flush=$2 lake=$TMP/fresh-$1 pid gtid i stat cpu peak report
  gtid=$(server_gtids)
  config "$TMP/fresh-$n.toml" "$lake" live 1 "$flush"
  sed -i "s|^start = .*|start = \"gtid:$gtid\"|" "$TMP/fresh-$n.toml"
  mkdir -p "$lake"
  CDCD_LOG=info "$CDCD" run --config "$TMP/fresh-$n.toml" > /dev/null 2> "$TMP/fresh-$n.err" &
  pid=$!
  BG_PIDS=("$pid")
  for (( i = 0; i < 300; i++ )); do
    grep -q 'writing the lake' "$TMP/fresh-$n.err" && break
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/fresh-$n.err" >&2; die "cdcd run exited before connecting"; }
    sleep 0.1
  done
  grep -q 'writing the lake' "$TMP/fresh-$n.err" || { cat "$TMP/fresh-$n.err" >&2; die "cdcd run did not connect in 30 s"; }
  rm -f "$TMP/stop"
  "$PY" "$TMP/bench.py" poll "$lake" "$TMP/stop" "$TMP/seen-$n.json" &
  local poller=$!
  BG_PIDS+=("$poller")
  log "freshness $n: flush_seconds = $flush, $FRESH_RATE rows/s for $FRESH_SECONDS s in transactions of $FRESH_TXN_ROWS rows"
  "$PY" "$TMP/bench.py" writer live $((n * 10000000 + 1)) "$FRESH_RATE" "$FRESH_TXN_ROWS" "$FRESH_SECONDS" |
    sql "$DB" || die "the writer failed"
  # Everything is due by flush_seconds after the last commit; the poller watches a bit longer.
  sleep "$(awk -v f="$flush" 'BEGIN { print f + 3 }')"
  touch "$TMP/stop"
  wait "$poller" || die "the poller failed"
  kill -0 "$pid" 2>/dev/null || { cat "$TMP/fresh-$n.err" >&2; die "cdcd run died during the freshness run"; }
  stat=$(cat "/proc/$pid/stat"); stat=${stat##*) }
  cpu=$(awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / t }' <<< "$stat")
  peak=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  BG_PIDS=()
  [ "$rc" = 0 ] || { cat "$TMP/fresh-$n.err" >&2; die "cdcd run exited $rc after SIGTERM"; }
  report=$("$PY" "$TMP/bench.py" fresh-report "$lake" "$TMP/seen-$n.json" $((FRESH_RATE * FRESH_SECONDS / FRESH_TXN_ROWS * FRESH_TXN_ROWS))) ||
    die "freshness $n: rows missing from the lake"
  echo "$flush $report $cpu $peak" >> "$TMP/fresh"
  log "  $(awk '{ printf "%s rows in %s objects: p50 %s ms, p95 %s ms, max %s ms (writer %s rows/s); cdcd %s s CPU, %s MiB", $2, $3, $4, $5, $6, $8, $9, $10 }' <<< "$flush $report $cpu $peak")"
}
if [ "$FRESH_SECONDS" -gt 0 ]; then
  n=0
  for flush in "${FRESH_FLUSH[@]}"; do
    n=$((n + 1))
    fresh "$n" "$flush"
  done
fi

# ---- 7) report ------------------------------------------------------------------------------
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { awk '{ print $1 }' "$TMP/$1.times" | median | awk '{ printf "%.3f\n", $1 }'; }
med_cpu() { awk '{ print $3 }' "$TMP/$1.times" | median | awk '{ printf "%.2f\n", $1 }'; }
peak_mib() { awk '$2 > m { m = $2 } END { printf "%.1f", m / 1024 }' "$TMP/$1.times"; }
runs() { awk '{ printf "%s%s", (NR > 1 ? " " : ""), $1 }' "$TMP/$1.times"; }
rate() { awk -v r="$ROWS" -v s="$1" 'BEGIN { if (s > 0) printf "%d", r / s; else print "inf" }'; }
objects() { [ -f "$TMP/$1.objects" ] || { echo "- -"; return; }; awk '{ o = $1; b = $2 } END { printf "%d %.1f", o, b / 1048576 }' "$TMP/$1.objects"; }

tail_rate=$(rate "$(med tail)")
declare -A LABEL=([tail]="cdcd tail (masked) > /dev/null" [tail-plain]="cdcd tail (unmasked) > /dev/null"
  [run-local]="cdcd run -> local directory" [run-s3]="cdcd run -> S3 (SeaweedFS)")

echo
echo "cdcd run benchmark, $(date -u +%FT%TZ), $(nproc) cores, $VERSION on 127.0.0.1:$PORT (TLS $TLS)"
echo "$("$CDCD" --version) (source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git checkout'))"
echo "$ROWS rows in $DB.users ($TXNS transactions of $TXN_ROWS rows; name, email, phone hmac), binlog $START_FILE:$START_POS .. $END_FILE:$END_POS ($MIB MiB), from gtid:$GTID, $RUNS runs each"
echo "lake: parquet (text_encoding delta-length), zstd, commit-time partitions, flush_seconds 5.0, max_rows 50000 (defaults)"
echo
FMT="%-33s %9s %9s %8s %13s %6s %8s %11s   %s\n"
# shellcheck disable=SC2059  # the format is ours
printf "$FMT" reader "median s" "rows/s" "vs tail" "peak RSS MiB" "CPU s" objects "MiB written" "runs (s)"
for r in tail tail-plain run-local run-s3; do
  s=$(med "$r"); rr=$(rate "$s")
  ratio=$(awk -v a="$rr" -v b="$tail_rate" 'BEGIN { printf "%.2fx", a / b }')
  read -r objs mib <<< "$(objects "$r")"
  # shellcheck disable=SC2059
  printf "$FMT" "${LABEL[$r]}" "$s" "$rr" "$ratio" "$(peak_mib "$r")" "$(med_cpu "$r")" "$objs" "$mib" "$(runs "$r")"
done
echo
echo "every lake read back with DuckDB: $ROWS rows, ids 1..$ROWS once each, name/email/phone HMAC-SHA256"
echo "binlog written by other clients after the range (read by every reader): $AFTER0 MiB before the timed runs, $AFTER1 MiB after"
echo "load average (1/5/15 min): $LOAD0 before the timed runs, $LOAD1 after"
echo "SeaweedFS's own CPU while cdcd run -> S3 wrote (it shares these $(nproc) cores), per run: $(paste -sd' ' "$TMP/run-s3.store_cpu" 2>/dev/null || echo unknown) s"
verdict=PASS
for r in run-local run-s3; do
  rr=$(rate "$(med "$r")")
  if awk -v a="$rr" -v b="$tail_rate" 'BEGIN { exit !(2 * a >= b) }'; then v=PASS; else v=FAIL; verdict=FAIL; fi
  echo "bar: ${LABEL[$r]} rows/s >= 1/2 of cdcd tail (masked) rows/s: $v ($(awk -v a="$rr" -v b="$tail_rate" 'BEGIN { printf "%.2fx", a / b }'); $(awk -v a="$rr" -v b="$(rate "$(med tail-plain)")" 'BEGIN { printf "%.2fx", a / b }') of unmasked tail)"
done

if [ -s "$TMP/fresh" ]; then
  echo
  echo "freshness: cdcd run into a local lake, $FRESH_RATE rows/s for $FRESH_SECONDS s in transactions of $FRESH_TXN_ROWS rows;"
  echo "latency = object first listed (20 ms polls) - the row's NOW(6) at its INSERT"
  echo
  FFMT="%-14s %7s %8s %8s %8s %8s %8s %14s %6s %13s\n"
  # shellcheck disable=SC2059
  printf "$FFMT" flush_seconds rows objects "min ms" "p50 ms" "p95 ms" "max ms" "writer rows/s" "CPU s" "peak RSS MiB"
  while read -r flush rows objs p50 p95 max min wrate cpu peak; do
    # shellcheck disable=SC2059
    printf "$FFMT" "$flush" "$rows" "$objs" "$min" "$p50" "$p95" "$max" "$wrate" "$cpu" "$peak"
  done < "$TMP/fresh"
fi
[ "$verdict" = PASS ] || exit 3
