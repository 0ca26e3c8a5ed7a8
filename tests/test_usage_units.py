"""Pure logic of usage and spend: prices, cost, spool, roll-ups, batching, budgets."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from lockgate.auth import Principal
from lockgate.config import Deployment, OpenAIDeployment
from lockgate.errors import BudgetExceeded
from lockgate.records import RequestRecord
from lockgate.usage.budgets import BudgetAdmission, MemoryCounters, counter_key, period_end, period_start
from lockgate.usage.pricing import Cost, Price, builtin_price, call_cost, deployment_price, normalise
from lockgate.usage.queries import parse_day, since_days
from lockgate.usage.rows import bucket_value, latency_bucket, percentile, rollups, to_row
from lockgate.usage.sink import UsageSink
from lockgate.usage.spool import Spool

# --- prices -------------------------------------------------------------------------------


def test_builtin_prices_cover_the_default_models_and_snapshots() -> None:
    from lockgate.config import DEFAULT_ANTHROPIC_MODELS, DEFAULT_OPENAI_MODELS

    for name in DEFAULT_OPENAI_MODELS:
        assert builtin_price("openai", name) is not None, name
    for name in DEFAULT_ANTHROPIC_MODELS:
        assert builtin_price("anthropic", name) is not None, name
    assert normalise("gpt-4.1-2025-04-14") == "gpt-4.1"
    assert normalise("anthropic/claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert builtin_price("openai", "gpt-4o-mini-2024-07-18") == builtin_price("openai", "gpt-4o-mini")
    assert builtin_price("anthropic", "claude-haiku-4-5").cache_write == 1.25  # type: ignore[union-attr]
    assert builtin_price("openai", "no-such-model") is None
    assert builtin_price("mock", "anything") == Price(0.0, 0.0)


def test_deployment_overrides() -> None:
    dep = OpenAIDeployment(provider="openai", model="gpt-4o", output_cost_per_mtok=20)
    price = deployment_price(dep)
    assert price is not None and price.input == 2.5 and price.output == 20 and price.cached_input == 1.25
    # Overriding input drops the table's cache rates (they were relative to the old input price).
    dep = OpenAIDeployment(provider="openai", model="gpt-4o", input_cost_per_mtok=1, cached_input_cost_per_mtok=0.1)
    price = deployment_price(dep)
    assert price == Price(input=1, output=10.0, cached_input=0.1, cache_write=None)
    assert deployment_price(OpenAIDeployment(provider="openai", model="private-llm")) is None
    assert deployment_price(OpenAIDeployment(provider="openai", model="private-llm", input_cost_per_mtok=1)) is None
    custom = OpenAIDeployment(provider="openai", model="private-llm", input_cost_per_mtok=1, output_cost_per_mtok=2)
    assert deployment_price(custom) == Price(1, 2)


def test_price_is_resolved_once_at_start_up_on_the_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    import lockgate.router as router_module
    from lockgate.config import parse_config
    from lockgate.router import Router, build_upstreams
    from lockgate.routing.strategies import by_cost

    calls: list[str] = []

    def counted(dep: Deployment) -> Price | None:
        calls.append(dep.model)
        return deployment_price(dep)

    monkeypatch.setattr(router_module, "deployment_price", counted)
    deps = [
        {"provider": "openai", "model": "private-llm", "id": "unknown"},
        {"provider": "openai", "model": "gpt-4o", "id": "table"},
        {"provider": "openai", "model": "gpt-4o", "id": "override", "input_cost_per_mtok": 0.5, "output_cost_per_mtok": 1},
    ]
    config = parse_config({"models": [{"name": "m", "strategy": "cost", "deployments": deps}]})
    router = Router(config, build_upstreams(config, lambda dep: SimpleNamespace()))  # type: ignore[arg-type,return-value]
    route = router.routes["m"]
    prices = {u.id: u.price for u in route.upstreams}
    assert prices == {"unknown": None, "table": Price(2.5, 10.0, cached_input=1.25), "override": Price(0.5, 1.0)}
    assert [u.unit_price for u in route.upstreams] == [float("inf"), 12.5, 1.5]
    assert calls == ["private-llm", "gpt-4o", "gpt-4o"]  # once per deployment, at construction
    for _ in range(3):
        assert [u.id for u in by_cost(route.upstreams, router._rng)] == ["override", "table", "unknown"]
    assert len(calls) == 3  # ranking reads the resolved price, never resolves again


# --- cost ---------------------------------------------------------------------------------


def _usage(prompt: int, completion: int, cached: int = 0, written: int = 0, reasoning: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_creation_tokens=written,
        reasoning_tokens=reasoning,
    )


def test_cost_prices_cached_and_cache_write_tokens_at_their_rates() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    # 1000 prompt = 600 fresh + 300 read + 100 written; 200 completion.
    got = call_cost(price, _usage(1000, 200, cached=300, written=100))
    assert got is not None
    assert got.input_usd == pytest.approx((600 * 3 + 300 * 0.3 + 100 * 3.75) / 1e6, abs=1e-15)
    assert got.output_usd == pytest.approx(200 * 15 / 1e6, abs=1e-15)
    assert got.total_usd == pytest.approx(got.input_usd + got.output_usd, abs=1e-15)


def test_cost_of_reasoning_tokens() -> None:
    # Output-priced by default (reasoning tokens are part of completion_tokens) ...
    o4 = builtin_price("openai", "o4-mini")
    got = call_cost(o4, _usage(100, 1000, reasoning=800))
    assert got is not None and got.total_usd == pytest.approx((100 * 1.1 + 1000 * 4.4) / 1e6)
    assert got.output_usd == pytest.approx(1000 * 4.4 / 1e6)
    # ... and at their own rate where a price says so.
    got = call_cost(Price(input=1.0, output=4.0, reasoning=2.0), _usage(100, 1000, reasoning=800))
    assert got is not None and got.output_usd == pytest.approx((200 * 4 + 800 * 2) / 1e6)


def test_unknown_price_is_none_never_zero_but_no_tokens_cost_nothing() -> None:
    assert call_cost(None, _usage(10, 5)) is None
    assert call_cost(None, _usage(0, 0)) == Cost(0.0, 0.0, 0.0)
    assert call_cost(None, None) == Cost(0.0, 0.0, 0.0)
    assert call_cost(deployment_price(OpenAIDeployment(provider="openai", model="private-llm")), _usage(5, 5)) is None


def test_inconsistent_counts_are_clamped() -> None:
    got = call_cost(Price(input=1.0, output=1.0, cached_input=0.5), _usage(10, 0, cached=50))
    assert got is not None and got.total_usd == pytest.approx(10 * 0.5 / 1e6)


# --- rows and roll-ups --------------------------------------------------------------------


def _record(rid: str, **kw: object) -> RequestRecord:
    base: dict[str, object] = dict(
        request_id=rid, endpoint="chat", public_model="m", status=200, started_at=1_790_000_000.0, latency_ms=100.0,
        key_id="k1", team="t1", prompt_tokens=10, completion_tokens=5, cost_usd=0.001,
    )  # fmt: skip
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


def test_rollups_count_requests_not_attempts_and_flag_unknown_cost() -> None:
    rows = [
        to_row(_record("a")),
        to_row(_record("b", status=502, cost_usd=None)),
        to_row(_record("b.1", parent_request_id="b", attempt=1, status=503)),
        to_row(_record("c", key_id=None, team=None, status=401, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)),
    ]
    daily, hist = rollups(rows)
    by_key = {(r["key_id"], r["team"]): r for r in daily}
    k1 = by_key[("k1", "t1")]
    assert k1["requests"] == 2 and k1["errors"] == 1 and k1["cost_usd"] == pytest.approx(0.001)
    assert k1["cost_unknown"] == 1 and k1["prompt_tokens"] == 20
    assert by_key[("", "")]["errors"] == 1
    assert sum(h["count"] for h in hist) == 3


def test_percentiles_from_log_buckets_are_within_five_percent() -> None:
    values = [float(v) for v in range(1, 1001)]
    hist: dict[int, int] = {}
    for v in values:
        b = latency_bucket(v)
        hist[b] = hist.get(b, 0) + 1
    assert percentile(hist, 0.5) == pytest.approx(500, rel=0.06)
    assert percentile(hist, 0.95) == pytest.approx(950, rel=0.06)
    assert percentile({}, 0.5) is None
    assert bucket_value(latency_bucket(0.2)) == 1.0


def test_dates() -> None:
    assert parse_day("2026-11-20") == dt.date(2026, 11, 20)
    assert parse_day("2026-11-20T23:30:00-02:00") == dt.date(2026, 11, 21)
    today = dt.date(2026, 11, 20)
    assert since_days("7d", today) == dt.date(2026, 11, 14)
    assert since_days("1d", today) == today
    with pytest.raises(ValueError):
        since_days("7x", today)


# --- spool --------------------------------------------------------------------------------


def test_spool_appends_replays_in_order_and_truncates(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert not spool.pending and spool.next_batch() is None
    spool.append([{"request_id": "a"}])
    spool.append([{"request_id": "b"}, {"request_id": "c"}])
    offset, rows = spool.next_batch()  # type: ignore[misc]
    assert [r["request_id"] for r in rows] == ["a"]
    spool.mark_replayed(offset)
    assert spool.pending
    offset, rows = spool.next_batch()  # type: ignore[misc]
    assert [r["request_id"] for r in rows] == ["b", "c"]
    spool.mark_replayed(offset)
    assert not spool.pending and spool.path.stat().st_size == 0
    spool.close()
    assert not spool.path.exists()


def test_spool_orphans_are_adopted_and_a_torn_line_skipped(tmp_path: Path) -> None:
    dead = tmp_path / "usage-1-dead.spool"
    dead.write_bytes(b'[{"request_id":"x"}]\n[{"request_id":"y"}]\n[{"request_id":"torn')
    live = Spool(tmp_path)  # holds its lock: not an orphan
    live.append([{"request_id": "live"}])
    mine = Spool(tmp_path)
    assert mine.adopt_orphans() == 2
    assert not dead.exists() and live.path.exists()
    ids = []
    while (item := mine.next_batch()) is not None:
        ids += [r["request_id"] for r in item[1]]
        mine.mark_replayed(item[0])
    assert ids == ["x", "y"]
    live.close(remove_if_empty=False)
    mine.close()


# --- the batching writer ------------------------------------------------------------------


class FlakyDB:
    """A writer that can be down; idempotent by request id like the real store."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.order: list[str] = []
        self.down = False
        self.calls = 0
        self.hang_s = 0.0

    async def write(self, rows: list[dict]) -> int:
        self.calls += 1
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.down:
            raise ConnectionError("down")
        new = 0
        for r in rows:
            if r["request_id"] not in self.rows:
                self.rows[r["request_id"]] = r
                self.order.append(r["request_id"])
                new += 1
        return new


