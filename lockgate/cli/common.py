"""What several `lockgate` commands share: the whole config from LOCKGATE_CONFIG_YAML, the model table,
and running one action on the configured database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lockgate.auth.keys import BUDGET_PERIODS
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


CONFIG_HELP = "YAML config file (default: $LOCKGATE_CONFIG, else the embedded default)"


def config_parent() -> argparse.ArgumentParser:
    """The --config option every database command takes, as a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help=CONFIG_HELP)
    return common


def add_budget_and_limit_arguments(parser: argparse.ArgumentParser, shared: str = "") -> None:
    """--budget/--period and --rpm/--tpm/--max-parallel, as keys and teams both set them."""
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    parser.add_argument("--max-parallel", type=int, help=f"requests in flight at once{shared}")
    parser.add_argument("--budget", type=float, help=f"max budget in USD{shared}")
    parser.add_argument("--period", choices=BUDGET_PERIODS, help="budget period (default: total)")


def budget_period(args: argparse.Namespace) -> str | None:
    """The period to store: the one given, 'total' for a budget without one, none without a budget."""
    return (args.period or "total") if args.budget is not None else None


def period_without_budget(args: argparse.Namespace) -> bool:
    """--period alone is a mistake (exit 2), said on stderr."""
    if args.period and args.budget is None:
        print("lockgate: --period needs --budget", file=sys.stderr)
        return True
    return False


def print_json_list(rows: Iterable[Any]) -> None:
    """A listing as the admin API returns it: {"object": "list", "data": [...public fields...]}."""
    print(json.dumps({"object": "list", "data": [r.public() for r in rows]}))
