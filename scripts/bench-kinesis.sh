#!/usr/bin/env bash
# Benchmark of `cdcd run` into Kinesis (kinesalite, the fastest emulator here), next to the
# emulator's own PutRecords ceiling measured in the same invocation.
#
# Baseline: a plain boto3 client puts BENCH_ROWS records of the size cdcd's records have (their
# mean, from `cdcd tail --format native` over the loaded range) with PutRecords in batches of 500
# from BENCH_CLIENTS threads, to a fresh stream of BENCH_SHARDS shards. Run before and after the
# full-speed runs; the ceiling is the better of the two.
#
# Full speed: BENCH_ROWS rows loaded into a users-like table (transactions of 1,000 rows), then
# `cdcd run --until-end` (release build) from the GTID state before the load, native format,
# partition key primary-key, strict ordering, lake in a local directory, once with
# kinesis.aggregate = false and once with true. Rows/s = rows / wall time of the run. Every stream
# is read back and deaggregated with the reference aws-kinesis-agg: exactly BENCH_ROWS user
# records, ids 1..BENCH_ROWS once each.
#
# Steady: `cdcd run` (no --until-end) while a writer commits BENCH_RATE (2,000) rows/s for
# BENCH_STEADY_SECONDS (30) s in transactions of BENCH_STEADY_TXN_ROWS (20) rows, again without
# and with aggregation. Commit-to-acknowledged latency comes from cdcd's own histogram
# cdcd_kinesis_ack_latency_seconds (source commit timestamp -> Kinesis acknowledgement), scraped
# from /metrics before and after the writer; p50/p99 are interpolated inside its buckets (as
# Prometheus' histogram_quantile does; the 250 ms bar is a bucket bound, so PASS/FAIL is exact).
# cdcd_kinesis_send_latency_seconds (record handed to the producer -> acknowledgement) is shown
# beside it: the producer's share. Before each steady run, a plain boto3 client puts the same rate
# (BENCH_STEADY_TXN_ROWS records a PutRecords, one call at a time) for the same time: the
# emulator's own latency, from each call's scheduled time to its response, in the same run.
# MySQL gives commit timestamps in microseconds; MariaDB only in whole seconds, which adds up to
# 1 s to every latency: use --server mysql (the default) for latency. Streams are deleted as soon
# as they are read back (kinesalite keeps records in its heap).
#
# Bars (issue 4): p99 < 250 ms at BENCH_RATE rows/s; full-speed rows/s >= 80% of the ceiling.
#
#   scripts/bench-kinesis.sh                    # MySQL 9.7 on 127.0.0.1:3399
#   scripts/bench-kinesis.sh --server mariadb   # MariaDB 10.11 on 127.0.0.1:3307 (latency in whole seconds)
#   scripts/bench-kinesis.sh --keep             # keep the database and the streams
#
# Env: BENCH_ROWS=100000  full-speed rows (a multiple of 1000) and baseline records
#      BENCH_RATE=2000  steady writer rows/s;  BENCH_STEADY_SECONDS=30;  BENCH_STEADY_TXN_ROWS=20
#      BENCH_SHARDS=4  shards of every stream;  BENCH_CLIENTS=4  baseline threads
#      BENCH_METRICS_PORT=10450  /metrics of the steady runs
#      CDCD_SOURCE__SERVER_ID=7451  replica server id
#      CARGO_TARGET_DIR  honoured for the release build (binary: ${CARGO_TARGET_DIR:-target}/release/cdcd)
#
# The report goes to stdout, progress to stderr. Exit 0 when every record arrived and both bars
# passed; 1 on any error or lost/extra record; 3 when a bar failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

bench_options mysql "$@"

