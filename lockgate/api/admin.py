"""Admin routes under /admin: virtual key management, for the master key or a JWT with the admin role.

Plaintext keys appear only in the answers to create and rotate; no answer ever
carries a key hash. Changes made here drop the key from this replica's cache at
once; other replicas see them within `auth.key_cache_ttl_s`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict
from starlette.responses import Response

from lockgate.api import spec_examples as ex
from lockgate.api.admin_audit import audit_actor, audit_log
from lockgate.api.deps import require_admin
from lockgate.api.fields import INT32_MAX, Limit, Money, Stamp
from lockgate.api.http import client_json, json_response
from lockgate.api.openapi import ADMIN_ERRORS, errors, ok
from lockgate.auth import Principal
from lockgate.auth.keys import BudgetPeriod, KeyRepository, KeyRow, VirtualKeys, hash_key
from lockgate.errors import Conflict, InvalidRequest, NotFound, NotImplementedHere

if TYPE_CHECKING:
    from lockgate.edge_keys import KeyEvents

router = APIRouter(prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=errors(*ADMIN_ERRORS))


class _KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, max_length=200, description="The user the key belongs to")
    team: str | None = Field(default=None, max_length=200, description="The team the key belongs to")
    models: list[str] | None = Field(default=None, description="Public model names this key may use; empty: all")
    rpm: Limit | None = Field(default=None, description="Requests per minute")
    tpm: Limit | None = Field(default=None, description="Tokens per minute")
    max_parallel_requests: Limit | None = Field(default=None, description="Requests in flight at once")
    max_budget_usd: Money | None = Field(default=None, description="Spend limit per budget period")
    budget_period: BudgetPeriod | None = None
    expires_at: Stamp | None = Field(default=None, description="ISO 8601 date-time; UTC when no zone is given")
    metadata: dict[str, Any] | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


# budget_period needs max_budget_usd, in the spec's words (JSON Schema 2020-12: if / then).
BUDGET_NEEDED_ON_CREATE: JsonDict = {
    "if": {"required": ["budget_period"], "properties": {"budget_period": {"type": "string"}}},
    "then": {"required": ["max_budget_usd"], "properties": {"max_budget_usd": {"type": "number"}}},
}
# On a PATCH the budget may already be stored (a 409 when it is not), but it cannot be cleared with a period.
BUDGET_NEEDED_ON_UPDATE: JsonDict = {
    "if": {"required": ["budget_period"], "properties": {"budget_period": {"type": "string"}}},
    "then": {"properties": {"max_budget_usd": {"type": "number"}}},
}


class KeyCreate(_KeyFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra=BUDGET_NEEDED_ON_CREATE)

    name: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _budget(self) -> "KeyCreate":
        if self.budget_period is not None and self.max_budget_usd is None:
            raise ValueError("budget_period needs max_budget_usd")
        return self


class KeyUpdate(_KeyFields):
    """Only the fields sent are changed; `null` clears one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=BUDGET_NEEDED_ON_UPDATE)

    # Absent keeps the name; a key always has one, so the spec types it a string (null is a 400).
    name: str = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]


