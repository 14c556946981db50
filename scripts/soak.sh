#!/usr/bin/env bash
# Soak test of `cdcd run` (release build): a steady write load on MariaDB for SOAK_SECONDS
# (600 = 10 minutes) while cdcd follows it into a masked lake, with cdcd's resident memory (VmRSS)
# sampled every SOAK_SAMPLE_SECONDS (5). Not part of scripts/test.sh or CI: it takes too long.
#
# Load: one client commits SOAK_TPS (10) transactions a second, each inserting SOAK_TXN_ROWS (20)
# rows into cdcd_ops_soak.events (an email masked with hmac, a note scanned by the detectors),
# updating the 5 oldest rows it touched and deleting rows older than the last 2,000 ids, so the
# table stays small and every op type flows. cdcd writes the lake to a local directory with a 1 s
# flush (or SOAK_LAKE: an s3:// URL, using the test S3 settings).
#
# Verdict: the samples of the first SOAK_WARMUP_SECONDS (60) are left out (buffers, connection
# pools and allocator arenas fill up then). Of the rest, the mean of the first and of the last
# minute are compared: the run fails if the last minute is more than SOAK_MAX_GROWTH_MIB (8) MiB
# above the first. The least-squares slope over the same samples is printed in MiB/hour. The run
# also fails if cdcd stops early or exits non-zero on SIGTERM, or if the lake's row counter
# (cdcd_rows_total, insert) differs from the rows the table's AUTO_INCREMENT says were inserted.
#
#   scripts/soak.sh                # against the shared test MariaDB (scripts/services.sh), 10 minutes
#   BASE=/tmp/cdcd-ops-mariadb PORT=3420 scripts/mariadb.sh start && SOAK_PORT=3420 scripts/soak.sh
#                                  # against a private MariaDB: nothing else writes to it (cdcd stops on
#                                  # a MINIMAL row image, and test suites write some on the shared one)
#   SOAK_SECONDS=120 scripts/soak.sh
#
# Env: SOAK_SECONDS=600 SOAK_SAMPLE_SECONDS=5 SOAK_WARMUP_SECONDS=60 SOAK_TPS=10 SOAK_TXN_ROWS=20
#      SOAK_MAX_GROWTH_MIB=8 SOAK_PORT=3307 (MariaDB, users root and repl/replpw as scripts/mariadb.sh
#      makes them) SOAK_SERVER_ID=7590 SOAK_METRICS_PORT=10640 SOAK_LAKE (default: a directory)
#      CARGO_TARGET_DIR  honoured for the release build; CDCD_BIN=path skips the build and soaks that
#      binary instead (smoke runs of this script)
# Report on stdout, progress on stderr. Exit 0: RSS flat and every row counted; 1: error; 3: RSS grew.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

SECONDS_TOTAL=${SOAK_SECONDS:-600}
SAMPLE=${SOAK_SAMPLE_SECONDS:-5}
WARMUP=${SOAK_WARMUP_SECONDS:-60}
TPS=${SOAK_TPS:-10}
TXN_ROWS=${SOAK_TXN_ROWS:-20}
MAX_GROWTH=${SOAK_MAX_GROWTH_MIB:-8}
PORT=${SOAK_PORT:-3307}
SERVER_ID=${SOAK_SERVER_ID:-7590}
METRICS_PORT=${SOAK_METRICS_PORT:-10640}
DB=cdcd_ops_soak
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for v in SECONDS_TOTAL SAMPLE TPS TXN_ROWS MAX_GROWTH; do posint "${!v}" || die "$v=${!v}: want a positive integer"; done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "SOAK_WARMUP_SECONDS=$WARMUP: want a whole number"
[ $((SECONDS_TOTAL - WARMUP)) -ge 120 ] || die "SOAK_SECONDS must exceed SOAK_WARMUP_SECONDS by 2 minutes (two one-minute windows)"

TMP=$(mktemp -d /tmp/cdcd-ops-soak.XXXXXX)
LAKE=${SOAK_LAKE:-$TMP/lake}
CDCD_PID= WRITER_PID= CLIENT_PID=
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in $WRITER_PID $CLIENT_PID $CDCD_PID; do kill "$pid" 2>/dev/null || true; done
  [ -z "$CLIENT_PID" ] || wait "$CLIENT_PID" 2>/dev/null || true
  sql -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || log "WARNING: could not drop database $DB"
  rm -rf "$TMP"
}
trap cleanup EXIT
sql() { mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot -N -B "$@"; }

