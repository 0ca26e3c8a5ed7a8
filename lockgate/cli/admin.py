"""`lockgate admin …`: console users in the configured database directly, no server needed.

    lockgate admin create-user NAME [--role admin|viewer] [--password-stdin]
    lockgate admin set-password NAME [--password-stdin]     (ends the user's sessions)
    lockgate admin disable-user NAME | enable-user NAME     (disabling ends the user's sessions)
    lockgate admin list-users [--json]

Passwords are read from a prompt (twice) or, with --password-stdin, from the first line of stdin;
never from an argument (it would stay in the shell history and the process list). Every change
is audited (actor `cli`).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Any

from lockgate.audit import CLI, AuditLog
from lockgate.cli.common import _run, config_parent, print_json_list
from lockgate.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,99}$")


def _username(value: str) -> str:
    if not _NAME.match(value) or value == "master":
        raise argparse.ArgumentTypeError(f"not a user name (letters, digits and . _ @ + -; not 'master'): {value!r}")
    return value


def _password(args: argparse.Namespace) -> str | None:
    from lockgate.console.users import check_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("lockgate: the passwords differ", file=sys.stderr)
            return None
    try:
        check_password(password)
    except ValueError as err:
        print(f"lockgate: {err}", file=sys.stderr)
        return None
    return password


def cmd_create_user(args: argparse.Namespace) -> int:
    password = _password(args)
    if password is None:
        return 2

    async def action(store: Store) -> int:
        from lockgate.console.users import UserExists, Users

        try:
            user = await Users(store.engine).create(args.name, password, args.role)
        except UserExists:
            print(f"lockgate: a user {args.name} already exists", file=sys.stderr)
            return 1
        await AuditLog(store.engine).record(CLI, "user.create", target_type="user", target_id=user.username, after=user.public())
        print(f"Created {user.role} {user.username}; they can log in at the console (ui.path, default /ui).")
        return 0

    return _run(args, action)


def cmd_set_password(args: argparse.Namespace) -> int:
    password = _password(args)
    if password is None:
        return 2

    async def action(store: Store) -> int:
        from lockgate.console.users import Users

        if not await Users(store.engine).set_password(args.name, password):
            print(f"lockgate: no user {args.name}", file=sys.stderr)
            return 1
        await AuditLog(store.engine).record(CLI, "user.password", target_type="user", target_id=args.name)
        print(f"Password of {args.name} changed; their sessions have ended.")
        return 0

    return _run(args, action)


def _set_disabled(disabled: bool) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        async def action(store: Store) -> int:
            from lockgate.console.users import Users

            if not await Users(store.engine).set_disabled(args.name, disabled):
                print(f"lockgate: no user {args.name}", file=sys.stderr)
                return 1
            verb = "disable" if disabled else "enable"
            await AuditLog(store.engine).record(CLI, f"user.{verb}", target_type="user", target_id=args.name)
            print(f"{args.name} {verb}d" + ("; their sessions have ended." if disabled else "."))
            return 0

        return _run(args, action)

    return cmd


def cmd_list_users(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        from lockgate.console.users import Users

        users = await Users(store.engine).list()
        if args.json:
            print_json_list(users)
            return 0
        print(f"{'USER':<30} {'ROLE':<8} STATE")
        for u in users:
            print(f"{u.username:<30} {u.role:<8} {'disabled' if u.disabled else 'active'}")
        return 0

    return _run(args, action)


def add_command(sub: Any) -> None:
    """Register `admin` on the main parser's subcommands."""
    common = config_parent()
    stdin = argparse.ArgumentParser(add_help=False)
    stdin.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    admin = sub.add_parser("admin", help="console users (admin or viewer) in the configured database")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)

    create = admin_sub.add_parser("create-user", parents=[common, stdin], help="create a console user")
    create.add_argument("name", type=_username)
    create.add_argument("--role", choices=("admin", "viewer"), default="admin")
    create.set_defaults(func=cmd_create_user)

    password = admin_sub.add_parser("set-password", parents=[common, stdin], help="change a user's password")
    password.add_argument("name", type=_username)
    password.set_defaults(func=cmd_set_password)

    for verb, disabled in (("disable-user", True), ("enable-user", False)):
        p = admin_sub.add_parser(verb, parents=[common], help=f"{verb.split('-')[0]} a console user")
        p.add_argument("name", type=_username)
        p.set_defaults(func=_set_disabled(disabled))

    listing = admin_sub.add_parser("list-users", parents=[common], help="list console users (never their hashes)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list_users)
