"""Console sessions: an opaque random id in an HttpOnly cookie, its SHA-256 in the database.

A session has an idle expiry (`ui.session_idle_s` since it was last used) and an absolute one
(`ui.session_max_s` since login). Login always makes a new id; logout, a password change or a
disabled account deletes the row, so the old cookie is refused at once by every replica. A
master-key session remembers a tag of the master key: when the key changes, its sessions end.

The CSRF token is an HMAC of the session id: bound to the session, never stored, and useless to
anyone who does not already hold the cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from lockgate.console.tables import console_sessions
from lockgate.store.db import aware, utcnow

# Refresh last_seen_at at most this often: a page view is not a database write each time.
TOUCH_EVERY_S = 60.0


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def credential_tag(secret: str) -> str:
    """What a session remembers of the master key: enough to notice a change, useless to an attacker."""
    return hashlib.sha256(b"lockgate-console-master:" + secret.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"lockgate-console-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the plaintext id, from the cookie of this request only
    subject: str  # a user name, or "master"
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime  # the sooner of the idle and the absolute expiry

    @property
    def csrf(self) -> str:
        return csrf_token(self.id)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Sessions:
    def __init__(self, engine: Any, idle_s: float, max_s: float) -> None:
        self.engine = engine
        self.idle = dt.timedelta(seconds=idle_s)
        self.max = dt.timedelta(seconds=max_s)

    async def create(
        self,
        subject: str,
        role: str,
        tag: str,
        address: str | None,
        user_agent: str | None,
        not_after: dt.datetime | None = None,
    ) -> Session:
        """A new session; `not_after` caps its absolute expiry (a JWT login ends when the token does)."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        cap = min(now + self.max, not_after) if not_after else now + self.max
        async with self.engine.begin() as conn:
            await conn.execute(
                console_sessions.insert().values(
                    id_hash=_hash(session_id),
                    subject=subject,
                    role=role,
                    credential_tag=tag,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=cap,
                    address=(address or "")[:64] or None,
                    user_agent=(user_agent or "")[:200] or None,
                )
            )
        return Session(session_id, subject, role, now, min(now + self.idle, cap))

    async def lookup(self, session_id: str, tag_for: Any) -> Session | None:
        """The live session for a cookie value, or None (unknown, expired, or its credential changed).

        `tag_for(subject)` gives the credential tag the session must still carry ("" for users).
        """
        if not session_id or len(session_id) > 100:
            return None
        id_hash = _hash(session_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(console_sessions).where(console_sessions.c.id_hash == id_hash))).first()
        if row is None:
            return None
        m = row._mapping
        now = utcnow()
        last_seen = aware(m["last_seen_at"]) or now
        expires = aware(m["expires_at"]) or now
        expected = tag_for(m["subject"])
        if (
            now >= expires
            or now >= last_seen + self.idle
            or expected is None
            or not hmac.compare_digest(m["credential_tag"], expected)
        ):
            await self.revoke(session_id)
            return None
        if (now - last_seen).total_seconds() >= TOUCH_EVERY_S:
            async with self.engine.begin() as conn:
                await conn.execute(
                    console_sessions.update().where(console_sessions.c.id_hash == id_hash).values(last_seen_at=now)
                )
            last_seen = now
        created = aware(m["created_at"]) or now
        return Session(session_id, m["subject"], m["role"], created, min(last_seen + self.idle, expires))

    async def revoke(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(console_sessions.delete().where(console_sessions.c.id_hash == _hash(session_id)))

    async def revoke_subject(self, subject: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(console_sessions.delete().where(console_sessions.c.subject == subject))

    async def purge_expired(self) -> None:
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                console_sessions.delete().where(
                    sa.or_(console_sessions.c.expires_at <= now, console_sessions.c.last_seen_at <= now - self.idle)
                )
            )
