"""`lockgate keys …`: work on the configured database directly, no server needed.

    lockgate keys create --name N [--models a,b] [--rpm R] [--tpm T] [--max-parallel N] [--budget USD --period monthly] [--expires 30d]
    lockgate keys list [--active] [--json]
    lockgate keys revoke ID
    lockgate keys sync-edge [--timeout S]

A running gateway sees a key revoked here within `auth.key_cache_ttl_s`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from typing import Any

from lockgate.audit import CLI, AuditLog
from lockgate.auth.keys import KeyRepository, KeyRow
from lockgate.cli.common import (
    _run,
    add_budget_and_limit_arguments,
    budget_period,
    config_parent,
    period_without_budget,
    print_json_list,
)
from lockgate.store import Store

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """`30d`, `12h`, `15m`, `90s`, `2w`, or an ISO 8601 date/time (UTC when no zone)."""
    now = now or dt.datetime.now(dt.UTC)
    match = _DURATION.match(value)
    if match:
        return now + dt.timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (30d, 12h) or an ISO date: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _models(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def _print_row(row: KeyRow) -> None:
    models = ",".join(row.models) if row.models else "*"
    state = "revoked" if row.revoked else ("expired" if row.is_expired() else "active")
    expires = row.expires_at.isoformat(timespec="seconds") if row.expires_at else "-"
    print(f"{row.id:<22} {row.key_prefix + '…':<14} {state:<8} {row.name[:24]:<24} {models[:30]:<30} {expires}")


def cmd_keys_create(args: argparse.Namespace) -> int:
    if period_without_budget(args):
        return 2

    async def action(store: Store) -> int:
        row, token = await KeyRepository(store).create(
            name=args.name,
            user=args.user,
            team=args.team,
            models=args.models,
            rpm=args.rpm,
            tpm=args.tpm,
            max_parallel_requests=args.max_parallel,
            max_budget_usd=args.budget,
            budget_period=budget_period(args),
            expires_at=args.expires,
        )
        await AuditLog(store.engine).record(CLI, "key.create", target_type="key", target_id=row.id, after=row.public())
        if args.json:
            print(json.dumps({"key": token, **row.public()}))
        else:
            print(f"Created key {row.id} ({row.name}).")
            print(f"  key: {token}")
            print("  Store it now: it is shown only this once.")
        return 0

    return _run(args, action)


def cmd_keys_list(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        rows = await KeyRepository(store).list(include_revoked=not args.active)
        if args.json:
            print_json_list(rows)
            return 0
        print(f"{'ID':<22} {'PREFIX':<14} {'STATE':<8} {'NAME':<24} {'MODELS':<30} EXPIRES")
        for row in rows:
            _print_row(row)
        return 0

    return _run(args, action)


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        repo = KeyRepository(store)
        before = await repo.get(args.id)
        row = await repo.revoke(args.id)
        if row is None or before is None:
            print(f"lockgate: no key with id {args.id}", file=sys.stderr)
            return 1
        await AuditLog(store.engine).record(
            CLI, "key.revoke", target_type="key", target_id=row.id, before=before.public(), after=row.public()
        )
        print(f"Revoked key {row.id} ({row.name}); gateways refuse it within auth.key_cache_ttl_s.")
        return 0

    return _run(args, action)


def cmd_keys_sync_edge(args: argparse.Namespace) -> int:
    """Send every key (revoked ones as revocations) to auth.key_events: the edge's KV learns keys made before it."""
    from lockgate.config import resolve_config
    from lockgate.edge_keys import MAX_PER_POST, KeyEvents

    events_config = resolve_config(args.config).auth.key_events
    if events_config is None:
        print("lockgate: auth.key_events is not configured: there is no edge to send keys to", file=sys.stderr)
        return 2

    async def action(store: Store) -> int:
        repo = KeyRepository(store)
        events = KeyEvents(events_config)  # not started: drained here, page by page, in order
        sent = revoked = 0
        after = ""
        try:
            while page := await repo.with_hashes(after, limit=MAX_PER_POST * 10):
                for row, key_hash in page:
                    events.upsert(row, key_hash)
                    revoked += row.revoked
                if not await events.drain(args.timeout):
                    print(f"lockgate: the edge did not take the events ({sent} keys sent before)", file=sys.stderr)
                    return 1
                sent += len(page)
                after = page[-1][0].id
        finally:
            await events.client.aclose()
        print(f"Sent {sent} keys to the edge ({revoked} as revoked).")
        return 0

    return _run(args, action)


def add_command(sub: Any) -> None:
    """Register `keys` on the main parser's subcommands."""
    common = config_parent()

    keys = sub.add_parser("keys", help="manage virtual API keys in the configured database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    create = keys_sub.add_parser("create", parents=[common], help="create a key; prints it once")
    create.add_argument("--name", required=True)
    create.add_argument("--user")
    create.add_argument("--team")
    create.add_argument("--models", type=_models, help="comma-separated public model names (default: all)")
    add_budget_and_limit_arguments(create)
    create.add_argument("--expires", type=parse_expiry, help="30d, 12h, 15m … or an ISO date")
    create.add_argument("--json", action="store_true", help="print the key and its fields as JSON")
    create.set_defaults(func=cmd_keys_create)

    listing = keys_sub.add_parser("list", parents=[common], help="list keys (never their secrets)")
    listing.add_argument("--active", action="store_true", help="hide revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)

    revoke = keys_sub.add_parser("revoke", parents=[common], help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_keys_revoke)

    sync = keys_sub.add_parser(
        "sync-edge", parents=[common], help="send every key's hash to auth.key_events (back-fills an edge's key cache)"
    )
    sync.add_argument("--timeout", type=float, default=60.0, help="seconds to keep retrying an unreachable edge (default 60)")
    sync.set_defaults(func=cmd_keys_sync_edge)
