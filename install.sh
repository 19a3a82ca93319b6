#!/bin/sh
# Install skiff on Debian 12: system packages, a virtual environment in
# /opt/skiff/venv (the system Python is externally managed, PEP 668), and the
# commands skiff, skiffd and skiff-runtime in /usr/local/bin.
#   ./install.sh          install
#   ./install.sh --dev    also the test dependencies and the peers the tests
#                         compare against (runc, crun, podman, skopeo, ...)
#   ./install.sh --uninstall   remove the commands and /opt/skiff/venv (not
#                         skiff's data in /var/lib/skiff, nor Debian packages)
set -eu
cd "$(dirname "$0")"
PREFIX=${SKIFF_PREFIX:-/opt/skiff}
BINDIR=${SKIFF_BINDIR:-/usr/local/bin}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo ./install.sh)" >&2
  exit 1
fi

if [ "${1:-}" = "--uninstall" ]; then
  # skiff-runtime's interpreter is a read-only bind mount (skiff/runtime/exeguard.py)
  guard="$PREFIX/venv/libexec/skiff-runtime-python"
  while grep -q " $guard " /proc/self/mountinfo 2>/dev/null; do umount -l "$guard"; done
  for cmd in skiff skiffd skiff-runtime; do rm -f "$BINDIR/$cmd"; done
  rm -rf "$PREFIX/venv"
  echo "install.sh: skiff removed ($PREFIX/venv, $BINDIR/skiff*)"
  exit 0
fi

PKGS="python3 python3-venv conmon catatonit iptables nftables iproute2 libseccomp2 busybox-static ca-certificates"
if [ "$DEV" = 1 ]; then
  PKGS="$PKGS runc crun podman skopeo umoci docker-registry containerd apache2-utils openssl hyperfine file uidmap iperf3"
fi
# the tests drive skiffd with the real docker CLI; Debian's docker.io brings
# one when the machine has none (its dockerd is never started by the tests)
if [ "$DEV" = 1 ] && ! command -v docker >/dev/null 2>&1; then
  PKGS="$PKGS docker.io"
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install.sh: apt-get install$missing"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
fi

if [ ! -x "$PREFIX/venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$PREFIX/venv"
fi
"$PREFIX/venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
if [ "$DEV" = 1 ]; then
  "$PREFIX/venv/bin/pip" install -q -e ".[test]"
else
  "$PREFIX/venv/bin/pip" install -q .
fi
for cmd in skiff skiffd skiff-runtime; do
  ln -sf "$PREFIX/venv/bin/$cmd" "$BINDIR/$cmd"
done
# skiff-runtime starts once per container command: a launcher without site (see skiff/runtime/launcher.py)
"$PREFIX/venv/bin/python" -I -m skiff.runtime.launcher "$BINDIR/skiff-runtime"
echo "install.sh: skiff installed in $PREFIX/venv; commands in $BINDIR"

# A first image that works offline: busybox built from Debian's static
# busybox, loaded as busybox:latest (skiff starts skiffd on first use).
if [ "$DEV" = 0 ] && [ "${SKIFF_NO_DEMO_IMAGE:-0}" = 0 ]; then
  if ! "$BINDIR/skiff" image inspect busybox:latest >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    "$PREFIX/venv/bin/python" -m skiff.testing.images "$tmp/busybox.tar" busybox:latest >/dev/null
    "$BINDIR/skiff" load -i "$tmp/busybox.tar"
    rm -rf "$tmp"
  fi
fi
