#!/usr/bin/env bash
# The quickstart: `cdcd run` from a live binlog into a masked lake, read back the way Athena reads it.
#
#   scripts/quickstart.sh
#
# On a fresh Debian 12 machine, as root (and again, as often as you like):
#  1. installs what is missing (scripts/bootstrap.sh; DuckDB through scripts/aws.sh install) and
#     builds cdcd;
#  2. starts a private MariaDB with a row-based binlog on 127.0.0.1:3307 (scripts/mariadb.sh),
#     unless CDCD_SOURCE__URL names a server of your own;
#  3. creates the table quickstart.users with personal data: name, email, phone, SSN, card number,
#     address and a free-text note;
#  4. starts `cdcd run` (changes from now on, into the directory ./lake), makes inserts, updates,
#     a transaction and a delete, waits until the lake has them, and stops cdcd with SIGTERM;
#  5. prints the lake's files, the Athena DDL from `cdcd athena-ddl`, then runs its `_latest` view
#     and a history query in DuckDB over the lake (the SQL Athena runs) and prints the checkpoint;
#  6. makes one more change while cdcd is stopped and runs cdcd again: it resumes at the
#     checkpoint, and every change is in the lake exactly once.
# It exits non-zero if a step fails or the lake holds anything but the expected, masked changes.
#
# cdcd runs on the repository's config.toml (compiled in) plus only what a user adds, in the
# working directory $QUICKSTART_DIR:
#   the environment  CDCD_SOURCE__URL, CDCD_SOURCE_PASSWORD, CDCD_SOURCE__TABLES=quickstart.users,
#                    CDCD_SOURCE__SERVER_ID=52471 and CDCD_METRICS__LISTEN=127.0.0.1:9471 (a
#                    replica id and a metrics port of its own, so that it runs beside another
#                    cdcd), CDCD_MASKING_KEY (the HMAC key), CDCD_LAKE__FLUSH_SECONDS=1 (a fresher
#                    lake than the default 5 s)
#   quickstart.toml  the [masking] rules (lists of tables cannot come from the environment),
#                    merged over config.toml by `--config quickstart.toml`
#
# Env: QUICKSTART_DIR=/tmp/cdcd-quickstart  working directory; its lake/ is replaced at every run
#      CDCD_SOURCE__URL=mysql://USER@HOST:PORT and CDCD_SOURCE_PASSWORD: your own MySQL/MariaDB
#        instead of the private MariaDB (ROW binlog; a user with REPLICATION SLAVE, REPLICATION
#        CLIENT or BINLOG MONITOR, and SELECT: `cdcd check` tells)
#      QUICKSTART_SQL_URL=mysql://USER:PASSWORD@HOST:PORT  with CDCD_SOURCE__URL: the user that
#        drops and creates the database `quickstart` and writes to it (default: CDCD_SOURCE__URL
#        with CDCD_SOURCE_PASSWORD)
#      CDCD_MASKING_KEY  the HMAC key (default: a demo key)
#      CDCD_SOURCE__SERVER_ID, CDCD_METRICS__LISTEN  (defaults here: 52471, 127.0.0.1:9471)
#      CARGO_TARGET_DIR  honoured (the binary: ${CARGO_TARGET_DIR:-target}/debug/cdcd)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

WORK=${QUICKSTART_DIR:-/tmp/cdcd-quickstart}
PY=${CDCD_AWS_CACHE:-/var/cache/cdcd-aws}/venv/bin/python
LAKE_QUERY=$ROOT/tests/support/lake_query.py
RUN_PID=

