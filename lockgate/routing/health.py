"""Per-deployment health: failure windows, cool-downs and half-open probes.

States (a small circuit breaker):

    healthy ──(`failures` retryable failures within `window_s`, or a 429)──▶ cooling
    cooling ──(cool-down over)──▶ half_open: the next request is the probe, others skip it
    half_open ──(probe succeeds)──▶ healthy      half_open ──(probe fails)──▶ cooling

All times come from the router's clock (monotonic seconds), so tests can drive it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from lockgate.config import Cooldown
from lockgate.errors import GatewayError

HEALTHY, COOLING, HALF_OPEN = "healthy", "cooling", "half_open"

# Weight of the newest latency sample in the moving average.
EWMA_ALPHA = 0.3


@dataclass(slots=True)
class Health:
    """What the router knows about one deployment in this process."""

    failures: deque[float] = field(default_factory=deque)  # clock times of recent failures
    cooled_until: float = 0.0
    tripped: bool = False  # cooled since the last success: half-open once the cool-down ends
    probing: bool = False  # a half-open probe is in flight
    inflight: int = 0
    latency_ms: float | None = None  # moving average of time to answer / first chunk
    successes: int = 0
    errors: int = 0
    cooldowns: int = 0

    def state(self, now: float) -> str:
        if not self.tripped:
            return HEALTHY
        return COOLING if now < self.cooled_until else HALF_OPEN

    def available(self, now: float) -> bool:
        """May a new request be sent here? (half-open admits one probe at a time)"""
        state = self.state(now)
        return state == HEALTHY or (state == HALF_OPEN and not self.probing)

    def started(self, now: float) -> None:
        self.inflight += 1
        if self.state(now) == HALF_OPEN:
            self.probing = True

    def released(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    def succeeded(self, latency_ms: float) -> None:
        self.successes += 1
        self.failures.clear()
        self.tripped = self.probing = False
        self.cooled_until = 0.0
        prev = self.latency_ms
        self.latency_ms = latency_ms if prev is None else prev + EWMA_ALPHA * (latency_ms - prev)

    def failed(self, err: GatewayError, now: float, cfg: Cooldown) -> float | None:
        """Count a retryable failure; returns the cool-down (seconds) when this one trips it."""
        self.errors += 1
        was_probe = self.probing
        self.probing = False
        if err.status == 429:
            # The upstream said "not now": cool down for as long as it asked, else the default.
            return self.cool(now, err.retry_after_s if err.retry_after_s is not None else cfg.cooldown_s)
        if was_probe or self.state(now) == HALF_OPEN:
            return self.cool(now, cfg.cooldown_s)
        window_start = now - cfg.window_s
        failures = self.failures
        while failures and failures[0] <= window_start:
            failures.popleft()
        failures.append(now)
        if len(failures) >= cfg.failures:
            return self.cool(now, cfg.cooldown_s)
        return None

    def cool(self, now: float, seconds: float) -> float:
        self.tripped = True
        self.cooled_until = max(self.cooled_until, now + seconds)
        self.failures.clear()
        self.cooldowns += 1
        return seconds

    def describe(self, now: float) -> dict[str, object]:
        state = self.state(now)
        out: dict[str, object] = {"state": state, "inflight": self.inflight}
        if state == COOLING:
            out["cooldown_remaining_s"] = round(self.cooled_until - now, 3)
        if self.failures:
            out["recent_failures"] = len(self.failures)
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 1)
        out["successes"], out["errors"], out["cooldowns"] = self.successes, self.errors, self.cooldowns
        return out
