"""`lockgate openapi`: print the OpenAPI document the gateway serves (docs/openapi.yaml is this output)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lockgate.config import resolve_config


def cmd_openapi(args: argparse.Namespace) -> int:
    import orjson

    from lockgate.api.openapi import to_yaml
    from lockgate.app import create_app

    spec = create_app(resolve_config(None), configure_logs=False).openapi()
    sys.stdout.write(orjson.dumps(spec, option=orjson.OPT_INDENT_2).decode() + "\n" if args.json else to_yaml(spec))
    return 0


def add_command(sub: Any) -> None:
    """Register `openapi` on the main parser's subcommands."""
    spec = sub.add_parser("openapi", help="print the OpenAPI spec (YAML; --json for JSON)")
    spec.add_argument("--json", action="store_true", help="JSON instead of YAML")
    spec.set_defaults(func=cmd_openapi)
