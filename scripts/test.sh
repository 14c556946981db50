#!/usr/bin/env bash
# THE test command for cdcd (see README): bootstrap the machine, start the real services (MariaDB,
# MySQL, SeaweedFS S3 and the Kinesis stand-ins; left running for the next run), then run the
# tests, the deploy checks (Helm, Kubernetes schemas, checkov, systemd, promtool), rustfmt and
# clippy.
# Exits non-zero if any step fails; all three cargo steps run even if an earlier one fails.
#
#   scripts/test.sh
#
# Env: CDCD_SERVICES_ENV (default /tmp/cdcd-services.env) where services.sh writes the exports,
#      CARGO_TARGET_DIR etc. are honoured by cargo as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

scripts/bootstrap.sh
# shellcheck source=/dev/null
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

scripts/services.sh start
ENV_FILE=${CDCD_SERVICES_ENV:-/tmp/cdcd-services.env}
# shellcheck source=/dev/null
. "$ENV_FILE"

failed=()
step() {  # step NAME CMD...
  local name=$1 t0; shift
  t0=$(now_ms)
  log "==> $name: $*"
  if "$@"; then
    log "<== $name: ok ($(since_s "$t0") s)"
  else
    log "<== $name: FAILED (exit $?, $(since_s "$t0") s)"
    failed+=("$name")
  fi
}

step test cargo test --workspace --all-targets -- --test-threads=2
# The deploy checks load the rendered configs into the binary the tests just built.
CDCD_BIN="${CARGO_TARGET_DIR:-target}/debug/cdcd" step deploy scripts/check-deploy.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets -- -D warnings

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all checks passed"
