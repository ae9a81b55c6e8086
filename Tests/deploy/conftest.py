"""Shared fixtures of the deployment-artifact tests (Tests/deploy).

Everything here runs offline: no Docker engine, no cluster. The validators come
from scripts/install-validators.sh (.spool/venv); run the tests with that venv:

    bash scripts/install-validators.sh
    .spool/venv/bin/python -m pytest -q Tests/deploy
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tools  # noqa: E402

REPO = tools.REPO
K8S = REPO / "k8s"
COMPOSE_DIR = REPO / "compose"


def _tool(fn, *args):
    try:
        return fn(*args)
    except tools.MissingTool as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return _tool(tools.venv_tool, "hadolint")


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    return _tool(tools.compose_binary)


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    return _tool(tools.venv_tool, "kubernetes-validate")


@pytest.fixture(scope="session")
def yamllint() -> Path:
    return _tool(tools.venv_tool, "yamllint")


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


@pytest.fixture(scope="session")
def k8s_docs() -> list[tuple[Path, dict]]:
    return load_k8s_docs()


def find(docs, kind: str, name: str) -> dict:
    for _, d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in k8s/")
