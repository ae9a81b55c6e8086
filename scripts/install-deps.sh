#!/usr/bin/env bash
# Installs what Spool needs to build, run and test, and only what is missing:
# the Debian packages (hiredis, libevent, OpenSSL, redis, pkg-config, python3 + pytest).
# The Swift toolchain itself is expected on PATH (swift.org's Debian 12 build).
set -euo pipefail

packages=(libhiredis-dev libevent-dev libssl-dev redis-server redis-tools pkg-config python3 python3-pytest)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3-pytest is only needed when no pytest is importable already.
if [[ " ${missing[*]} " == *" python3-pytest "* ]] && python3 -c 'import pytest' 2>/dev/null; then
  missing=("${missing[@]/python3-pytest}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

source "$(dirname "$0")/apt-install.sh"
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

if ! command -v swift >/dev/null; then
  echo "error: swift is not on PATH; install the Swift 6 toolchain for Debian 12 from swift.org" >&2
  exit 1
fi
