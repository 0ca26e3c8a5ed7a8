"""The audit log: one append-only row per admin action, from the console, the JSON admin API or the CLI.

A row says who (actor, and through what: console, api, cli), from where (client address), what
(action, target) and how it went (ok | refused), with a redacted before/after of the target. Rows
are only ever inserted; there is no update or delete in the code. Writing one is best effort for
reads of the log but part of the action for changes: a change whose audit row cannot be written
still happened, so the failure is logged loudly rather than undoing the change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog

from lockgate.console.tables import audit_log
from lockgate.store.db import aware, utcnow

log = structlog.get_logger("lockgate.audit")

# Fields never copied into a before/after, whatever the target.
_SECRET_FIELDS = frozenset({"key", "key_hash", "password", "password_hash", "token", "secret"})


def redact(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """A target's JSON view without anything secret (keys' views carry none, but be sure)."""
    if view is None:
        return None
    return {k: v for k, v in view.items() if k not in _SECRET_FIELDS and k != "object"}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a name, the channel, and the client's address when there is one."""

    name: str
    via: str  # console | api | cli
    address: str | None = None


CLI = Actor("cli", "cli")


class AuditLog:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def record(
        self,
        actor: Actor,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        outcome: str = "ok",
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        values = {
            "at": utcnow(),
            "actor": actor.name[:200],
            "via": actor.via,
            "address": (actor.address or None) and actor.address[:64],
            "action": action,
            "target_type": target_type,
            "target_id": target_id[:200] if target_id else None,
            "outcome": outcome,
            "before": redact(before),
            "after": redact(after),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(audit_log.insert().values(**values))
        except Exception as err:  # the action itself is done; its record must not vanish silently
            log.error("audit_write_failed", action=action, target_id=target_id, error=type(err).__name__)

    async def page(
        self,
        *,
        before_id: int | None = None,
        limit: int = 50,
        action: str | None = None,
        actor: str | None = None,
        target_id: str | None = None,
        outcome: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, `limit` rows older than `before_id` (keyset on the id)."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        if action:
            query = query.where(audit_log.c.action == action)
        if actor:
            query = query.where(audit_log.c.actor == actor)
        if target_id:
            query = query.where(audit_log.c.target_id == target_id)
        if outcome:
            query = query.where(audit_log.c.outcome == outcome)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row(r) for r in rows]


def _row(row: Any) -> dict[str, Any]:
    m = {str(k): v for k, v in row._mapping.items()}
    at = aware(m["at"])
    m["at"] = at.isoformat() if isinstance(at, dt.datetime) else at
    return {"object": "audit_entry", **m}
