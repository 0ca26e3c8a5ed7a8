"""The limiter seam: windows to check, the atomic check-and-charge, and its answer.

Every window is a *sliding* window kept as a ring of small buckets (1 s for a
minute, 1 min for a day). A charge lands in the bucket of the moment it was
made and leaves the window ``window + one bucket`` after that bucket began, so
the sum over the live buckets never under-counts any true sliding interval:
a limit of N is never exceeded in any window-long span, and a refused caller is
kept out at most one bucket (1 s for per-minute limits) longer than strictly
needed. Both back-ends implement exactly this arithmetic, so they agree.

A *parallel* window (``max_parallel_requests``) is no window in time: it counts
the requests in flight, each holding a slot from admission until it ends. In
Redis each slot is a lease that expires (``ratelimit.parallel_lease_s``), so a
gateway that dies mid-request cannot hold it forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# period -> (window length, bucket length) in milliseconds
WINDOW_PERIODS: dict[str, tuple[int, int]] = {"min": (60_000, 1_000), "day": (86_400_000, 60_000)}
# A refused parallel request is told to come back in a second: no clock says when a slot frees.
PARALLEL_RETRY_MS = 1_000


@dataclass(frozen=True, slots=True)
class Window:
    """One limit on one scope: e.g. the tokens per minute of model `gpt-4o`."""

    key: str  # storage key, unique per scope, kind and period
    scope: str  # key | team | user | model
    name: str  # the scope's id, for messages
    kind: str  # requests | tokens | parallel
    period: str  # min | day (parallel: "now")
    limit: int
    window_ms: int  # parallel: the lease
    bucket_ms: int  # parallel: 0

    @property
    def label(self) -> str:
        if self.kind == "parallel":
            return "parallel requests"
        unit = "RP" if self.kind == "requests" else "TP"
        return f"{self.kind} per {self.period} ({unit}{'M' if self.period == 'min' else 'D'})"


@dataclass(slots=True)
class Decision:
    """The answer to one acquire: allowed (everything charged) or refused (nothing charged)."""

    allowed: bool
    now_ms: int  # the time the charge was made (for reconciling it later)
    used: list[int]  # per window: usage after the charge, or before it when refused
    reset_ms: list[int]  # per window: until the oldest counted usage leaves the window
    refused: int = -1  # index of the first window that said no
    retry_after_ms: int = 0  # until the refused window has room for the request


class BackendUnavailable(Exception):
    """The shared back-end did not answer in time; the admission's policy decides."""


class Limiter(Protocol):
    async def start(self) -> None: ...

    async def acquire(self, windows: Sequence[Window], amounts: Sequence[int], lease: str = "") -> Decision:
        """Check every window and charge all of them, or none: one atomic step (``lease`` names parallel slots)."""
        ...

    def adjust(self, windows: Sequence[Window], charged_ms: int, deltas: Sequence[int], lease: str = "") -> None:
        """Correct earlier charges (made at ``charged_ms``) by ``deltas``; never blocks. A parallel
        window's -1 releases the slot of ``lease`` (sent at once, ahead of later acquires)."""
        ...

    async def aclose(self) -> None: ...


def go_duration(ms: float) -> str:
    """A duration as Go prints it (OpenAI's reset headers): 0s, 12ms, 9.8s, 6m0s, 1h0m0s."""
    total = max(0, int(round(ms)))
    if total == 0:
        return "0s"
    if total < 1000:
        return f"{total}ms"
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    if millis:
        return out + f"{seconds}.{millis:03d}".rstrip("0") + "s"
    return out + f"{seconds}s"
