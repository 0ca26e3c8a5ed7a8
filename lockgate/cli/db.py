"""`lockgate migrate` and `lockgate db upgrade | current | rebuild-rollups`: the database schema, no server needed."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from typing import Any

from lockgate.cli.common import CONFIG_HELP, _config_from_env_text, _run, config_parent
from lockgate.config import ConfigError, resolve_config
from lockgate.store import Store


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the schema to head under the migration lock (safe from any number of replicas at once)."""
    if not args.config:
        _config_from_env_text()
    os.environ["LOCKGATE_MIGRATE_ON_START"] = "true"  # this command migrates whatever the replicas' setting
    return cmd_db_upgrade(args)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:  # Store.open() has applied the migrations
        print(f"{store.display_url}: at revision {await store.current()}")
        return 0

    return _run(args, action)


def cmd_db_current(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(args.config)
    except ConfigError as err:
        print(f"lockgate: invalid configuration:\n{err}", file=sys.stderr)
        return 2

    async def main() -> int:
        store = Store(config.database.url)
        try:
            print(f"{store.display_url}: at revision {await store.current() or '(none)'}")
        finally:
            await store.aclose()
        return 0

    return asyncio.run(main())


def cmd_db_rebuild_rollups(args: argparse.Namespace) -> int:
    """Recompute the one-dimension usage roll-ups from usage_daily (after a rolling upgrade to 0009)."""

    async def action(store: Store) -> int:
        from lockgate.usage.rollups import rebuild_rollups

        rows = await rebuild_rollups(store.engine, args.since)
        since = f"from {args.since.isoformat()}" if args.since else "for every day"
        print(f"{store.display_url}: usage roll-ups rebuilt {since} ({rows} rows)")
        return 0

    return _run(args, action)


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_migrate_command(sub: Any) -> None:
    """Register `migrate` on the main parser's subcommands."""
    migrate = sub.add_parser("migrate", help="apply the database migrations (one replica at a time) and exit")
    migrate.add_argument("--config", help=CONFIG_HELP)
    migrate.set_defaults(func=cmd_migrate)


def add_command(sub: Any) -> None:
    """Register `db` on the main parser's subcommands."""
    common = config_parent()

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", parents=[common], help="apply the migrations")
    upgrade.set_defaults(func=cmd_db_upgrade)
    current = db_sub.add_parser("current", parents=[common], help="show the schema revision")
    current.set_defaults(func=cmd_db_current)
    rebuild = db_sub.add_parser(
        "rebuild-rollups",
        parents=[common],
        help="recompute the usage roll-ups the console and reports read from the daily totals (after a rolling upgrade)",
    )
    rebuild.add_argument("--since", type=_day, help="only days from this date (YYYY-MM-DD); default every day")
    rebuild.set_defaults(func=cmd_db_rebuild_rollups)
