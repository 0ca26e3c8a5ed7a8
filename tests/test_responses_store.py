"""The response store on SQLite and PostgreSQL: migration 0004 down and up, owner scoping, chains."""

from __future__ import annotations

from lockgate.ingress.responses.store import ResponseStore, with_ids
from lockgate.store import Store
from tests.dbs import db_url  # noqa: F401

RESPONSE = {
    "id": "resp_1",
    "model": "m",
    "previous_response_id": None,
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": []},
        {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi Ada."}]},
        {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}", "status": "completed"},
    ],
}


async def test_migration_down_and_up_and_owner_scoping(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        assert await store.current() == "0009_usage_rollups"
        await store.downgrade("0003_teams")
        assert await store.current() == "0003_teams"
        await store.upgrade()
        responses = ResponseStore(store.engine)
        items = with_ids([{"role": "user", "content": "I am Ada."}])
        assert items[0]["type"] == "message" and items[0]["id"].startswith("msg_")
        assert items[0]["content"] == [{"type": "input_text", "text": "I am Ada."}]
        history = [{"type": "message", "role": "user", "content": "earlier"}]
        await responses.save(RESPONSE, owner="key-a", deployment="d1", history=history, input_items=items)

        assert await responses.get("resp_1", "key-a") == RESPONSE
        assert await responses.get("resp_1", "key-b") is None  # another key: as if it never existed
        assert await responses.input_items("resp_1", "key-a") == items
        # The next turn sees the history, this input and the output (reasoning left out).
        assert await responses.conversation("resp_1", "key-a") == [
            *history,
            *items,
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi Ada."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"},
        ]
        assert await responses.conversation("resp_1", "key-b") is None
        assert await responses.delete("resp_1", "key-b") is False
        assert await responses.delete("resp_1", "key-a") is True
        assert await responses.get("resp_1", "key-a") is None
    finally:
        await store.aclose()
