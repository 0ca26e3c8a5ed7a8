"""The brute-force guard: too many failed authentications from one address → 429 for a while.

Counts failures per client address in a sliding minute (the current and the
previous one-minute window, the previous weighted by how much of it still
overlaps). Once over the limit, every attempt from that address is refused with
429 — a correct key too, or guessing could go on with 401/200 as the oracle —
until the estimate drops below the limit. Memory is bounded: the least recently
seen addresses are forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from lockgate.errors import TooManyAuthFailures

WINDOW_S = 60.0


class FailureGuard:
    def __init__(
        self,
        max_per_minute: int,
        *,
        max_clients: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max_per_minute
        self.max_clients = max_clients
        self._clock = clock
        # address → [window index, failures in it, failures in the window before]
        self._seen: OrderedDict[str, list[int]] = OrderedDict()

    def _estimate(self, client: str, now: float) -> tuple[float, list[int] | None]:
        slot = self._seen.get(client)
        if slot is None:
            return 0.0, None
        window = int(now // WINDOW_S)
        if slot[0] != window:
            slot[2] = slot[1] if slot[0] == window - 1 else 0
            slot[1] = 0
            slot[0] = window
        overlap = 1.0 - (now % WINDOW_S) / WINDOW_S
        return slot[1] + slot[2] * overlap, slot

    def check(self, client: str | None) -> None:
        """Raise 429 if this address has failed too often lately."""
        if not self._seen:
            return
        now = self._clock()
        estimate, slot = self._estimate(client or "unknown", now)
        if slot is None or estimate < self.limit:
            return
        raise TooManyAuthFailures(
            "Too many failed authentication attempts from your address; try again later.",
            retry_after_s=self._retry_after(slot, now),
        )

    def _retry_after(self, slot: list[int], now: float) -> float:
        # When the sliding estimate drops below the limit again, if no more failures come.
        into = now % WINDOW_S
        cur, prev = slot[1], slot[2]
        if cur >= self.limit:
            wait = (WINDOW_S - into) + WINDOW_S * (1.0 - self.limit / cur)
        else:
            wait = WINDOW_S * (1.0 - (self.limit - cur) / prev) - into
        return float(max(1, math.ceil(wait)))

    def failed(self, client: str | None) -> None:
        key = client or "unknown"
        now = self._clock()
        _, slot = self._estimate(key, now)
        if slot is None:
            slot = [int(now // WINDOW_S), 0, 0]
            self._seen[key] = slot
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        slot[1] += 1

    def __len__(self) -> int:
        return len(self._seen)