async def test_sink_batches_by_count_and_by_time(tmp_path: Path) -> None:
    db = FlakyDB()
    sink = await UsageSink(db.write, tmp_path, batch_size=3, flush_interval_s=0.05).start()
    for i in range(3):
        sink.accept(_record(f"r{i}"))
    await asyncio.sleep(0.02)
    assert len(db.rows) == 3 and db.calls == 1  # by count, before the interval
    sink.accept(_record("r3"))
    await asyncio.sleep(0.15)
    assert len(db.rows) == 4  # by time
    await sink.aclose()


async def test_sink_spools_while_down_and_replays_in_order(tmp_path: Path) -> None:
    db = FlakyDB()
    sink = UsageSink(db.write, tmp_path, batch_size=2, flush_interval_s=10)
    db.down = True
    for i in range(5):
        sink.accept(_record(f"r{i}"))
    await sink.flush()
    assert db.rows == {} and sink.spool.pending and sink.spooled == 5
    db.down = False
    sink._retry_at = 0.0  # the retry delay has passed
    sink.accept(_record("r5"))
    await sink.flush()
    assert db.order == [f"r{i}" for i in range(6)] and not sink.spool.pending
    await sink.aclose()


async def test_sink_spools_a_slow_write_and_replay_is_idempotent(tmp_path: Path) -> None:
    db = FlakyDB()
    sink = UsageSink(db.write, tmp_path, batch_size=10, flush_interval_s=10, write_timeout_s=0.05)
    # Slower than the timeout, so the write is cut short and spooled. (A commit that lands while its answer
    # is late, then replayed, is tested against the real store: tests/test_usage_store.py.)
    db.hang_s = 0.2
    sink.accept(_record("a"))
    await sink.flush()
    assert sink.spool.pending
    await asyncio.sleep(0.25)
    db.hang_s = 0.0
    sink._retry_at = 0.0
    await sink.flush()
    assert not sink.spool.pending and list(db.rows) == ["a"]
    await sink.aclose()


