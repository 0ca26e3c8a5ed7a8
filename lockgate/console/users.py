"""Console users: a name, an argon2id password hash and a role (admin | viewer).

Made with `lockgate admin create-user`; the console never shows a hash. Verifying runs argon2 in
a worker thread (it is deliberately slow), and an unknown name costs a verify against a dummy hash
so the time taken does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError

from lockgate.console.tables import console_sessions, console_users
from lockgate.store.db import aware, utcnow

ROLES = ("admin", "viewer")
# As `lockgate admin create-user` takes them: no colon, so a user never looks like a "jwt:" subject.
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,99}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile


@functools.cache
def _dummy() -> str:
    # Made on the first login attempt, not at import (argon2 is slow on purpose).
    return _hasher.hash("lockgate-dummy-password-for-timing")


class UserExists(Exception):
    pass


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    disabled: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None

    def public(self) -> dict[str, Any]:
        return {
            "object": "console_user",
            "username": self.username,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def _user(row: Any) -> User:
    m = row._mapping
    return User(m["username"], m["role"], bool(m["disabled"]), aware(m["created_at"]), aware(m["updated_at"]))


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")


class Users:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def create(self, username: str, password: str, role: str) -> User:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    console_users.insert().values(username=username, password_hash=hashed, role=role, created_at=utcnow())
                )
        except IntegrityError:
            raise UserExists(username) from None
        user = await self.get(username)
        assert user is not None
        return user

    async def get(self, username: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(console_users).where(console_users.c.username == username))).first()
        return _user(row) if row else None

    async def list(self) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(console_users).order_by(console_users.c.username).limit(1000))).all()
        return [_user(r) for r in rows]

    async def verify(self, username: str, password: str) -> User | None:
        """The user if the password is right and the account enabled; None otherwise (same cost either way)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(console_users).where(console_users.c.username == username))).first()
        stored = row._mapping["password_hash"] if row else await asyncio.to_thread(_dummy)
        try:
            ok: bool = await asyncio.to_thread(_hasher.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or row._mapping["disabled"]:
            return None
        return _user(row)

    async def set_password(self, username: str, password: str) -> bool:
        """A new password; every session of the user ends."""
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                console_users.update()
                .where(console_users.c.username == username)
                .values(password_hash=hashed, updated_at=utcnow())
            )
            await conn.execute(console_sessions.delete().where(console_sessions.c.subject == username))
        return bool(result.rowcount)

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable) an account; disabling ends its sessions."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                console_users.update().where(console_users.c.username == username).values(disabled=disabled, updated_at=utcnow())
            )
            if disabled:
                await conn.execute(console_sessions.delete().where(console_sessions.c.subject == username))
        return bool(result.rowcount)

    async def set_role(self, username: str, role: str) -> bool:
        """A new role; every session of the user ends (a session carries the role it was opened with)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        async with self.engine.begin() as conn:
            result = await conn.execute(
                console_users.update().where(console_users.c.username == username).values(role=role, updated_at=utcnow())
            )
            await conn.execute(console_sessions.delete().where(console_sessions.c.subject == username))
        return bool(result.rowcount)

    async def delete(self, username: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(console_users.delete().where(console_users.c.username == username))
            await conn.execute(console_sessions.delete().where(console_sessions.c.subject == username))
        return bool(result.rowcount)
