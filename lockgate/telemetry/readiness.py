"""What /health/ready reports: each dependency and each deployment, and whether we can serve.

Not ready (503) when the gateway cannot answer inference requests: still
starting, the database (which holds the keys) unreachable, Redis unreachable
(or not answering) while the limiter or budgets use it with ``redis.on_error:
deny``, or every deployment of every model cooling down. A part that only
degrades service (Redis with fail-open, or holding only shared cool-downs;
some models cooling) makes the status "degraded" with 200. Redis is probed
with a PING on the gateway's one client, within its deadline.
PostHog is best-effort: its queue is reported, never a reason to refuse.
Also 503 while the schema is not at head (a migrate step has not run yet) and
from the moment a SIGTERM starts the drain (`mark_draining`), so a load
balancer stops sending new work while in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import structlog

from lockgate.telemetry.logging import redact

log = structlog.get_logger("lockgate.health")

PROBE_TIMEOUT_S = 1.0

_draining = False


def mark_draining() -> None:
    """Called from the SIGTERM handler: every later readiness report is 503 `draining`."""
    global _draining
    _draining = True


def _chain_sigterm() -> None:
    """Mark draining on SIGTERM, then let the server's own handler start the graceful shutdown.

    Runs at start-up inside each worker, after uvicorn has installed its handler; a no-op off
    the main thread (an app served from a test thread has no signals).
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)

        first: list[float] = []

        def on_sigterm(sig: int, frame: Any) -> None:
            # A second SIGTERM stops the drain (uvicorn force-exits on a repeated SIGINT). One that
            # follows within a second is the same stop: under `tini -g` a worker gets the group's
            # SIGTERM and its supervisor's.
            again = bool(first) and time.monotonic() - first[0] > 1.0
            first[:1] = first[:1] or [time.monotonic()]
            mark_draining()
            if callable(previous):
                previous(signal.SIGINT if again else sig, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        pass


class Readiness:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        config = gateway.config
        _chain_sigterm()
        self._schema_at_head = False  # once at head it stays there (migrations only move forward)
        self._redis = getattr(gateway, "redis", None)  # the gateway's one client (owned by the gateway)
        users = config.redis_users()
        self._redis_users = users
        # Requests wait on Redis only in the limiter and budgets; with deny, they cannot be served without it.
        self._redis_required = config.redis.on_error == "deny" and bool({"ratelimit", "budgets"} & set(users))

    async def _database(self) -> dict[str, Any] | None:
        store = getattr(self.gateway, "store", None)
        if store is None:
            return None
        import sqlalchemy as sa

        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with store.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
                if not self._schema_at_head:
                    schema = await store.schema_state()
                    if schema != "at_head":
                        return {"status": "down", "schema": schema, "dialect": getattr(store, "dialect", None)}
                    self._schema_at_head = True
            return {"status": "ok", "dialect": getattr(store, "dialect", None)}
        except Exception as err:
            return {"status": "down", "error": redact(f"{type(err).__name__}: {err}")[:200]}

    async def _redis_state(self) -> dict[str, Any] | None:
        if self._redis is None:
            return None
        try:
            await self._redis.ping()  # bounded by the client's deadline
            return {"status": "ok", "used_by": self._redis_users}
        except Exception as err:
            return {
                "status": "down",
                "error": str(err) or type(err).__name__,
                "required": self._redis_required,
                "used_by": self._redis_users,
            }

    def _posthog(self) -> dict[str, Any] | None:
        sink = getattr(getattr(self.gateway, "telemetry", None), "posthog", None)
        if sink is None:
            return None
        return {"status": "ok", "queue_depth": sink.queue_depth, "queue_limit": sink.queue_limit}

    async def report(self) -> tuple[int, dict[str, Any]]:
        gateway = self.gateway
        database, redis_state = await asyncio.gather(self._database(), self._redis_state())
        checks: dict[str, Any] = {}
        problems: list[str] = []
        degraded: list[str] = []
        if _draining:
            problems.append("draining")
        if database is not None:
            checks["database"] = database
            if database["status"] != "ok":
                problems.append("database")
        if redis_state is not None:
            checks["redis"] = redis_state
            if redis_state["status"] != "ok":
                (problems if self._redis_required else degraded).append("redis")
        posthog = self._posthog()
        if posthog is not None:
            checks["posthog"] = posthog
        sinks = gateway.sinks
        checks["sinks"] = {"status": "ok", "queue_depth": sinks.depth, "dropped": sinks.dropped}
        models = gateway.router.describe()
        usable = 0
        for model in models:
            states = [d.get("state", "healthy") for d in model.get("deployments", ())]
            if any(s != "cooling" for s in states):
                usable += 1
            else:
                degraded.append(f"model:{model['model']}")
        if models and usable == 0:
            problems.append("deployments")
        status = "not_ready" if problems else ("degraded" if degraded else "ready")
        body = {"status": status, "checks": checks, "models": models}
        if problems:
            body["failing"] = problems
        if degraded:
            body["degraded"] = degraded
        return (503 if problems else 200), body

    async def aclose(self) -> None:
        return None  # the Redis client is the gateway's, closed by it
