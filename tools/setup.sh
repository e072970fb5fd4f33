#!/bin/sh
# Install the Debian packages pfor needs to build, test and benchmark, when
# any is missing.  Run by `make` (and so by both README commands and CI);
# does nothing when everything is installed.  Needs root (or sudo) only when
# it has something to install.
set -eu

PKGS="build-essential cmake pkg-config gdb valgrind python3
      libcurl4-openssl-dev libmicrohttpd-dev libhiredis-dev libjansson-dev redis-server
      libopenmpi-dev openmpi-bin gnuplot-nox wrk clang-format"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "setup: installing missing Debian packages:$missing"
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "setup: error: these packages are missing and this user cannot install them:$missing" >&2
  exit 1
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