# ---------------------------------------------------------------- setup
"$HERE/bootstrap.sh"
log "building cdcd"
(cd "$ROOT" && cargo build -q -p cdcd)
CDCD=${CARGO_TARGET_DIR:-$ROOT/target}/debug/cdcd
case $CDCD in /*) ;; *) CDCD=$ROOT/$CDCD ;; esac
log "installing DuckDB (scripts/aws.sh install: cached in /var/cache/cdcd-aws)"
"$HERE/aws.sh" install
"$PY" -c 'import duckdb' || die "no DuckDB in $PY"

# The server: yours (CDCD_SOURCE__URL), or the private MariaDB.
if [ -n "${CDCD_SOURCE__URL:-}" ]; then
  SQL_URL=${QUICKSTART_SQL_URL:-$CDCD_SOURCE__URL}
  if [ -z "${QUICKSTART_SQL_URL:-}" ] && [ -n "${CDCD_SOURCE_PASSWORD:-}" ]; then
    SQL_URL=${SQL_URL/@/:$CDCD_SOURCE_PASSWORD@}
  fi
  [[ $SQL_URL =~ ^mysql://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?/?$ ]] ||
    die "QUICKSTART_SQL_URL / CDCD_SOURCE__URL: want mysql://USER[:PASSWORD]@HOST[:PORT]"
  SQL_USER=${BASH_REMATCH[1]} SQL_PASSWORD=${BASH_REMATCH[3]} SQL_HOST=${BASH_REMATCH[4]}
  SQL_PORT=${BASH_REMATCH[6]:-3306}
  command -v mariadb >/dev/null || apt_install mariadb-client
  sql() {
    MYSQL_PWD=$SQL_PASSWORD mariadb --no-defaults --batch -h "$SQL_HOST" -P "$SQL_PORT" \
      -u "$SQL_USER" -e "$1"
  }
  log "using your server: $CDCD_SOURCE__URL (SQL as $SQL_USER)"
  SHOWN_PASSWORD=…
else
  "$HERE/mariadb.sh" start
  sql() { "$HERE/mariadb.sh" sql "$1"; }
  export CDCD_SOURCE__URL=mysql://repl@127.0.0.1:3307 CDCD_SOURCE_PASSWORD=replpw
  SHOWN_PASSWORD=replpw
fi

# binlog_end: "FILE POS", the end of the server's binlog now
binlog_end() {
  local out
  out=$(sql "SHOW BINARY LOG STATUS" 2>/dev/null) || out=$(sql "SHOW MASTER STATUS")
  out=$(awk 'NR == 2 { print $1, $2 }' <<<"$out")
  [ -n "$out" ] || die "the server has no binlog (SHOW MASTER STATUS is empty)"
  echo "$out"
}

mkdir -p "$WORK"
cd "$WORK"
rm -rf lake query.sql ./*.jsonl ./*.log athena.sql
export CDCD_SOURCE__TABLES=quickstart.users
if [ -n "${CDCD_MASKING_KEY:-}" ]; then SHOWN_KEY=…; else SHOWN_KEY=quickstart-demo-key; fi
export CDCD_MASKING_KEY=${CDCD_MASKING_KEY:-quickstart-demo-key}
export CDCD_LAKE__FLUSH_SECONDS=1
# A replica id of its own (source.server_id must be unique among the server's replicas), so that
# the quickstart and another cdcd on the default id (yours, the tests') do not disconnect each other.
export CDCD_SOURCE__SERVER_ID=${CDCD_SOURCE__SERVER_ID:-52471}
# Likewise a metrics port of its own (/metrics, /healthz, /readyz; config.toml's is 127.0.0.1:9464).
export CDCD_METRICS__LISTEN=${CDCD_METRICS__LISTEN-127.0.0.1:9471}
cat > quickstart.toml <<'TOML'
# The masking rules of the quickstart, merged over config.toml: `cdcd run --config quickstart.toml`
[masking]
hmac_key_env = "CDCD_MASKING_KEY"

[[masking.rules]]
columns = "quickstart.users.email"
action = "hmac"

[[masking.rules]]
columns = "quickstart.users.phone"
action = "partial"
keep_right = 4

[[masking.rules]]
columns = "quickstart.users.ssn"
action = "redact"

[[masking.rules]]
columns = "quickstart.users.card_number"
action = "sha256"

[[masking.rules]]
columns = "quickstart.users.address"
action = "drop"

[[masking.detect]]
columns = "quickstart.users.note"
kinds = ["email", "phone", "credit-card", "ssn", "ip"]
TOML

# The personal data the lake must not contain (checked after each run).
PLAINTEXT=(
  ada@example.com ada@lovelace.example alan@example.org grace@example.net katherine@example.com
  ada.l@example.org '+44 20 7946 0001' '+44 161 496 0002' '+1 212 555 0143' '+1 757 555 0177'
  '+1 212 555 0199' '+44 161 496 0999' 123-45-6789 987-65-4321 234-56-7890 345-67-8901
  4111111111111111 5500005555555559 378282246310005 6011111111111117 '5500 0055 5555 5559'
  'St James' Wilmslow 'Navy Way' Hampton 203.0.113.7 421-55-0198
)

# ---------------------------------------------------------------- helpers
section() { printf '\n== %s\n' "$*"; }
# shown COMMAND...: print the command as the user types it (cdcd for the binary's path)
shown() { printf '$ %s\n' "$*"; }

# run_sql SQL: print it, then run it
run_sql() {
  sed '1s/^/sql> /; 1!s/^/     /' <<<"$1"
  sql "$1"
}

checkpoint_file() {
  local f
  for f in lake/_cdcd/checkpoint-*.json; do [ -f "$f" ] && { echo "$f"; return 0; }; done
  return 1
}

# caught_up FILE POS: the checkpoint is at or after that binlog position
caught_up() {
  local cp file pos
  cp=$(checkpoint_file) || return 1
  file=$(sed -n 's/.*"file":"\([^"]*\)".*/\1/p' "$cp")
  pos=$(sed -n 's/.*"pos":\([0-9]*\).*/\1/p' "$cp")
  [ -n "$file" ] && [ -n "$pos" ] || return 1
  local have=$((10#${file##*.})) want=$((10#${1##*.}))
  (( have > want || (have == want && pos >= $2) ))
}

# start_run LOG: `cdcd run` in the background, until it says it is writing the lake
start_run() {
  local log_file=$1 i
  shown "CDCD_LOG=info cdcd run --config quickstart.toml &"
  CDCD_LOG=info "$CDCD" run --config quickstart.toml 2> "$log_file" &
  RUN_PID=$!
  for (( i = 0; i < 300; i++ )); do
    if grep -q "writing the lake" "$log_file"; then sed 's/^/  /' "$log_file"; return 0; fi
    if ! kill -0 "$RUN_PID" 2>/dev/null; then
      wait "$RUN_PID" || true; RUN_PID=
      cat "$log_file" >&2; die "cdcd run stopped before it was ready"
    fi
    sleep 0.2
  done
  cat "$log_file" >&2; die "cdcd run was not ready within 60 s"
}

# wait_lake FILE POS: until the checkpoint (written after the objects) reaches that position
wait_lake() {
  local t0 i
  t0=$(now_ms)
  for (( i = 0; i < 300; i++ )); do
    if caught_up "$1" "$2"; then log "the lake has every change up to $1:$2 ($(since_s "$t0") s)"; return 0; fi
    kill -0 "$RUN_PID" 2>/dev/null || die "cdcd run stopped"
    sleep 0.2
  done
  die "the checkpoint did not reach $1:$2 within 60 s"
}

# stop_run LOG: SIGTERM; cdcd writes what it has, checkpoints and exits 0
stop_run() {
  local log_file=$1 rc=0 lines
  lines=$(wc -l < "$log_file")
  shown "kill -TERM %1   # cdcd flushes, checkpoints and exits 0"
  kill -TERM "$RUN_PID" 2>/dev/null || log "cdcd run had already stopped"
  wait "$RUN_PID" || rc=$?
  RUN_PID=
  tail -n +"$((lines + 1))" "$log_file" | sed 's/^/  /'
  [ "$rc" = 0 ] || die "cdcd run exited with $rc (log: $WORK/$log_file)"
}

cleanup() {
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# query OUT SQL: run SQL in DuckDB over the lake (tests/support/lake_query.py: every table of the
# lake is a view "cdcd"."<schema>_<table>", as Athena names them); JSON lines into OUT
query() {
  printf '%s\n' "$2" > query.sql
  "$PY" "$LAKE_QUERY" "$WORK/lake" query.sql > "$1" || die "DuckDB failed on: $2"
}

# table FILE: JSON lines as a table (64-digit hex hashes shortened to 12 digits)
table() {
  "$PY" - "$1" <<'PY'
import json, re, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not rows:
    print("  (no rows)")
    sys.exit(0)
names = list(rows[0])
def cell(v):
    if v is None:
        return "NULL"
    s = v if isinstance(v, str) else json.dumps(v)
    return s[:12] + "…" if re.fullmatch(r"[0-9a-f]{64}", s) else s
cells = [[cell(r[n]) for n in names] for r in rows]
widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
line = lambda values: "  " + " | ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
print(line(names))
print("  " + "-+-".join("-" * w for w in widths))
for r in cells:
    print(line(r))
PY
}

# no_plaintext: no personal data in any row or column of the lake, and no address column
no_plaintext() {
  local s
  query all.jsonl 'SELECT * FROM "cdcd"."quickstart_users"'
  for s in "${PLAINTEXT[@]}"; do
    if grep -qF -- "$s" all.jsonl; then die "the lake holds unmasked personal data: $s"; fi
  done
  if grep -q '"address"' all.jsonl; then die "the lake has an address column (the rule drops it)"; fi
}

# ---------------------------------------------------------------- the quickstart
section "a users table with personal data (database quickstart on $CDCD_SOURCE__URL)"
run_sql "DROP DATABASE IF EXISTS quickstart;
CREATE DATABASE quickstart;
CREATE TABLE quickstart.users (
  id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), phone VARCHAR(30), ssn CHAR(11),
  card_number VARCHAR(19), address TEXT, note TEXT, balance DECIMAL(12,2), signed_up DATETIME(6))"

section "cdcd run: config.toml, plus the environment and the masking rules (quickstart.toml) in $WORK"
shown "export CDCD_SOURCE__URL=$CDCD_SOURCE__URL CDCD_SOURCE_PASSWORD=$SHOWN_PASSWORD CDCD_SOURCE__TABLES=$CDCD_SOURCE__TABLES"
shown "export CDCD_SOURCE__SERVER_ID=$CDCD_SOURCE__SERVER_ID CDCD_METRICS__LISTEN=$CDCD_METRICS__LISTEN"
shown "export CDCD_LAKE__FLUSH_SECONDS=$CDCD_LAKE__FLUSH_SECONDS CDCD_MASKING_KEY=$SHOWN_KEY"
shown "cat quickstart.toml"
sed 's/^/  /' quickstart.toml
start_run run1.log

section "changes"
run_sql "INSERT INTO quickstart.users VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001', '123-45-6789', '4111111111111111',
   '12 St James''s Square, London', 'VIP, also reachable at ada.l@example.org', 100.50, '2026-11-25 09:00:00.123456'),
  (2, 'Alan Turing', 'alan@example.org', '+44 161 496 0002', '987-65-4321', '5500005555555559',
   'Wilmslow Road, Manchester', 'called from +44 161 496 0999 about card 5500 0055 5555 5559', 0.00, NOW(6)),
  (3, 'Grace Hopper', 'grace@example.net', '+1 212 555 0143', '234-56-7890', '378282246310005',
   '1 Navy Way, Arlington', 'SSN 421-55-0198 on file; last login from 203.0.113.7', 42.00, NOW(6));