ROWS=${BENCH_ROWS:-100000}
RATE=${BENCH_RATE:-2000}
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-30}
STEADY_TXN_ROWS=${BENCH_STEADY_TXN_ROWS:-20}
SHARDS=${BENCH_SHARDS:-4}
CLIENTS=${BENCH_CLIENTS:-4}
METRICS_PORT=${BENCH_METRICS_PORT:-10450}
DB=cdcd_kpl_bench
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
{ posint "$ROWS" && [ $((ROWS % 1000)) = 0 ]; } || die "BENCH_ROWS=$ROWS: want a positive multiple of 1000"
for v in RATE STEADY_SECONDS STEADY_TXN_ROWS SHARDS CLIENTS METRICS_PORT; do
  posint "${!v}" || die "BENCH_$v=${!v}: want a positive integer"
done

case "$SERVER" in
  mariadb) PORT=3307; GTID_SQL='SELECT @@gtid_binlog_pos' ;;
  mysql) PORT=3399; GTID_SQL="SELECT REPLACE(@@gtid_executed, '\n', '')" ;;
  *) die "--server $SERVER: want mariadb or mysql" ;;
esac
SOURCE="mysql://repl:replpw@127.0.0.1:$PORT"
export CDCD_SOURCE__SERVER_ID=${CDCD_SOURCE__SERVER_ID:-7451}
unset CDCD_CONFIG

TMP=$(mktemp -d /tmp/cdcd-kpl-bench.XXXXXX)
DB_CREATED=0
STREAMS=()   # created streams, deleted at the end
BG_PIDS=()   # cdcd of a steady run, while it runs
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid s
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then
    log "kept: database $DB, streams ${STREAMS[*]}, files in $TMP"
    return
  fi
  if [ "$DB_CREATED" = 1 ]; then
    sql -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null && log "dropped database $DB" ||
      log "WARNING: could not drop database $DB"
  fi
  for s in "${STREAMS[@]}"; do [ -n "$s" ] || continue; "$PY" "$TMP/bench.py" delete "$s" || log "WARNING: could not delete stream $s"; done
  rm -rf "$TMP"
}
trap cleanup EXIT

sql() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B "$@"; }

# ---- 1) tools, release build, services -------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
command -v mariadb >/dev/null || apt_install mariadb-client
command -v curl >/dev/null || apt_install curl

build_release "$TMP/build.log"

"$HERE/services.sh" start
ENV_FILE=${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}
# shellcheck disable=SC1090
. "$ENV_FILE"
PY=$CDCD_TEST_DUCKDB_PYTHON
KINESALITE=$CDCD_TEST_KINESALITE_ENDPOINT
[ -x "$PY" ] || die "no venv python at $PY (scripts/aws.sh install)"
"$PY" -c 'import aws_kinesis_agg' 2>/dev/null || die "aws-kinesis-agg is not in $PY's venv (scripts/aws.sh install)"
VERSION=$(sql -e 'SELECT @@version')
log "$SERVER: $VERSION on 127.0.0.1:$PORT; kinesalite at $KINESALITE"

# The Python side: streams, the baseline client, read-back, the writer, the metrics.
cat > "$TMP/bench.py" <<'PY'
import base64, json, os, sys, threading, time


def kinesis():
    import boto3, botocore.config
    return boto3.client("kinesis", endpoint_url=os.environ["KINESALITE"],
                        config=botocore.config.Config(retries={"max_attempts": 0},
                                                      max_pool_connections=64))


def create(stream, shards):
    c = kinesis()
    c.create_stream(StreamName=stream, ShardCount=int(shards))
    for _ in range(600):
        if c.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    sys.exit(f"stream {stream} did not become ACTIVE")


