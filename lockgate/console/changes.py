"""What the Keys and Teams pages share: the limits-and-budget fields of their forms, the store behind them,
and one audited change (a before/after of the record's public fields, the replica's cache dropped).

Keys and teams carry the same limits (rpm, tpm, a budget and its period) and live in a repository
with a cache in front (auth/keys.py, auth/teams.py); the same steps save either.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from lockgate.api.admin import settle_budget_change
from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.console import forms
from lockgate.console.sessions import Session
from lockgate.console.web import Console, actor
from lockgate.errors import NotImplementedHere


def store(request: Request, name: str) -> Any:
    """The authenticator's `keys` or `teams` (a repository and its cache), or 501 when there is no key store."""
    found = getattr(request.app.state.gateway.pipeline.authenticator, name)
    if found is None:
        raise NotImplementedHere("No key store is configured.")
    return found


def limit_fields(form: dict[str, str]) -> dict[str, Any]:
    """rpm, tpm, budget and period from a form (an empty field clears its value); a period needs a budget."""
    fields: dict[str, Any] = {
        "rpm": forms.integer(form, "rpm"),
        "tpm": forms.integer(form, "tpm"),
        "max_budget_usd": forms.money(form, "max_budget_usd"),
        "budget_period": forms.choice(form, "budget_period", BUDGET_PERIODS),
    }
    if fields["budget_period"] is not None and fields["max_budget_usd"] is None:
        raise forms.FormError("budget_period", "needs a budget")
    return fields


def new_budget(fields: dict[str, Any]) -> dict[str, Any]:
    """For a new record: a budget without a period is a `total` budget."""
    if fields["max_budget_usd"] is not None and fields["budget_period"] is None:
        fields["budget_period"] = "total"
    return fields


async def audit(
    console: Console, request: Request, session: Session, action: str, target_id: str, before: Any = None, after: Any = None
) -> None:
    """One audit row for a change of a key's or team's record (action `<key|team>.<verb>`): public fields only."""
    await console.audit(request).record(
        actor(request, session),
        action,
        target_type=action.split(".")[0],
        target_id=target_id,
        before=before.public() if before is not None else None,
        after=after.public() if after is not None else None,
    )


async def changed(
    console: Console, request: Request, session: Session, kind: Any, action: str, before: Any, after: Any = None
) -> None:
    """After a repository call changed a record (update, revoke, rotate, delete): the cache dropped, audited."""
    kind.invalidate(before.id)
    await audit(console, request, session, action, before.id, before, after)


async def update(
    console: Console, request: Request, session: Session, kind: Any, noun: str, current: Any, changes: dict[str, Any]
) -> Any:
    """Save `changes` to a key or team record (`kind` = store(request, "keys" | "teams"), `noun` key | team).

    Budget and period are kept consistent first: an InvalidRequest comes before any write.
    """
    settle_budget_change(changes, current.max_budget_usd, current.budget_period)
    row = await kind.repo.update(current.id, **changes)
    await changed(console, request, session, kind, f"{noun}.update", current, row)
    return row