async def test_aclose_spools_what_the_database_refuses(tmp_path: Path) -> None:
    db = FlakyDB()
    db.down = True
    sink = UsageSink(db.write, tmp_path, batch_size=100, flush_interval_s=10)
    for i in range(3):
        sink.accept(_record(f"r{i}"))
    await sink.aclose()
    files = list(tmp_path.glob("usage-*.spool"))
    assert len(files) == 1 and files[0].read_bytes().count(b'"request_id"') == 3
    # The next process adopts and replays it.
    db.down = False
    nxt = UsageSink(db.write, tmp_path, batch_size=100, flush_interval_s=10)
    await nxt.start()
    await nxt.flush()
    assert sorted(db.rows) == ["r0", "r1", "r2"]
    await nxt.aclose()
    assert list(tmp_path.glob("usage-*.spool")) == []


async def test_overflowing_buffer_goes_to_the_spool(tmp_path: Path) -> None:
    db = FlakyDB()
    sink = UsageSink(db.write, tmp_path, batch_size=2, flush_interval_s=10, max_buffer=4)
    for i in range(4):
        sink.accept(_record(f"r{i}"))
    assert len(sink._buffer) == 4  # accept only appends: the spiller does the disk work
    await sink.spill()
    assert sink.spooled == 2 and len(sink._buffer) == 2
    await sink.aclose()
    assert sorted(db.rows) == ["r0", "r1", "r2", "r3"]