UPDATE quickstart.users SET email = 'ada@lovelace.example', balance = balance + 20 WHERE id = 1;
BEGIN;
  INSERT INTO quickstart.users VALUES (4, 'Katherine Johnson', 'katherine@example.com', '+1 757 555 0177',
    '345-67-8901', '6011111111111117', 'Hampton, Virginia', NULL, 7.25, NOW(6));
  UPDATE quickstart.users SET balance = -5.25 WHERE id = 2;
COMMIT;
DELETE FROM quickstart.users WHERE id = 2;"
END=$(binlog_end)
read -r END_FILE END_POS <<<"$END"
wait_lake "$END_FILE" "$END_POS"
stop_run run1.log

section "the lake"
shown "find lake -type f"
find lake -type f | sort | sed 's/^/  /'
[ -n "$(find lake -name '*.parquet' -print -quit)" ] || die "no Parquet objects in the lake"

section "the Athena DDL: paste it into the Athena console once the lake is in S3"
shown "cdcd athena-ddl --config quickstart.toml --location s3://your-bucket/lake"
"$CDCD" athena-ddl --config quickstart.toml --location s3://your-bucket/lake > athena.sql
cat athena.sql
VIEW=$(awk '/^CREATE OR REPLACE VIEW "cdcd"\."quickstart_users_latest"/ { p = 1 } p { print } p && /;$/ { exit }' athena.sql)
[ -n "$VIEW" ] || die "no quickstart_users_latest view in the DDL"

