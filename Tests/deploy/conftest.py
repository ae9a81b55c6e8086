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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy_tools as tools  # noqa: E402
from deploy_tools import load_k8s_docs  # noqa: E402


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


@pytest.fixture(scope="session")
def k8s_docs() -> list[tuple[Path, dict]]:
    return load_k8s_docs()
