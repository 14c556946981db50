#!/usr/bin/env bash
# Install what a fresh Debian 12 (bookworm) machine needs to build cdcd and run its test suite.
# Idempotent and quiet: does nothing (no apt-get update, no network) when everything is present.
#
#   Debian: mariadb-server mariadb-client (private MariaDB 10.11 for tests), openssl (test CA),
#           debootstrap (Debian sid chroot for Oracle MySQL 9.7, built by scripts/mysql.sh),
#           build-essential pkg-config (C toolchain for Rust build scripts), ca-certificates,
#           python3-venv (venv of scripts/aws.sh), prometheus (promtool, and the server that
#           tests/live_check.rs scrapes cdcd with), systemd (systemd-analyze);
#           Node.js + npm come with the machine (scripts/aws.sh installs Debian's only if node is missing)
#   Rust:   the machine's rustup toolchain must already exist; rustfmt/clippy are added if missing
#
# Set CDCD_SKIP_APT=1 to skip the Debian part (e.g. non-root developer machines set up by hand).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

DEBS=(mariadb-server mariadb-client openssl debootstrap build-essential pkg-config ca-certificates
      python3-venv prometheus systemd)

if [ "${CDCD_SKIP_APT:-0}" != 1 ]; then
  apt_install "${DEBS[@]}"      # one apt-get update at most, only if something is missing
fi

# Rust toolchain
# shellcheck source=/dev/null
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
command -v cargo >/dev/null ||
  die "no cargo on PATH: install the Rust toolchain with rustup (this script does not download toolchains)"
if command -v rustup >/dev/null; then
  comps=()
  cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
  if [ ${#comps[@]} -gt 0 ]; then
    log "rustup component add ${comps[*]}"
    rustup component add "${comps[@]}" >/dev/null || die "rustup component add ${comps[*]} failed"
  fi
else
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    die "cargo found without rustup, and rustfmt/clippy are missing; install them with your toolchain"
  fi
fi
log "bootstrap ok: $(cargo --version), $(mariadbd --version 2>/dev/null | awk '{print $3}'), debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')"
