#!/usr/bin/env bash
# Install cdcd as a systemd service (deploy/systemd/cdcd.service). Run as root:
#
#   deploy/systemd/install.sh [--binary PATH] [--enable] [--start]
#
#   --binary PATH  the cdcd binary to install as /usr/local/bin/cdcd (default: target/release/cdcd
#                  when it exists; otherwise an already installed /usr/local/bin/cdcd is kept)
#   --enable       systemctl enable cdcd (start at boot)
#   --start        systemctl restart cdcd now (configure it first: see the printed steps)
#
# Installs the unit to /etc/systemd/system/cdcd.service, and, only when they do not exist yet,
# /etc/cdcd/config.toml (0644) and /etc/cdcd/cdcd.env (0600) from the examples beside this script,
# and /etc/credstore/ (0700) for the credentials. Existing configuration is never overwritten.
# DESTDIR=/some/dir installs into a staging tree instead (no systemctl calls, no root needed).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DESTDIR=${DESTDIR:-}

binary="" enable=0 start=0
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --enable) enable=1; shift ;;
    --start) start=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[cdcd-install] $*"; }
die() { echo "[cdcd-install] ERROR: $*" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or set DESTDIR to stage the files)"
fi
if [ -z "$binary" ] && [ -x "$REPO/target/release/cdcd" ]; then
  binary=$REPO/target/release/cdcd
fi

if [ -n "$binary" ]; then
  [ -x "$binary" ] || die "$binary is not an executable file"
  install -D -m 0755 "$binary" "$DESTDIR/usr/local/bin/cdcd"
  say "installed $binary as /usr/local/bin/cdcd"
elif [ ! -x "$DESTDIR/usr/local/bin/cdcd" ]; then
  die "no cdcd binary: build one (cargo build --release -p cdcd) or pass --binary PATH"
fi

install -D -m 0644 "$HERE/cdcd.service" "$DESTDIR/etc/systemd/system/cdcd.service"
say "installed /etc/systemd/system/cdcd.service"

install -d -m 0755 "$DESTDIR/etc/cdcd"
if [ -e "$DESTDIR/etc/cdcd/config.toml" ]; then
  say "kept the existing /etc/cdcd/config.toml"
else
  install -m 0644 "$HERE/config.toml" "$DESTDIR/etc/cdcd/config.toml"
  say "installed /etc/cdcd/config.toml (edit source.url and the lake first)"
fi
if [ -e "$DESTDIR/etc/cdcd/cdcd.env" ]; then
  say "kept the existing /etc/cdcd/cdcd.env"
else
  install -m 0600 "$HERE/cdcd.env" "$DESTDIR/etc/cdcd/cdcd.env"
  say "installed /etc/cdcd/cdcd.env (optional overrides)"
fi
install -d -m 0700 "$DESTDIR/etc/credstore"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ $enable = 1 ]; then systemctl enable cdcd.service; fi
  if [ $start = 1 ]; then systemctl restart cdcd.service; systemctl --no-pager status cdcd.service || true; fi
elif [ -z "$DESTDIR" ]; then
  say "systemd is not running here: skipped daemon-reload/enable/start"
fi

cat <<'EOS'
[cdcd-install] next steps:
  1. Edit /etc/cdcd/config.toml (source.url, tls, lake, masking rules).
  2. Store the secrets as root-only credentials (a trailing newline is ignored):
       install -m 0600 /dev/null /etc/credstore/source-password
       printf '%s' 'the-password' > /etc/credstore/source-password
       install -m 0600 /dev/null /etc/credstore/masking-key
       head -c 32 /dev/urandom | base64 > /etc/credstore/masking-key
     (or encrypt them with systemd-creds and use LoadCredentialEncrypted= in a drop-in)
  3. Check the source server:  cdcd check --config /etc/cdcd/config.toml
     (as root, with CDCD_SOURCE__PASSWORD_FILE=/etc/credstore/source-password)
  4. systemctl enable --now cdcd && journalctl -fu cdcd
     curl -s localhost:9464/readyz; curl -s localhost:9464/metrics | grep ^cdcd_
EOS
