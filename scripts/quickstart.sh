#!/usr/bin/env bash
# The quickstart: watch row changes of a real server go by with `cdcd tail`.
#
#   scripts/quickstart.sh
#
# On a fresh Debian 12 machine (as root): installs what is missing, builds cdcd, starts a private
# MariaDB with a row-based binlog on 127.0.0.1:3307 (scripts/mariadb.sh), creates a `users` table
# with personal data, makes inserts, an update, a multi-statement transaction and a delete, and
# prints what `cdcd tail` captured: in cdcd's native format, as AWS DMS would have written it to
# Kinesis, and with masking rules applied to the personal data. cdcd runs on the repository's config.toml; the only settings changed are
# the server address and the password, through the environment as a deployment would:
#   CDCD_SOURCE__URL=mysql://repl@127.0.0.1:3307  CDCD_SOURCE_PASSWORD=replpw
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
cd "$ROOT"

"$HERE/bootstrap.sh"
log "building cdcd (release)"
cargo build --release -q -p cdcd
CDCD="${CARGO_TARGET_DIR:-$ROOT/target}/release/cdcd"
"$HERE/mariadb.sh" start >/dev/null

sql() { "$HERE/mariadb.sh" sql "$1"; }
position() { sql "SHOW MASTER STATUS" | awk 'NR == 2 { print "file:" $1 ":" $2 }'; }

sql "DROP DATABASE IF EXISTS quickstart; CREATE DATABASE quickstart;
     CREATE TABLE quickstart.users (
       id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), phone VARCHAR(30),
       ssn CHAR(11), card_number VARCHAR(19), address TEXT, balance DECIMAL(12,2),
       signed_up DATETIME(6))"
FROM=$(position)
log "changes start at $FROM"
sql "INSERT INTO quickstart.users VALUES
       (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001', '123-45-6789', '4111111111111111',
        '12 St James''s Square, London', 100.50, '2026-11-25 09:00:00.123456'),
       (2, 'Alan Turing', 'alan@example.org', '+44 161 496 0002', '987-65-4321', '5500005555555559',
        'Wilmslow Road, Manchester', 0.00, NOW(6));
     UPDATE quickstart.users SET email = 'ada@lovelace.example', balance = balance + 20 WHERE id = 1;
     BEGIN;
       INSERT INTO quickstart.users (id, name, email) VALUES (3, 'Grace Hopper', 'grace@example.net');
       UPDATE quickstart.users SET balance = -5.25 WHERE id = 2;
     COMMIT;
     DELETE FROM quickstart.users WHERE id = 2;"

export CDCD_SOURCE__URL=mysql://repl@127.0.0.1:3307 CDCD_SOURCE_PASSWORD=replpw
# show CONFIG [OPTION...]: the changes of the quickstart, with that config file
show() {
  local config=$1; shift
  "$CDCD" tail --config "$config" --from "$FROM" --until-end --tables 'quickstart.*' "$@"
}
echo
echo "== cdcd tail --from $FROM --until-end --tables 'quickstart.*'   (native format)"
show "$ROOT/config.toml"
echo
echo "== the same changes with --format dms (what AWS DMS writes to Kinesis)"
show "$ROOT/config.toml" --format dms
echo
echo "== with masking rules (what leaves the process when the users table holds personal data)"
MASKING=$(mktemp --suffix=.toml)
trap 'rm -f "$MASKING"' EXIT
cat > "$MASKING" <<'TOML'
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
action = "drop"
[[masking.detect]]
columns = "quickstart.users.address"
kinds = ["email", "phone", "credit-card", "ssn", "ip"]
TOML
CDCD_MASKING_KEY=quickstart-demo-key show "$MASKING"
echo
log "done. Follow live changes with: CDCD_SOURCE__URL=$CDCD_SOURCE__URL CDCD_SOURCE_PASSWORD=replpw $CDCD tail --tables 'quickstart.*'"
