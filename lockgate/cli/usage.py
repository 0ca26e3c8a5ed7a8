"""`lockgate usage [--by model|key|team|day] [--since 7d]`: a usage table read from the configured database."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from lockgate.cli.common import CONFIG_HELP
from lockgate.usage.queries import GROUPS, report, since_days

COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "errors",
    "latency_ms_p50",
    "latency_ms_p95",
)
HEADERS = ("requests", "prompt", "completion", "cached", "cost_usd", "errors", "p50_ms", "p95_ms")


def add_command(sub: Any) -> None:
    usage = sub.add_parser("usage", help="print usage and spend from the database")
    usage.add_argument("--config", help=CONFIG_HELP)
    usage.add_argument("--by", choices=tuple(GROUPS), default="model", help="group rows by (default model)")
    usage.add_argument("--since", default="7d", help="how far back, in whole UTC days: 7d, 2w, 24h (default 7d)")
    usage.set_defaults(func=cmd_usage)


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if column.startswith("latency"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], field: str) -> str:
    header = (field, *HEADERS)
    body = [[_cell(r[field]) if r[field] is not None else "(none)", *(_cell(r[c], c) for c in COLUMNS)] for r in rows]
    if rows:
        total = [
            "TOTAL",
            *(_cell(sum(r[c] for r in rows), c) if c in COLUMNS[:6] else "" for c in COLUMNS),
        ]
        body.append(total)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for row in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def cmd_usage(args: argparse.Namespace) -> int:
    import sys

    from lockgate.cli.common import _run

    today = dt.datetime.now(dt.UTC).date()
    try:
        start = since_days(args.since, today)
    except ValueError as err:
        print(f"lockgate: --since {args.since!r}: {err}", file=sys.stderr)
        return 2

    async def action(store: Any) -> int:
        rows = await report(store.engine, args.by, start, today)
        print(f"Usage {start.isoformat()} .. {today.isoformat()} (UTC), by {args.by}")
        print(format_table(rows, GROUPS[args.by]) if rows else "no requests recorded")
        return 0

    return _run(args, action)
