"""What several `lockgate` commands share: the whole config from LOCKGATE_CONFIG_YAML, the model table,
and running one action on the configured database."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from lockgate.config import Config, ConfigError, resolve_config
from lockgate.store import Store


def _describe(config: Config) -> list[str]:
    lines = []
    for group in config.models:
        deps = ", ".join(f"{d.display_id(i)}" for i, d in enumerate(group.deployments))
        lines.append(f"  {group.name:<28} {group.strategy:<9} {deps}")
    return lines


def _config_from_env_text() -> None:
    """LOCKGATE_CONFIG_YAML holds the whole config (platforms without volumes): written to a private
    file under $TMPDIR so every worker reads it like a mounted one (with ${ENV} interpolation)."""
    text = os.environ.get("LOCKGATE_CONFIG_YAML")
    if not text or os.environ.get("LOCKGATE_CONFIG"):
        return
    import atexit
    import tempfile

    fd, path = tempfile.mkstemp(prefix="lockgate-config-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.environ["LOCKGATE_CONFIG"] = path
    atexit.register(os.unlink, path)


def _run(args: argparse.Namespace, action: Callable[[Store], Awaitable[int]]) -> int:
    try:
        config = resolve_config(args.config)
    except ConfigError as err:
        print(f"lockgate: invalid configuration:\n{err}", file=sys.stderr)
        return 2

    _quiet_logs()

    async def main() -> int:
        store = Store(config.database.url)
        try:
            await store.open()
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except Exception as err:  # connection refused, bad credentials, no such database…
        print(f"lockgate: cannot use the database: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def _quiet_logs() -> None:
    # stdout is for the answer (a key, JSON); log lines go to stderr, warnings and worse only.
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
