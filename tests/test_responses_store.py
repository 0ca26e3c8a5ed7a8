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


async def test_concurrent_saves_share_transactions_and_each_is_readable_once_saved(db_url: str) -> None:
    """Group commit: saves that arrive together go in one transaction; every save returns only
    once its row is committed (readable through a fresh engine, as another replica would read it)."""
    import asyncio

    store = await Store(db_url).open()
    other = await Store(db_url).open()  # another replica sharing the database
    try:
        responses, elsewhere = ResponseStore(store.engine), ResponseStore(other.engine)
        items = with_ids([{"role": "user", "content": "hi"}])

        async def save_then_read(i: int) -> bool:
            response = {**RESPONSE, "id": f"resp_g{i}"}
            await responses.save(response, owner="key-a", deployment="d1", history=[], input_items=items)
            return await elsewhere.get(f"resp_g{i}", "key-a") == response

        assert all(await asyncio.gather(*(save_then_read(i) for i in range(40))))
        assert responses.writer.rows == 40
        assert responses.writer.batches < 40  # the burst shared transactions
        assert responses.writer._task is None  # the writer stops when there is nothing left to write

        # A bad row (the same id twice) fails alone: its neighbours in the batch are still stored.
        results = await asyncio.gather(
            *(
                responses.save({**RESPONSE, "id": rid}, owner="key-a", deployment=None, history=[], input_items=items)
                for rid in ("resp_ok1", "resp_g0", "resp_ok2")
            ),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None and isinstance(results[1], Exception)
        assert await elsewhere.get("resp_ok1", "key-a") is not None and await elsewhere.get("resp_ok2", "key-a") is not None

        # A save whose request is cancelled (the client left) is still written.
        task = asyncio.ensure_future(
            responses.save({**RESPONSE, "id": "resp_c"}, owner="key-a", deployment=None, history=[], input_items=items)
        )
        await asyncio.sleep(0)
        task.cancel()
        await responses.aclose()
        assert await elsewhere.get("resp_c", "key-a") is not None
    finally:
        await other.aclose()
        await store.aclose()