# ---- build, services
command -v mariadb >/dev/null || apt_install mariadb-client
if [ -n "${CDCD_BIN:-}" ]; then
  CDCD=$CDCD_BIN
  [ -x "$CDCD" ] || die "CDCD_BIN=$CDCD is not an executable"
else
  build_release "$TMP/build.log"
fi
if [ "$PORT" = 3307 ]; then "$HERE/services.sh" start >&2; fi
# shellcheck disable=SC1090
[ -f /tmp/cdcd-services.env ] && . /tmp/cdcd-services.env

# ---- the table and cdcd
sql -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
  CREATE TABLE $DB.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(100),
    note VARCHAR(200), amount DECIMAL(12,2), touched INT NOT NULL DEFAULT 0,
    at DATETIME(6) NOT NULL)"
cat > "$TMP/soak.toml" <<EOF
[source]
url = "mysql://repl:replpw@127.0.0.1:$PORT"
tables = "$DB.*"
server_id = $SERVER_ID
heartbeat_seconds = 1

[run]
start = "end"

[metrics]
listen = "127.0.0.1:$METRICS_PORT"

[lake]
url = "$LAKE"
flush_seconds = 1.0

[lake.s3]
endpoint = "${CDCD_TEST_S3_ENDPOINT:-}"
force_path_style = true

[masking]
hmac_key_env = "CDCD_SOAK_MASKING_KEY"

[[masking.rules]]
columns = "$DB.events.email"
action = "hmac"

[[masking.detect]]
columns = "$DB.events.note"
kinds = ["email", "phone"]
EOF
[ -n "${CDCD_TEST_S3_ENDPOINT:-}" ] || sed -i '/^endpoint = ""$/d' "$TMP/soak.toml"
CDCD_SOAK_MASKING_KEY=soak-hmac-key CDCD_LOG=warn "$CDCD" run --config "$TMP/soak.toml" \
  > "$TMP/cdcd.out" 2> "$TMP/cdcd.err" &
CDCD_PID=$!
for _ in $(seq 1 100); do port_in_use "$METRICS_PORT" && break; sleep 0.2; done
port_in_use "$METRICS_PORT" || { cat "$TMP/cdcd.err" >&2; die "cdcd run did not start"; }

# ---- the writer: one client reading a FIFO, fed SOAK_TPS transactions a second
mkfifo "$TMP/sql"
mariadb --no-defaults -h127.0.0.1 -P"$PORT" -uroot < "$TMP/sql" > "$TMP/client.log" 2>&1 &
CLIENT_PID=$!
rows_sql=$(for i in $(seq 1 "$TXN_ROWS"); do
  printf "%s('user%d@example.com', 'call +1 555 010 %04d or mail x%d@example.org', %d.25, 0, NOW(6))" \
    "$([ "$i" = 1 ] || echo ', ')" "$i" "$i" "$i" "$i"
done)
(
  tick=0
  start=$(now_ms)
  while :; do
    echo "BEGIN; INSERT INTO $DB.events (email, note, amount, touched, at) VALUES $rows_sql;"
    echo "UPDATE $DB.events SET touched = touched + 1 WHERE touched = 0 ORDER BY id LIMIT 5;"
    echo "DELETE FROM $DB.events WHERE id + 2000 < LAST_INSERT_ID(); COMMIT;"
    tick=$((tick + 1))
    # Sleep until this tick's slot: a steady rate, not one that drifts with the client's latency.
    wait_ms=$(( start + tick * 1000 / TPS - $(now_ms) ))
    [ "$wait_ms" -le 0 ] || sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
  done > "$TMP/sql"
) &
WRITER_PID=$!
log "soak: ${SECONDS_TOTAL} s at $((TPS * TXN_ROWS)) rows/s inserted ($TPS transactions/s), RSS every $SAMPLE s (pid $CDCD_PID)"

