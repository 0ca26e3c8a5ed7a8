"""The admit stage for rate limits: every scope must allow a request, or nothing is charged.

Scopes, checked in this order (the first to refuse is named in the 429):
the key (its own rpm/tpm, else ``ratelimit.defaults``), its team (the team
record's rpm/tpm, else ``ratelimit.teams``), its user (``ratelimit.users``) and the public model
(``models[].limits``). Tokens are charged at admission with an estimate
(prompt size + max_tokens, or ``default_max_tokens``), then corrected to the
real usage when the request ends; a request that never reached an upstream
(refused by a later policy, failed before routing) is given back entirely.
``max_parallel_requests`` (key, team, user, model) takes a slot in the same
atomic step and gives it back when the request ends, however it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import structlog

from lockgate.config import Config, ModelLimits
from lockgate.errors import LimiterUnavailable, ParallelLimited, RateLimited
from lockgate.providers.base import tokens_for_chars
from lockgate.ratelimit.base import WINDOW_PERIODS, BackendUnavailable, Decision, Limiter, Window, go_duration

if TYPE_CHECKING:
    from lockgate.context import RequestContext
    from lockgate.records import RequestRecord

if TYPE_CHECKING:
    from lockgate.redis_client import SharedRedis

log = structlog.get_logger("lockgate.ratelimit")

_SCOPE_NAMES = {"key": "key", "team": "team", "user": "user", "model": "model"}
_NON_TEXT_PART_CHARS = 340  # an image or audio part: ~85 tokens, OpenAI's low-detail image cost
_MAX_PLANS = 50_000


@dataclass(frozen=True, slots=True)
class Plan:
    """The windows that apply to one (principal, model) pair, built once and cached."""

    windows: tuple[Window, ...]
    requests: tuple[int, ...]  # indices of request windows
    tokens: tuple[int, ...]  # indices of token windows
    parallel: tuple[int, ...] = ()  # indices of parallel windows

    def amounts(self, tokens: int) -> list[int]:
        return [tokens if w.kind == "tokens" else 1 for w in self.windows]


class Charge(NamedTuple):
    """What one admission charged (kept on the RequestContext until the request ends)."""

    plan: Plan
    charged_ms: int
    estimate: int  # tokens charged before the real count was known
    lease: str = ""  # names the parallel slots taken (the request id)


def _limits_windows(
    prefix: str,
    scope: str,
    name: str,
    rpm: int | None,
    tpm: int | None,
    rpd: int | None = None,
    tpd: int | None = None,
    parallel: int | None = None,
    lease_ms: int = 900_000,
) -> list[Window]:
    out = []
    if parallel:  # first: the cheapest check, and the one a burst hits
        out.append(Window(f"{prefix}{scope}:{name}:par", scope, name, "parallel", "now", parallel, lease_ms, 0))
    for kind, period, limit in (
        ("requests", "min", rpm),
        ("tokens", "min", tpm),
        ("requests", "day", rpd),
        ("tokens", "day", tpd),
    ):
        if limit:
            window_ms, bucket_ms = WINDOW_PERIODS[period]
            key = f"{prefix}{scope}:{name}:{kind[0]}{period}"
            out.append(Window(key, scope, name, kind, period, limit, window_ms, bucket_ms))
    return out


def _from_limits(prefix: str, scope: str, name: str, limits: ModelLimits | None, lease_ms: int) -> list[Window]:
    if limits is None:
        return []
    return _limits_windows(
        prefix, scope, name, limits.rpm, limits.tpm, limits.rpd, limits.tpd, limits.max_parallel_requests, lease_ms
    )


def _text_chars(value: Any) -> int:
    """Characters of text in a prompt, input or message content, without serialising it."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, int):
                total += 4  # a token id
            elif isinstance(item, dict):
                text = item.get("text")
                total += len(text) if isinstance(text, str) else _NON_TEXT_PART_CHARS
            elif isinstance(item, list):
                total += _text_chars(item)
        return total
    return 0


def estimate_tokens(endpoint: str, body: dict[str, Any], default_max_tokens: int) -> int:
    """A request's token budget: its prompt (the one estimate, ``tokens_for_chars``) plus the completion it may ask for."""
    prompt, completion = estimate_parts(endpoint, body, default_max_tokens)
    return prompt + completion