def delete(stream):
    kinesis().delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def ceiling(stream, total, size, clients):
    """PutRecords of `total` records of `size` bytes, 500 per call, from `clients` threads (one
    boto3 client each, no SDK retries; failed records are put again). Prints records/s."""
    total, size, clients = int(total), int(size), int(clients)
    data = b"x" * size
    errors = []

    def worker(w, n):
        c = kinesis()
        try:
            for start in range(0, n, 500):
                batch = [{"Data": data, "PartitionKey": f"shop.users.{w}.{start + i}"}
                         for i in range(min(500, n - start))]
                while batch:
                    r = c.put_records(StreamName=stream, Records=batch)
                    batch = [b for b, x in zip(batch, r["Records"]) if "ErrorCode" in x]
        except Exception as e:  # reported below; a thread's exception would otherwise vanish
            errors.append(repr(e))

    share = [total // clients + (1 if w < total % clients else 0) for w in range(clients)]
    threads = [threading.Thread(target=worker, args=(w, share[w])) for w in range(clients)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.monotonic() - t
    if errors:
        sys.exit(f"baseline client failed: {errors[0]}")
    print(f"{total / seconds:.0f} {seconds:.2f}")


def paced(stream, rate, txn_rows, seconds, size):
    """The emulator's own latency at the steady rate: one client puts txn_rows records of `size`
    bytes every txn_rows/rate seconds, one PutRecords at a time. A record's latency is from its
    scheduled time to the response (so a stall delays the records queued behind it, as it does
    cdcd's). Prints p50 and p99 in ms and the share within 250 ms."""
    rate, txn_rows, seconds, size = int(rate), int(txn_rows), float(seconds), int(size)
    c, data = kinesis(), b"x" * size
    interval, count = txn_rows / rate, int(rate * seconds) // txn_rows
    latencies, start = [], time.monotonic()
    for t in range(count):
        due = start + t * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        batch = [{"Data": data, "PartitionKey": f"shop.live.{t}.{i}"} for i in range(txn_rows)]
        while batch:
            r = c.put_records(StreamName=stream, Records=batch)
            batch = [b for b, x in zip(batch, r["Records"]) if "ErrorCode" in x]
        latencies += [(time.monotonic() - due) * 1000] * txn_rows
    latencies.sort()
    n = len(latencies)
    within = sum(1 for x in latencies if x <= 250) / n * 100
    print(f"{latencies[n // 2]:.1f} {latencies[min(n - 1, int(0.99 * n))]:.1f} {within:.2f}")


def count(stream, rows):
    """Reads every shard, deaggregates with aws-kinesis-agg, and checks that the native records
    carry ids 1..rows (or, with rows = -N, N records of distinct ids). Prints user records and
    Kinesis records."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records
    rows = int(rows)
    c = kinesis()
    ids, kinesis_records = [], 0
    for shard in c.list_shards(StreamName=stream)["Shards"]:
        it = c.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            page = c.get_records(ShardIterator=it, Limit=10000)
            kinesis_records += len(page["Records"])
            for r in iter_deaggregate_records(page["Records"], data_format="Boto3"):
                data = r["kinesis"]["data"]
                record = json.loads(base64.b64decode(data) if isinstance(data, (bytes, str)) and
                                    r["kinesis"].get("aggregated") else data)
                ids.append(record["after"]["id"])
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    want = abs(rows)
    if len(ids) != want or len(set(ids)) != want or (rows > 0 and (min(ids), max(ids)) != (1, rows)):
        sys.exit(f"{stream}: {len(ids)} user records, {len(set(ids))} distinct ids; want {want}")
    print(len(ids), kinesis_records)


def writer(table, first_id, rate, txn_rows, seconds):
    """SQL on stdout: an INSERT of txn_rows rows (one autocommit transaction) every txn_rows/rate
    seconds, on a fixed schedule."""
    first_id, rate, txn_rows, seconds = int(first_id), int(rate), int(txn_rows), float(seconds)
    interval = txn_rows / rate
    count = int(rate * seconds) // txn_rows
    start = time.monotonic()
    late = 0.0
    for t in range(count):
        delay = start + t * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        values = ",".join(
            f"({i},'Live User {i}','live{i}@example.com','+1 555 {i % 10000:04d}','US',{i % 4},{i % 100000}.25,NOW(6),'live')"
            for i in range(first_id + t * txn_rows, first_id + (t + 1) * txn_rows))
        sys.stdout.write(f"INSERT INTO {table} VALUES {values};\n")
        sys.stdout.flush()
    print(f"[cdcd-scripts] writer: {count} transactions of {txn_rows} rows in "
          f"{time.monotonic() - start:.1f} s (at most {late * 1000:.0f} ms behind schedule)",
          file=sys.stderr)


def scrape(path):
    """name{labels} -> value from a /metrics text."""
    out = {}
    for line in open(path):
        if line and not line.startswith("#"):
            key, _, value = line.rstrip("\n").rpartition(" ")
            out[key] = float(value)
    return out


def latency(before, after, which="ack"):
    """From two scrapes, for cdcd_kinesis_<which>_latency_seconds: records observed, p50 and p99
    in ms (linear inside a bucket, as histogram_quantile), the share within 250 ms, the mean, and
    the records acknowledged."""
    a, b = scrape(before), scrape(after)
    name = f"cdcd_kinesis_{which}_latency_seconds"
    buckets = sorted(
        (float("inf") if k.endswith('"+Inf"}') else float(k.split('"')[1]), b[k] - a.get(k, 0))
        for k in b if k.startswith(name + "_bucket"))
    n = b[name + "_count"] - a.get(name + "_count", 0)
    if n <= 0:
        sys.exit("no acknowledged records between the scrapes")

    def quantile(q):
        rank, lower, below = q * n, 0.0, 0.0
        for bound, cumulative in buckets:
            if cumulative >= rank:
                if bound == float("inf"):
                    return float("inf")
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                return (lower + (bound - lower) * share) * 1000
            lower, below = bound, cumulative
        return float("inf")

    within = dict(buckets)[0.25] / n
    mean = (b[name + "_sum"] - a.get(name + "_sum", 0)) / n * 1000
    put = b["cdcd_kinesis_records_put_total"] - a.get("cdcd_kinesis_records_put_total", 0)
    print(f"{n:.0f} {quantile(0.5):.1f} {quantile(0.99):.1f} {within * 100:.2f} {mean:.1f} {put:.0f}")


if __name__ == "__main__":
    {"create": create, "delete": delete, "ceiling": ceiling, "paced": paced, "count": count,
     "writer": writer, "latency": latency}[sys.argv[1]](*sys.argv[2:])
PY
export KINESALITE

# ---- 2) the data ----------------------------------------------------------------------------
COLUMNS="
  id BIGINT NOT NULL PRIMARY KEY,
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
CREATE TABLE users ($COLUMNS) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE live ($COLUMNS) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"
GTID=$(sql -e "$GTID_SQL")
[ -n "$GTID" ] || die "the server has no GTID state ($GTID_SQL)"
log "loading $ROWS rows into $DB.users in transactions of 1000 rows (after gtid:$GTID)"
{
  echo "SET SESSION binlog_format = ROW;"
  for (( t = 0; t < ROWS / 1000; t++ )); do
    echo "INSERT INTO users SELECT id,
  CONCAT(ELT(1 + id % 8, 'Ada', 'Alan', 'Grace', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'), ' ', id),
  CONCAT('user', LPAD(id, 8, '0'), '@', SUBSTR(SHA2(id, 256), 1, 12), '.example.com'),
  CONCAT('+1 ', LPAD(id * 7919 % 1000, 3, '0'), ' 555 ', LPAD(id % 10000, 4, '0')),
  ELT(1 + id % 5, 'US', 'GB', 'DE', 'FR', 'JP'), id % 4, (id * 7717 % 10000000) / 100,
  '2024-01-01 00:00:00.000000' + INTERVAL (id * 31536001) MICROSECOND,
  CONCAT('signed up via ', ELT(1 + id % 3, 'web', 'ios', 'android'))
FROM (SELECT $((t * 1000)) + n AS id FROM h) t;"
  done
} | sql "$DB"
log "loaded in $(since_s "$t0") s"

# config FILE STREAM AGGREGATE START METRICS_LISTEN: cdcd run into STREAM on kinesalite
config() {
  cat > "$1" <<EOF
[source]
url = "$SOURCE"
tables = "$DB.*"

[run]
start = "$4"
kinesis_format = "native"

[dms]
partition_key_type = "primary-key"

[metrics]
listen = "$5"

[lake]
url = "$TMP/lake-${1##*/}"

[kinesis]
stream = "$2"
endpoint = "$KINESALITE"
aggregate = $3
EOF
}
# stream NAME: a fresh stream of $SHARDS shards; done NAME: delete it (kinesalite keeps every
# record in its heap, and a bigger heap means longer garbage-collection pauses for later runs)
stream() {
  "$PY" "$TMP/bench.py" create "$1" "$SHARDS" || die "cannot create stream $1 on $KINESALITE"
  STREAMS+=("$1")
}
done_with() {
  "$PY" "$TMP/bench.py" delete "$1" || die "cannot delete stream $1"
  STREAMS=("${STREAMS[@]/$1}")
}

# The size of cdcd's records (and a check of the range): cdcd tail prints the same records.
config "$TMP/tail.toml" unused false "gtid:$GTID" ""
read -r TAIL_ROWS RECORD_BYTES < <("$CDCD" tail --config "$TMP/tail.toml" --from "gtid:$GTID" --until-end \
  --format native --tables "$DB.users" | awk '{ n++; b += length($0) } END { printf "%d %d\n", n, b / n }')
[ "$TAIL_ROWS" = "$ROWS" ] || die "cdcd tail printed $TAIL_ROWS records for the range, want $ROWS"
log "records: native JSON, $RECORD_BYTES bytes on average"

# ---- 3) baseline and full speed -------------------------------------------------------------
RUN=$(date -u +%H%M%S)-$$
# baseline N: appends "records/s seconds" to $TMP/baseline
baseline() {
  local s=cdcd-kpl-bench-$RUN-baseline-$1 out
  stream "$s"
  out=$("$PY" "$TMP/bench.py" ceiling "$s" "$ROWS" "$RECORD_BYTES" "$CLIENTS") || die "baseline failed"
  done_with "$s"
  echo "$out" >> "$TMP/baseline"
  log "  baseline $1: $(awk '{ printf "%s records/s (%s s)", $1, $2 }' <<< "$out")"
}
# full AGGREGATE: cdcd run --until-end; appends "aggregate rows/s wall cpu user-records kinesis-records" to $TMP/full
full() {
  local agg=$1 s=cdcd-kpl-bench-$RUN-full-$1 t0 t1 counted
  stream "$s"
  config "$TMP/full-$agg.toml" "$s" "$agg" "gtid:$GTID" ""
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$TMP/time" "$CDCD" run --config "$TMP/full-$agg.toml" --until-end \
    > /dev/null 2> "$TMP/full-$agg.err" || { cat "$TMP/full-$agg.err" >&2; die "cdcd run (aggregate = $agg) failed"; }
  t1=$EPOCHREALTIME
  counted=$("$PY" "$TMP/bench.py" count "$s" "$ROWS") || die "stream $s does not hold the $ROWS rows"
  done_with "$s"
  awk -v a="$agg" -v r="$ROWS" -v t0="$t0" -v t1="$t1" -v c="$counted" '{ printf "%s %.0f %.2f %.2f %s\n", a, r / (t1 - t0), t1 - t0, $1 + $2, c }' \
    "$TMP/time" >> "$TMP/full"
  log "  full speed, aggregate = $agg: $(tail -1 "$TMP/full" | awk '{ printf "%s rows/s (%s s, %s s CPU), %s user records in %s Kinesis records", $2, $3, $4, $5, $6 }')"
}
log "baseline: boto3 PutRecords, 500 records a call, $CLIENTS threads, $ROWS records of $RECORD_BYTES bytes"
baseline 1
full false
full true
baseline 2

# ---- 4) steady rate -------------------------------------------------------------------------
metrics() { curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" > "$1" || die "cannot scrape /metrics on :$METRICS_PORT"; }
# steady N AGGREGATE: appends "aggregate acked p50 p99 within mean put cpu" to $TMP/steady
steady() {
  local n=$1 agg=$2 s=cdcd-kpl-bench-$RUN-steady-$2 gtid pid i rows stat cpu out send
  stream "$s"
  gtid=$(sql -e "$GTID_SQL")
  config "$TMP/steady-$agg.toml" "$s" "$agg" "gtid:$gtid" "127.0.0.1:$METRICS_PORT"
  port_in_use "$METRICS_PORT" && die "port $METRICS_PORT is in use (BENCH_METRICS_PORT)"
  CDCD_LOG=info "$CDCD" run --config "$TMP/steady-$agg.toml" > /dev/null 2> "$TMP/steady-$agg.err" &
  pid=$!
  BG_PIDS=("$pid")
  for (( i = 0; i < 300; i++ )); do
    grep -q 'writing the lake' "$TMP/steady-$agg.err" && break
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/steady-$agg.err" >&2; die "cdcd run exited before connecting"; }
    sleep 0.1
  done
  grep -q 'writing the lake' "$TMP/steady-$agg.err" || { cat "$TMP/steady-$agg.err" >&2; die "cdcd run did not connect in 30 s"; }
  metrics "$TMP/m0-$agg"
  log "steady, aggregate = $agg: $RATE rows/s for $STEADY_SECONDS s in transactions of $STEADY_TXN_ROWS rows"
  "$PY" "$TMP/bench.py" writer live $((n * 10000000 + 1)) "$RATE" "$STEADY_TXN_ROWS" "$STEADY_SECONDS" |
    sql "$DB" || die "the writer failed"
  rows=$((RATE * STEADY_SECONDS / STEADY_TXN_ROWS * STEADY_TXN_ROWS))
  # Acknowledged within a few seconds of the last commit, or the run is broken.
  for (( i = 0; i < 100; i++ )); do
    metrics "$TMP/m1-$agg"
    out=$("$PY" "$TMP/bench.py" latency "$TMP/m0-$agg" "$TMP/m1-$agg" 2>/dev/null) &&
      [ "$(awk '{ print $6 }' <<< "$out")" -ge "$rows" ] && break
    sleep 0.1
  done
  stat=$(cat "/proc/$pid/stat"); stat=${stat##*) }
  cpu=$(awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / t }' <<< "$stat")
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  BG_PIDS=()
  [ "$rc" = 0 ] || { cat "$TMP/steady-$agg.err" >&2; die "cdcd run exited $rc after SIGTERM"; }
  out=$("$PY" "$TMP/bench.py" latency "$TMP/m0-$agg" "$TMP/m1-$agg") || die "no latency for aggregate = $agg"
  send=$("$PY" "$TMP/bench.py" latency "$TMP/m0-$agg" "$TMP/m1-$agg" send | awk '{ print $2, $3 }') ||
    die "no send latency for aggregate = $agg"
  [ "$(awk '{ print $6 }' <<< "$out")" = "$rows" ] ||
    die "steady, aggregate = $agg: $(awk '{ print $6 }' <<< "$out") records acknowledged, want $rows"
  "$PY" "$TMP/bench.py" count "$s" "-$rows" > /dev/null || die "stream $s does not hold the $rows rows"
  done_with "$s"
  echo "$agg $out $cpu $send" >> "$TMP/steady"
  log "  $(awk '{ printf "%s records acknowledged: p50 %s ms, p99 %s ms, %s%% within 250 ms, mean %s ms (in the producer: p50 %s ms, p99 %s ms); cdcd %s s CPU", $2, $3, $4, $5, $6, $9, $10, $8 }' <<< "$agg $out $cpu $send")"
}
# paced N: the emulator's latency at the steady rate from a plain client; appends "p50 p99 within"
paced() {
  local s=cdcd-kpl-bench-$RUN-paced-$1 out
  stream "$s"
  log "paced client: $RATE records/s for $STEADY_SECONDS s, $STEADY_TXN_ROWS records a PutRecords"
  out=$("$PY" "$TMP/bench.py" paced "$s" "$RATE" "$STEADY_TXN_ROWS" "$STEADY_SECONDS" "$RECORD_BYTES") ||
    die "the paced client failed"
  done_with "$s"
  echo "$out" >> "$TMP/paced"
  log "  $(awk '{ printf "p50 %s ms, p99 %s ms, %s%% within 250 ms", $1, $2, $3 }' <<< "$out")"
}
paced 1
steady 1 false
paced 2
steady 2 true

# ---- 5) report ------------------------------------------------------------------------------
CEILING=$(awk '$1 > m { m = $1 } END { print m }' "$TMP/baseline")
echo
echo "cdcd run -> Kinesis benchmark, $(date -u +%FT%TZ), $(nproc) cores, $VERSION on 127.0.0.1:$PORT"
echo "$("$CDCD" --version) (source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git checkout'))"
echo "kinesalite at $KINESALITE, $SHARDS shards a stream; records: native JSON of $DB.users, $RECORD_BYTES bytes on average,"
echo "partition key primary-key, ordering strict; every stream read back and deaggregated with aws-kinesis-agg"
echo
echo "baseline (emulator ceiling): boto3 PutRecords, 500 records a call, $CLIENTS threads, $ROWS records of $RECORD_BYTES bytes:"
echo "  $(awk '{ printf "%s%s records/s", (NR > 1 ? ", " : ""), $1 }' "$TMP/baseline" | tr -d '\n') -> ceiling $CEILING records/s"
echo
echo "full speed: cdcd run --until-end over $ROWS rows (rows/s = rows / wall time, startup included)"
FMT="%-12s %9s %11s %8s %7s %13s %16s\n"
# shellcheck disable=SC2059  # the format is ours
printf "$FMT" aggregate "rows/s" "vs ceiling" "wall s" "CPU s" "user records" "Kinesis records"
while read -r agg rate wall cpu users records; do
  # shellcheck disable=SC2059
  printf "$FMT" "$agg" "$rate" "$(awk -v a="$rate" -v c="$CEILING" 'BEGIN { printf "%.0f%%", 100 * a / c }')" "$wall" "$cpu" "$users" "$records"
done < "$TMP/full"
echo
echo "steady: $RATE rows/s for $STEADY_SECONDS s (transactions of $STEADY_TXN_ROWS rows); latency = source commit -> Kinesis acknowledgement"
echo "(cdcd_kinesis_ack_latency_seconds; p50/p99 interpolated within its buckets). The producer's share:"
echo "cdcd_kinesis_send_latency_seconds, from the record handed to the producer to its acknowledgement"
SFMT="%-12s %9s %8s %8s %10s %8s %17s %17s %7s\n"
# shellcheck disable=SC2059
printf "$SFMT" aggregate records "p50 ms" "p99 ms" "<= 250 ms" "mean ms" "producer p50 ms" "producer p99 ms" "CPU s"
while read -r agg acked p50 p99 within mean _put cpu sp50 sp99; do
  # shellcheck disable=SC2059
  printf "$SFMT" "$agg" "$acked" "$p50" "$p99" "$within%" "$mean" "$sp50" "$sp99" "$cpu"
done < "$TMP/steady"
echo "emulator baseline at the same rate (plain boto3 client, $STEADY_TXN_ROWS records a PutRecords, one at a time,"
echo "latency from each call's scheduled time): $(awk '{ printf "%sp50 %s ms, p99 %s ms (%s%% within 250 ms)", (NR > 1 ? "; " : ""), $1, $2, $3 }' "$TMP/paced" | tr -d '\n')"
echo
verdict=PASS
while read -r agg _acked _p50 p99 within _rest; do
  # p99 < 250 ms exactly when at least 99% of the records fall in the buckets up to 0.25 s.
  if awk -v w="$within" 'BEGIN { exit !(w >= 99) }'; then v=PASS; else v=FAIL; verdict=FAIL; fi
  echo "bar: p99 < 250 ms at $RATE rows/s, aggregate = $agg: $v (p99 $p99 ms; $within% within 250 ms)"
done < "$TMP/steady"
while read -r agg rate _rest; do
  if awk -v a="$rate" -v c="$CEILING" 'BEGIN { exit !(a >= 0.8 * c) }'; then v=PASS; else v=FAIL; verdict=FAIL; fi
  echo "bar: full speed >= 80% of the ceiling, aggregate = $agg: $v ($rate rows/s vs $CEILING records/s: $(awk -v a="$rate" -v c="$CEILING" 'BEGIN { printf "%.0f%%", 100 * a / c }'))"
done < "$TMP/full"
[ "$verdict" = PASS ] || exit 3