# ---- samples
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
: > "$TMP/samples"
t_start=$(now_ms)
next=0
while [ $(( ($(now_ms) - t_start) / 1000 )) -lt "$SECONDS_TOTAL" ]; do
  kill -0 "$CDCD_PID" 2>/dev/null || { tail -20 "$TMP/cdcd.err" >&2; die "cdcd run stopped during the soak"; }
  kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$TMP/client.log" >&2; die "the writer stopped during the soak"; }
  elapsed=$(( ($(now_ms) - t_start) / 1000 ))
  if [ "$elapsed" -ge "$next" ]; then
    echo "$elapsed $(rss_kib "$CDCD_PID")" >> "$TMP/samples"
    [ $((next % 60)) = 0 ] && log "soak: ${elapsed} s, RSS $(( $(rss_kib "$CDCD_PID") / 1024 )) MiB"
    next=$((next + SAMPLE))
  fi
  sleep 0.2
done

# ---- stop the writer, let cdcd catch up, compare the counts
# The client ends at the end of its input, once it has run what it was sent.
kill "$WRITER_PID" 2>/dev/null || true
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=
wait "$CLIENT_PID" 2>/dev/null || true
CLIENT_PID=
inserted=$(sql -e "SELECT AUTO_INCREMENT - 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$DB' AND TABLE_NAME = 'events'")
scrape() { exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3; exec 3<&-; }
counted=
for _ in $(seq 1 60); do
  counted=$(scrape | awk -v t="$DB.events" '$1 == "cdcd_rows_total{op=\"insert\",table=\"" t "\"}" {print $2}')
  [ "${counted:-0}" = "$inserted" ] && break
  sleep 1
done
scrape > "$TMP/metrics.txt"
kill -TERM "$CDCD_PID"
rc=0; wait "$CDCD_PID" || rc=$?
CDCD_PID=

# ---- report
awk -v warmup="$WARMUP" -v max_growth="$MAX_GROWTH" -v total="$SECONDS_TOTAL" '
  { t[NR] = $1; r[NR] = $2 / 1024; n = NR
    if (NR == 1) first = r[1]; if (r[NR] > max) max = r[NR] }
  END {
    for (i = 1; i <= n; i++) {
      if (t[i] < warmup) continue
      m++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i]
      if (t[i] < warmup + 60) { a += r[i]; na++ }
      if (t[i] >= total - 60) { b += r[i]; nb++ }
    }
    slope = (m * sxy - sx * sy) / (m * sxx - sx * sx) * 3600
    growth = b / nb - a / na
    printf "samples           %d (every %d s over %d s; %d after the %d s warm-up)\n", n, t[2] - t[1], total, m, warmup
    printf "RSS first         %.1f MiB\n", first
    printf "RSS last          %.1f MiB\n", r[n]
    printf "RSS max           %.1f MiB\n", max
    printf "RSS minute after warm-up (mean)  %.1f MiB\n", a / na
    printf "RSS last minute (mean)           %.1f MiB\n", b / nb
    printf "growth            %+.1f MiB (tolerance %d MiB)\n", growth, max_growth
    printf "slope             %+.2f MiB/hour (least squares after the warm-up)\n", slope
    exit (growth > max_growth) ? 3 : 0
  }' "$TMP/samples" | tee "$TMP/report" || verdict=$?
verdict=${verdict:-0}
echo "rows inserted     $inserted (the table's AUTO_INCREMENT)"
echo "rows counted      ${counted:-none} (cdcd_rows_total, insert)"
grep -E '^cdcd_(transactions_total|lake_objects_written_total|binlog_bytes_read_total|replication_lag_seconds|checkpoint_age_seconds|binlog_retention_headroom_seconds) ' "$TMP/metrics.txt" | sed 's/^/metric            /'
echo "cdcd exit on SIGTERM: $rc"
[ "$rc" = 0 ] || { tail -20 "$TMP/cdcd.err" >&2; die "cdcd run exited $rc on SIGTERM"; }
[ "${counted:-}" = "$inserted" ] || die "cdcd counted ${counted:-no} inserted rows, the table has $inserted"
if [ "$verdict" = 3 ]; then echo "FAIL: RSS grew beyond the tolerance"; exit 3; fi
[ "$verdict" = 0 ] || die "the report failed ($verdict)"
echo "PASS: RSS flat within $MAX_GROWTH MiB"
