#!/usr/bin/env bash
# Installs the outside tools the end-to-end tests check Spool with, only when
# missing: promtool (Debian's prometheus package) validates both /metrics;
# jq and curl run the README's examples.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
source "$(dirname "$0")/apt-install.sh"
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
# The Python SSE client (httpx-sse) lives in the project's virtualenv.
bash "$(dirname "$0")/install-validators.sh" >/dev/null