# --- budgets ------------------------------------------------------------------------------


def _ctx(principal: Principal) -> SimpleNamespace:
    # No route: nothing to price, so nothing is reserved (tests/test_budget_reservations.py does that).
    return SimpleNamespace(principal=principal, route=None, request_id="r", endpoint="chat", body={}, budget_hold=None)


async def test_budget_refuses_at_the_boundary_not_before() -> None:
    day = dt.date(2026, 11, 20)
    budgets = BudgetAdmission(MemoryCounters(), today=lambda: day)
    key = Principal(key_id="k1", max_budget_usd=0.03, budget_period="daily")
    for _ in range(3):
        await budgets.admit(_ctx(key))
        budgets.settle(_ctx(key), _record("x", cost_usd=0.01))
    with pytest.raises(BudgetExceeded) as err:
        await budgets.admit(_ctx(key))
    assert err.value.status == 429 and err.value.code == "insufficient_quota"
    assert "$0.0300 spent of $0.03" in err.value.message and "2026-11-21" in err.value.message
    # Another key, and the next day, are not affected.
    await budgets.admit(_ctx(Principal(key_id="k2", max_budget_usd=0.03, budget_period="daily")))
    budgets.today = lambda: day + dt.timedelta(days=1)
    await budgets.admit(_ctx(key))


async def test_team_budget_and_unknown_costs() -> None:
    budgets = BudgetAdmission(MemoryCounters())
    member = SimpleNamespace(
        key_id="k1", team="t", max_budget_usd=None, budget_period=None, team_max_budget_usd=0.01, team_budget_period="monthly"
    )
    budgets.settle(_ctx(member), _record("x", cost_usd=None))  # unknown: not counted
    await budgets.admit(_ctx(member))
    budgets.settle(_ctx(Principal(key_id="k2", team="t")), _record("y", cost_usd=0.01))
    with pytest.raises(BudgetExceeded, match="team"):
        await budgets.admit(_ctx(member))


def test_periods() -> None:
    wed = dt.date(2026, 11, 18)
    assert period_start("weekly", wed) == dt.date(2026, 11, 16)
    assert period_end("monthly", dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)
    assert period_start("total", wed) is None
    assert counter_key("key", "k", "monthly", wed) == "key:k:monthly:2026-11-01"
