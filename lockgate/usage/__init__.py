"""Usage and spend: every record stored (batched, spooled when the database is down), priced, budgeted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from lockgate.config import Config
from lockgate.usage.budgets import BudgetAdmission, MemoryCounters
from lockgate.usage.sink import UsageSink
from lockgate.usage.store import UsageStore

if TYPE_CHECKING:
    from lockgate.redis_client import SharedRedis

log = structlog.get_logger("lockgate.usage")


class UsageService:
    """What the gateway holds for usage: the sink (the SinkQueue's accounting path) and the budget stage (an Admission)."""

    def __init__(self, sink: UsageSink | None, budgets: BudgetAdmission, engine: Any, http_sink: UsageSink | None = None) -> None:
        self.sink = sink
        self.http_sink = http_sink  # usage.http_sink: the same records POSTed to a receiver
        self.budgets = budgets
        self.engine = engine

    def accounting_sinks(self) -> list[UsageSink]:
        """The SinkQueue's accounting path: every sink here sees every record."""
        return [s for s in (self.sink, self.http_sink) if s is not None]

    @classmethod
    async def start(cls, config: Config, engine: Any, redis: "SharedRedis | None" = None) -> "UsageService":
        sink = None
        if config.usage.enabled:
            u = config.usage
            sink = UsageSink(
                UsageStore(engine).write,
                u.spool_dir,
                batch_size=u.batch_size,
                flush_interval_s=u.flush_interval_s,
                write_timeout_s=u.write_timeout_s,
                max_buffer=u.max_buffered,
            )
            await sink.start()
            await sink.flush()  # replay what a previous run spooled before budgets are rebuilt
        http_sink = None
        if config.usage.http_sink is not None:
            from lockgate.usage.http_sink import build_http_sink

            http_sink = await build_http_sink(config.usage.http_sink, config.usage.spool_dir).start()
        backend = config.budgets.backend
        counters: Any
        if backend == "redis":
            if redis is None:
                raise ValueError("budgets.backend is redis but no Redis client was given")
            from lockgate.usage.redis_budgets import RedisCounters  # the Redis client, only when used

            counters = RedisCounters(redis, hold_ttl_s=config.budgets.reservation_ttl_s)
            counters.start()
        else:
            counters = MemoryCounters()
        budgets = BudgetAdmission(
            counters,
            on_backend_error=config.redis.on_error,
            default_output_tokens=config.budgets.default_output_tokens,
            strict=config.budgets.strict,
        )
        try:
            loaded = await budgets.rebuild(engine)
            log.info("budgets_rebuilt", counters=loaded, backend=backend)
        except Exception as err:  # the gateway still serves; spend counts from zero
            log.error("budgets_rebuild_failed", error=type(err).__name__)
        return cls(sink, budgets, engine, http_sink)

    async def aclose(self) -> None:
        """Close what the SinkQueue does not (the sink itself is flushed and closed by SinkQueue.aclose)."""
        await self.budgets.aclose()
