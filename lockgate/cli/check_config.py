"""`lockgate check-config FILE`: validate a config file and list its models and back-ends."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lockgate.cli.common import _describe
from lockgate.config import Config, ConfigError, load_config


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as err:
        print(f"{args.file}: invalid configuration:\n{err}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid; {len(config.models)} model(s):")
    print("\n".join(_describe(config)))
    print(_backends(config))
    return 0


def _backends(config: Config) -> str:
    """Where each stateful feature lives: each says its own, none follows another."""
    return (
        f"back-ends: ratelimit {config.ratelimit.backend}, budgets {config.budgets.backend}, "
        f"cool-downs {config.router.cooldown.backend}"
        + (f"; Redis on_error {config.redis.on_error}" if config.redis_users() else "")
    )


def add_command(sub: Any) -> None:
    """Register `check-config` on the main parser's subcommands."""
    check = sub.add_parser("check-config", help="validate a config file and list its models")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
