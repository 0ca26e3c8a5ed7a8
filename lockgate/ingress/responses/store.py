"""Stored Responses in the SQL store: save a finished turn, load a chain, list input items, delete.

Every read is scoped to the owner (the key that created the response): another
key's id is indistinguishable from one that never existed. Written before the
client sees the response, so a next turn can never miss this one; the saves that
arrive together share one transaction (writer.py). The JSON columns are encoded
here with orjson, once, instead of by SQLAlchemy's json.dumps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from lockgate.ingress.responses.response import new_id
from lockgate.ingress.responses.sqlite_writer import SqliteInsert
from lockgate.ingress.responses.writer import GroupCommit
from lockgate.store.db import utcnow
from lockgate.store.tables import responses


def with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as input_items lists them: each with an id and a type."""
    out = []
    for item in items:
        item = {"type": "message", **item}
        if item["type"] == "message" and isinstance(item.get("content"), str):
            item["content"] = [{"type": "input_text", "text": item["content"]}]
        item.setdefault("id", new_id("msg" if item["type"] == "message" else "item"))
        out.append(item)
    return out


def output_as_input(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output items as the input items of the next turn."""
    items = []
    for item in output:
        if item.get("type") == "message":
            items.append({"type": "message", "role": "assistant", "content": item.get("content", [])})
        elif item.get("type") == "function_call":
            items.append({k: item[k] for k in ("type", "id", "call_id", "name", "arguments") if k in item})
    return items


class EncodedJSON(sa.types.TypeDecorator[str]):
    """A JSON column written from text already encoded (orjson): no second encoding on the way in.

    The column stays JSON in the database (PostgreSQL's bind cast `::JSON` still applies) and is read
    back as JSON; only the bind side is a pass-through.
    """

    impl = sa.JSON
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> None:  # type: ignore[override]
        return None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# The INSERT of the hot path, built once: the same columns as tables.responses, the JSON ones pre-encoded.
_INSERT = sa.table(
    "responses",
    *(sa.column(c.name, EncodedJSON() if isinstance(c.type, sa.JSON) else c.type) for c in responses.columns),
).insert()


class ResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        direct = SqliteInsert(engine, responses) if SqliteInsert.usable(engine) else None
        self.writer = GroupCommit(engine, _INSERT, direct=direct)

    async def save(
        self,
        response: dict[str, Any],
        *,
        owner: str,
        deployment: str | None,
        history: list[dict[str, Any]],
        input_items: list[dict[str, Any]],
    ) -> None:
        """Store a finished response; returns once it is committed (with whatever else was saved meanwhile)."""
        conversation = [*history, *input_items, *output_as_input(response.get("output") or [])]
        await self.writer.write(
            {
                "id": response["id"],
                "owner": owner,
                "model": response.get("model") or "",
                "deployment": deployment,
                "previous_response_id": response.get("previous_response_id"),
                "response": _json(response),
                "input_items": _json(input_items),
                "conversation": _json(conversation),
                "created_at": utcnow(),
            }
        )

    async def aclose(self) -> None:
        await self.writer.aclose()

    async def _row(self, response_id: str, owner: str, *columns: sa.Column[Any]) -> Any:
        query = sa.select(*columns).where(responses.c.id == response_id, responses.c.owner == owner)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        row = await self._row(response_id, owner, responses.c.response)
        return row[0] if row else None

    async def conversation(self, response_id: str, owner: str) -> list[dict[str, Any]] | None:
        row = await self._row(response_id, owner, responses.c.conversation)
        return row[0] if row else None

    async def chain_head(self, response_id: str, owner: str) -> tuple[list[dict[str, Any]], str | None] | None:
        """What a next turn needs of a stored response: its conversation, and the deployment that ran it."""
        row = await self._row(response_id, owner, responses.c.conversation, responses.c.deployment)
        return (row[0], row[1]) if row else None

    async def input_items(self, response_id: str, owner: str) -> list[dict[str, Any]] | None:
        row = await self._row(response_id, owner, responses.c.input_items)
        return row[0] if row else None

    async def delete(self, response_id: str, owner: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(responses.delete().where(responses.c.id == response_id, responses.c.owner == owner))
        return bool(result.rowcount)

    async def purge(self, before: dt.datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` responses created before ``before`` (oldest first); how many went.

        One short transaction per batch (the created_at index finds them), so a large backlog
        never holds a long lock on the table that live requests write to.
        """
        oldest = (
            sa.select(responses.c.id).where(responses.c.created_at < before).order_by(responses.c.created_at).limit(batch_size)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(responses.delete().where(responses.c.id.in_(oldest.scalar_subquery())))
        return int(result.rowcount or 0)
