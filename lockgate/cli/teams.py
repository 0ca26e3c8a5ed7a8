"""`lockgate teams …`: team records in the configured database directly, no server needed.

    lockgate teams create NAME [--budget USD --period monthly] [--rpm R] [--tpm T] [--max-parallel N] [--json]
    lockgate teams list [--json]

A running gateway sees a change made here within `auth.key_cache_ttl_s`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lockgate.audit import CLI, AuditLog
from lockgate.auth.teams import TEAM_ID, TeamExists, TeamRepository, TeamRow
from lockgate.cli.common import (
    _run,
    add_budget_and_limit_arguments,
    budget_period,
    config_parent,
    period_without_budget,
    print_json_list,
)
from lockgate.store import Store


def _team_id(value: str) -> str:
    if not TEAM_ID.match(value):
        raise argparse.ArgumentTypeError(f"not a team name (letters, digits and . _ : @ + -): {value!r}")
    return value


def _limit(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _print_row(row: TeamRow) -> None:
    budget = f"${row.max_budget_usd:g}/{row.budget_period}" if row.max_budget_usd is not None else "-"
    print(f"{row.id[:30]:<30} {budget:<20} {_limit(row.rpm):>8} {_limit(row.tpm):>10}")


def cmd_teams_create(args: argparse.Namespace) -> int:
    if period_without_budget(args):
        return 2

    async def action(store: Store) -> int:
        try:
            row = await TeamRepository(store).create(
                args.name,
                max_budget_usd=args.budget,
                budget_period=budget_period(args),
                rpm=args.rpm,
                tpm=args.tpm,
                max_parallel_requests=args.max_parallel,
            )
        except TeamExists:
            print(f"lockgate: a team {args.name} already exists", file=sys.stderr)
            return 1
        await AuditLog(store.engine).record(CLI, "team.create", target_type="team", target_id=row.id, after=row.public())
        if args.json:
            print(json.dumps(row.public()))
        else:
            print(f"Created team {row.id}.")
        return 0

    return _run(args, action)


def cmd_teams_list(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        rows = await TeamRepository(store).list()
        if args.json:
            print_json_list(rows)
            return 0
        print(f"{'TEAM':<30} {'BUDGET':<20} {'RPM':>8} {'TPM':>10}")
        for row in rows:
            _print_row(row)
        return 0

    return _run(args, action)


def add_command(sub: Any) -> None:
    """Register `teams` on the main parser's subcommands."""
    common = config_parent()

    teams = sub.add_parser("teams", help="manage teams (shared budgets and limits) in the configured database")
    teams_sub = teams.add_subparsers(dest="teams_command", required=True)

    create = teams_sub.add_parser("create", parents=[common], help="create a team record")
    create.add_argument("name", type=_team_id, help="the team name, as keys carry it")
    add_budget_and_limit_arguments(create, shared=", shared by the team's keys")
    create.add_argument("--json", action="store_true", help="print the team as JSON")
    create.set_defaults(func=cmd_teams_create)

    listing = teams_sub.add_parser("list", parents=[common], help="list team records")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_teams_list)
