"""A gateway of mock models under the names the docs and examples use (gpt-4o-mini, claude-sonnet…)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness import MASTER_KEY, GatewayProcess

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet", "text-embedding-3-small")


def mock_config(workdir: Path, **top: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER_KEY},
        "database": {"url": f"sqlite:///{workdir}/lockgate.db"},
        "server": {"max_body_bytes": 256 * 1024},
        "models": [
            {"name": name, "deployments": [{"provider": "mock", "model": name, "mock_embedding_dims": 8}]} for name in MOCK_MODELS
        ],
        **top,
    }


def mock_gateway(workdir: Path, **top: Any) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(mock_config(workdir, **top), workdir).start()
    try:
        yield gw
    finally:
        gw.stop()
