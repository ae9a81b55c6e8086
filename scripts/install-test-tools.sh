#!/usr/bin/env bash
# Installs the outside tools the end-to-end tests check Spool with, only when
# missing: promtool (Debian's prometheus package) validates both /metrics.
set -euo pipefail
if ! command -v promtool >/dev/null; then
  echo "installing (apt): prometheus (for promtool)"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