class KeyView(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    key_prefix: str = Field(description="The first characters of the key, for recognising it")
    key_last4: str | None = Field(default=None, description="The key's last four characters (keys made since 0007)")
    name: str
    user: str | None
    team: str | None
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    max_parallel_requests: int | None = None
    max_budget_usd: float | None
    budget_period: BudgetPeriod | None
    expires_at: dt.datetime | None
    metadata: dict[str, Any] | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked: bool
    revoked_at: dt.datetime | None


class KeyCreated(KeyView):
    key: str = Field(description="The secret key. Shown once: it is not stored and cannot be shown again.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyView]


def _keys(request: Request) -> VirtualKeys:
    keys = request.app.state.gateway.pipeline.authenticator.keys
    if keys is None:
        raise NotImplementedHere("No key store is configured.")
    return keys


def _repo(request: Request) -> KeyRepository:
    return _keys(request).repo


def _edge(request: Request) -> KeyEvents | None:
    """The edge's key cache writer (auth.key_events), when configured."""
    return request.app.state.gateway.key_events  # type: ignore[no-any-return]


def _found(row: KeyRow | None, key_id: str) -> KeyRow:
    if row is None:
        raise NotFound(f"No API key with id `{key_id}`.", param="id")
    return row


def settle_budget_change(changes: dict[str, Any], budget: float | None, period: str | None) -> None:
    """Keep a PATCH's budget and period consistent: no budget, no period; a budget alone is `total`.

    A period with `max_budget_usd: null` in the same body is a 400 (the spec says so); a period alone for a
    record that has no budget is a 409, since it is the record's state that the request conflicts with."""
    if changes.get("budget_period") is not None and "max_budget_usd" in changes and changes["max_budget_usd"] is None:
        raise InvalidRequest("budget_period needs max_budget_usd; do not clear the budget with it.", param="budget_period")
    budget = changes.get("max_budget_usd", budget)
    period = changes.get("budget_period", period)
    if "max_budget_usd" in changes and budget is None:
        changes["budget_period"] = None
    elif period is not None and budget is None:
        raise Conflict("budget_period needs max_budget_usd: this has no budget; send one with it.", param="budget_period")
    elif budget is not None and period is None:
        changes["budget_period"] = "total"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(client_json(body), status)


def _with_key(row: KeyRow, token: str) -> dict[str, Any]:
    return {"key": token, **row.public()}


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    summary="Create a virtual key",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": ex.KEY_CREATE}}}},
    responses={**ok(None, ex.KEY_CREATED, "The key, with its secret (shown once)", 201), **errors(400)},
)
async def create_key(body: KeyCreate, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    fields = body.model_dump()
    if fields["max_budget_usd"] is not None and fields["budget_period"] is None:
        fields["budget_period"] = "total"
    row, token = await _repo(request).create(**fields)
    if (edge := _edge(request)) is not None:
        edge.upsert(row, hash_key(token))
    await audit_log(request).record(
        audit_actor(request, principal), "key.create", target_type="key", target_id=row.id, after=row.public()
    )
    return _json(_with_key(row, token), 201)


@router.get(
    "/keys",
    response_model=KeyList,
    summary="List virtual keys (never their secrets)",
    responses={**ok(None, {"object": "list", "data": [ex.KEY_VIEW]}), **errors(400)},
)
async def list_keys(
    request: Request,
    user: str | None = None,
    team: str | None = None,
    include_revoked: bool = True,
    limit: int = Query(default=1000, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=INT32_MAX),
) -> Response:
    repo = _repo(request)
    rows = await repo.list(user=user, team=team, include_revoked=include_revoked, limit=limit, offset=offset)
    return _json({"object": "list", "data": [r.public() for r in rows]})


@router.get(
    "/keys/{key_id}", response_model=KeyView, summary="Get a virtual key", responses={**ok(None, ex.KEY_VIEW), **errors(404)}
)
async def get_key(key_id: str, request: Request) -> Response:
    return _json(_found(await _repo(request).get(key_id), key_id).public())


@router.patch(
    "/keys/{key_id}",
    response_model=KeyView,
    summary="Change a virtual key",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": {"rpm": 1200, "max_budget_usd": 100.0}}}}},
    responses={**ok(None, ex.KEY_VIEW), **errors(400, 404, 409)},
)
async def update_key(key_id: str, body: KeyUpdate, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise InvalidRequest("A key's name cannot be cleared.", param="name")
    keys = _keys(request)
    current = _found(await keys.repo.get(key_id), key_id)
    settle_budget_change(changes, current.max_budget_usd, current.budget_period)
    row = _found(await keys.repo.update(key_id, **changes), key_id)
    keys.invalidate(key_id)
    if (edge := _edge(request)) is not None and (key_hash := await keys.repo.hash_of(key_id)) is not None:
        edge.upsert(row, key_hash)
    await audit_log(request).record(
        audit_actor(request, principal),
        "key.update",
        target_type="key",
        target_id=key_id,
        before=current.public(),
        after=row.public(),
    )
    return _json(row.public())


@router.delete(
    "/keys/{key_id}",
    response_model=KeyView,
    summary="Revoke a virtual key",
    responses={**ok(None, {**ex.KEY_VIEW, "revoked": True, "revoked_at": "2026-12-02T10:00:00Z"}), **errors(404)},
)
async def revoke_key(key_id: str, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    keys = _keys(request)
    before = await keys.repo.get(key_id)
    row = _found(await keys.repo.revoke(key_id), key_id)
    keys.invalidate(key_id)
    if (edge := _edge(request)) is not None and (key_hash := await keys.repo.hash_of(key_id)) is not None:
        edge.revoke(row, key_hash)
    await audit_log(request).record(
        audit_actor(request, principal),
        "key.revoke",
        target_type="key",
        target_id=key_id,
        before=before.public() if before else None,
        after=row.public(),
    )
    return _json(row.public())


@router.post(
    "/keys/{key_id}/rotate",
    response_model=KeyCreated,
    summary="Replace a key's secret",
    responses={**ok(None, ex.KEY_CREATED, "The key with its new secret (shown once)"), **errors(404, 409)},
)
async def rotate_key(key_id: str, request: Request, principal: Principal = Depends(require_admin)) -> Response:
    keys = _keys(request)
    edge = _edge(request)
    old_hash = await keys.repo.hash_of(key_id) if edge is not None else None
    rotated = await keys.repo.rotate(key_id)
    if rotated is None:
        _found(await keys.repo.get(key_id), key_id)
        raise Conflict("A revoked key cannot be rotated.", code="key_revoked")
    keys.invalidate(key_id)
    row, token = rotated
    if edge is not None:
        if old_hash is not None:
            edge.revoke(row, old_hash)  # the old secret stops working at the edge too
        edge.upsert(row, hash_key(token))
    await audit_log(request).record(
        audit_actor(request, principal), "key.rotate", target_type="key", target_id=key_id, after=row.public()
    )
    return _json(_with_key(row, token))