def estimate_parts(endpoint: str, body: dict[str, Any], default_max_tokens: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens it may ask for): the rate limits' and the budgets' one estimate.

    Every dialect reaches here as canonical chat: /v1/messages' ``max_tokens`` and
    /v1/responses' ``max_output_tokens`` arrive as ``max_completion_tokens``.
    """
    if endpoint in ("chat", "messages", "responses"):
        chars = 0
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict):
                chars += _text_chars(message.get("content")) + 16  # role and framing: ~4 tokens
        for extra in ("tools", "functions", "response_format"):
            if body.get(extra):
                chars += len(orjson.dumps(body[extra]))
    elif endpoint == "embeddings":
        return tokens_for_chars(_text_chars(body.get("input"))), 0
    else:
        chars = _text_chars(body.get("prompt"))
    completion = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(completion, int) or completion < 0:
        completion = default_max_tokens
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        completion *= n
    return tokens_for_chars(chars), completion


class RateLimitAdmission:
    def __init__(self, config: Config, limiter: Limiter) -> None:
        rl = config.ratelimit
        self.limiter = limiter
        self._deny = config.redis.on_error == "deny"  # only a Redis limiter can fail
        self._default_max_tokens = rl.default_max_tokens
        self._prefix = prefix = f"{config.redis.key_prefix}rl:"
        self._lease_ms = lease = int(rl.parallel_lease_s * 1000)
        self._defaults = rl.defaults
        self._team_limits = rl.teams  # what a team record leaves unset (and rpd/tpd, which records lack)
        self._teams = {name: _from_limits(prefix, "team", name, lim, lease) for name, lim in rl.teams.items()}
        self._users = {name: _from_limits(prefix, "user", name, lim, lease) for name, lim in rl.users.items()}
        self._models = {m.name: _from_limits(prefix, "model", m.name, m.limits, lease) for m in config.models}
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self.backend_errors = 0
        self._unlogged_errors = 0
        self._last_error_log = 0.0

    async def start(self) -> None:
        await self.limiter.start()

    async def aclose(self) -> None:
        await self.limiter.aclose()

    def plan(
        self,
        key_id: str,
        rpm: int | None,
        tpm: int | None,
        team: str | None,
        user: str | None,
        model: str,
        team_rpm: int | None = None,
        team_tpm: int | None = None,
        parallel: int | None = None,
        team_parallel: int | None = None,
    ) -> Plan:
        cache_key = (key_id, rpm, tpm, team, user, model, team_rpm, team_tpm, parallel, team_parallel)
        plan = self._plans.get(cache_key)
        if plan is None:
            d = self._defaults
            windows = _limits_windows(
                self._prefix,
                "key",
                key_id,
                rpm if rpm is not None else d.rpm,
                tpm if tpm is not None else d.tpm,
                parallel=parallel if parallel is not None else d.max_parallel_requests,
                lease_ms=self._lease_ms,
            )
            windows += self._team_windows(team, team_rpm, team_tpm, team_parallel) if team else []
            windows += self._users.get(user, []) if user else []
            windows += self._models.get(model, [])
            plan = Plan(
                tuple(windows),
                tuple(i for i, w in enumerate(windows) if w.kind == "requests"),
                tuple(i for i, w in enumerate(windows) if w.kind == "tokens"),
                tuple(i for i, w in enumerate(windows) if w.kind == "parallel"),
            )
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()  # keys come and go; a rebuild is cheap
            self._plans[cache_key] = plan
        return plan

    def _team_windows(self, team: str, rpm: int | None, tpm: int | None, parallel: int | None = None) -> list[Window]:
        """The team record's rpm/tpm/max_parallel_requests where set; `ratelimit.teams` for the rest."""
        if rpm is None and tpm is None and parallel is None:
            return self._teams.get(team, [])
        conf = self._team_limits.get(team)
        return _limits_windows(
            self._prefix,
            "team",
            team,
            rpm if rpm is not None else (conf.rpm if conf else None),
            tpm if tpm is not None else (conf.tpm if conf else None),
            conf.rpd if conf else None,
            conf.tpd if conf else None,
            parallel if parallel is not None else (conf.max_parallel_requests if conf else None),
            self._lease_ms,
        )

    # --- the Admission protocol --------------------------------------------------------

    async def admit(self, ctx: RequestContext) -> None:
        p, route = ctx.principal, ctx.route
        if p is None or route is None:
            return
        plan = self.plan(
            p.key_id,
            p.rpm,
            p.tpm,
            p.team,
            p.user,
            route.name,
            p.team_rpm,
            p.team_tpm,
            p.max_parallel_requests,
            p.team_max_parallel_requests,
        )
        if not plan.windows:
            return
        tokens = estimate_tokens(ctx.endpoint, ctx.body or {}, self._default_max_tokens) if plan.tokens else 0
        amounts = plan.amounts(tokens)
        lease = ctx.request_id if plan.parallel else ""
        try:
            decision = await self.limiter.acquire(plan.windows, amounts, lease)
        except BackendUnavailable as err:
            self._backend_error(str(err))
            if self._deny:
                raise LimiterUnavailable(
                    "The rate limiter is unavailable, so this request was not admitted. Please try again shortly.",
                    retry_after_s=1.0,
                ) from None
            return  # fail open: admitted unmetered, counted and logged
        ctx.headers.update(self.headers(plan, decision))
        if not decision.allowed:
            raise self.refusal(plan, decision, amounts)
        ctx.rate_limit_charge = Charge(plan, decision.now_ms, tokens, lease)

    def settle(self, ctx: RequestContext, record: RequestRecord) -> None:
        held, ctx.rate_limit_charge = ctx.rate_limit_charge, None
        if held is None:
            return
        plan, charged_ms, estimate, lease = held
        if not ctx.attempts:
            # Never reached an upstream: nothing was served, so nothing stays charged.
            deltas = [-estimate if w.kind == "tokens" else -1 for w in plan.windows]
        elif plan.tokens or plan.parallel:
            delta = record.prompt_tokens + record.completion_tokens - estimate if plan.tokens else 0
            if not delta and not plan.parallel:
                return
            # Parallel slots are given back whatever happened; tokens corrected to the real count.
            deltas = [delta if w.kind == "tokens" else (-1 if w.kind == "parallel" else 0) for w in plan.windows]
        else:
            return
        self.limiter.adjust(plan.windows, charged_ms, deltas, lease)

    # --- rendering -------------------------------------------------------------------------

    @staticmethod
    def headers(plan: Plan, d: Decision) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers, for the tightest window of each kind."""
        out: dict[str, str] = {}
        for kind, indices in (("requests", plan.requests), ("tokens", plan.tokens)):
            if not indices:
                continue
            i = min(indices, key=lambda j: plan.windows[j].limit - d.used[j])
            w = plan.windows[i]
            out[f"x-ratelimit-limit-{kind}"] = str(w.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, w.limit - d.used[i]))
            out[f"x-ratelimit-reset-{kind}"] = go_duration(d.reset_ms[i])
        return out

    @staticmethod
    def refusal(plan: Plan, d: Decision, amounts: list[int]) -> RateLimited:
        i = d.refused
        w, requested = plan.windows[i], amounts[i]
        who = f"{_SCOPE_NAMES[w.scope]} `{w.name}`"
        if w.kind == "parallel":
            return ParallelLimited(
                f"Too many parallel requests for {who}: Limit {w.limit}, In flight {d.used[i]}. "
                "Wait for one of them to finish, then try again.",
                retry_after_s=d.retry_after_ms / 1000.0,
                headers={"retry-after-ms": str(d.retry_after_ms)},
            )
        if requested > w.limit:
            message = (
                f"Request too large for {who} on {w.label}: Limit {w.limit}, Requested {requested}. "
                "Lower max_tokens or the size of the prompt."
            )
        else:
            message = (
                f"Rate limit reached for {who} on {w.label}: Limit {w.limit}, Used {d.used[i]}, "
                f"Requested {requested}. Please try again in {go_duration(d.retry_after_ms)}."
            )
        return RateLimited(
            message,
            type=w.kind,
            retry_after_s=d.retry_after_ms / 1000.0,
            headers={"retry-after-ms": str(d.retry_after_ms)},
        )

    def _backend_error(self, reason: str) -> None:
        """Count every failure; log at most one line a second so an outage cannot flood the logs."""
        self.backend_errors += 1
        self._unlogged_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            log.warning(
                "ratelimit_backend_error",
                error=reason,
                policy="deny" if self._deny else "allow",
                count=self._unlogged_errors,
                total=self.backend_errors,
            )
            self._unlogged_errors = 0
            self._last_error_log = now


def build_admission(
    config: Config, redis: "SharedRedis | None" = None, clock: Callable[[], float] | None = None
) -> RateLimitAdmission:
    """The admission for this config: the in-process limiter, or the Redis one on the gateway's client."""
    limiter: Limiter
    if config.ratelimit.backend == "redis":
        from lockgate.ratelimit.redis import RedisLimiter

        if redis is None:
            raise ValueError("ratelimit.backend is redis but no Redis client was given")
        limiter = RedisLimiter(redis, clock=clock)
    else:
        from lockgate.ratelimit.memory import MemoryLimiter

        limiter = MemoryLimiter(clock=clock)
    return RateLimitAdmission(config, limiter)