section "the users as Athena sees them: the DDL's view, run by DuckDB over the lake"
shown "SELECT * FROM \"cdcd\".\"quickstart_users_latest\" ORDER BY id"
query latest.jsonl "$VIEW
SELECT * FROM \"cdcd\".\"quickstart_users_latest\" ORDER BY id"
table latest.jsonl
ids=$(grep -o '"id": [0-9]*' latest.jsonl | awk '{ print $2 }' | paste -sd,)
[ "$ids" = 1,3,4 ] || die "the _latest view has users $ids, want 1,3,4"

HISTORY='SELECT _cdc_op, id, email, phone, _cdc_commit_ts, _cdc_event_id FROM "cdcd"."quickstart_users" ORDER BY _cdc_seq'
section "every change"
shown "$HISTORY"
query history.jsonl "$HISTORY"
table history.jsonl
[ "$(wc -l < history.jsonl)" = 7 ] || die "the lake has $(wc -l < history.jsonl) changes, want 7"
no_plaintext

section "the checkpoint: where the next cdcd run resumes"
CHECKPOINT=$(checkpoint_file) || die "no checkpoint in lake/_cdcd"
shown "cat $CHECKPOINT"
cat "$CHECKPOINT"

section "one more change while cdcd is stopped, then cdcd run again"
run_sql "UPDATE quickstart.users SET phone = '+1 212 555 0199', note = 'new number: +1 212 555 0199' WHERE id = 3"
END=$(binlog_end)
read -r END_FILE END_POS <<<"$END"
start_run run2.log
grep -q "resuming from the checkpoint" run2.log || die "the second cdcd run did not resume from the checkpoint"
wait_lake "$END_FILE" "$END_POS"
stop_run run2.log

section "resumed at the checkpoint: the new change once, nothing twice"
COUNTS='SELECT count(*) AS changes, count(DISTINCT _cdc_event_id) AS distinct_event_ids FROM "cdcd"."quickstart_users"'
shown "$COUNTS"
query counts.jsonl "$COUNTS"
table counts.jsonl
grep -qx '{"changes": 8, "distinct_event_ids": 8}' counts.jsonl ||
  die "want 8 changes with 8 distinct event ids, the lake has: $(cat counts.jsonl)"
shown "${HISTORY/ORDER BY/WHERE id = 3 ORDER BY}"
query history3.jsonl "${HISTORY/ORDER BY/WHERE id = 3 ORDER BY}"
table history3.jsonl
[ "$(wc -l < history3.jsonl)" = 2 ] || die "want 2 changes of user 3"
no_plaintext
shown "cat $CHECKPOINT"
cat "$CHECKPOINT"
caught_up "$END_FILE" "$END_POS" || die "the checkpoint did not move past the new change"

echo
log "done: the masked lake is in $WORK/lake. For a lake in S3, set CDCD_LAKE__URL=s3://your-bucket/lake"
