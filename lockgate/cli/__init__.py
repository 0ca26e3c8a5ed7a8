"""The `lockgate` command: one module per command group, registered here in the order `--help` lists them.

A new group is a module with `add_command(sub)` and one line in `build_parser`.
"""

from __future__ import annotations

import argparse

from lockgate import __version__
from lockgate.cli import admin, check_config, db, keys, openapi, serve, teams, usage


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description="An OpenAI-compatible LLM gateway.")
    parser.add_argument("--version", action="version", version=f"lockgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve.add_command(sub)  # `serve`
    db.add_migrate_command(sub)  # `migrate`
    check_config.add_command(sub)  # `check-config`
    openapi.add_command(sub)  # `openapi`
    keys.add_command(sub)  # `keys …`
    db.add_command(sub)  # `db …`
    teams.add_command(sub)  # `teams …`
    usage.add_command(sub)  # `usage`
    admin.add_command(sub)  # `admin …` (console users)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
