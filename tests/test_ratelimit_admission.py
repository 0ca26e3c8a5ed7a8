"""The admit stage without a server: scopes, estimates, headers, refusals, settling (in-process limiter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lockgate.auth import MASTER, Principal
from lockgate.config import parse_config
from lockgate.errors import LimiterUnavailable, RateLimited
from lockgate.ratelimit import build_admission, go_duration
from lockgate.ratelimit.admission import estimate_tokens
from lockgate.ratelimit.base import BackendUnavailable
from lockgate.records import RequestRecord

START = 1_700_000_040_000


class Clock:
    ms = START

    def __call__(self) -> float:
        return self.ms


@dataclass
class Route:
    name: str


@dataclass
class Ctx:
    """The fields of RequestContext the admission reads and writes."""

    principal: Principal
    route: Route
    body: dict[str, Any]
    endpoint: str = "chat"
    headers: dict[str, str] = field(default_factory=dict)
    rate_limit_charge: Any = None
    attempts: list[Any] = field(default_factory=lambda: [object()])


def config(redis: dict[str, Any] | None = None, **ratelimit: Any) -> Any:
    return parse_config(
        {
            "ratelimit": ratelimit,
            "redis": redis or {},
            "models": [
                {"name": "m", "limits": {"rpm": 5, "tpm": 10_000}, "deployments": [{"provider": "mock", "model": "m"}]},
                {"name": "free", "deployments": [{"provider": "mock", "model": "free"}]},
            ],
        },
        env={},
    )


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def record(prompt: int, completion: int) -> RequestRecord:
    return RequestRecord("r", "chat", "m", 200, 0.0, 1.0, prompt_tokens=prompt, completion_tokens=completion)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (12, "12ms"),
        (999, "999ms"),
        (1000, "1s"),
        (9800, "9.8s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (61_500, "1m1.5s"),
        (3_600_000, "1h0m0s"),
        (86_400_000, "24h0m0s"),
        (-5, "0s"),
    ],
)
def test_go_duration(ms: int, text: str) -> None:
    assert go_duration(ms) == text


def test_estimate_tokens() -> None:
    assert estimate_tokens("chat", chat("x" * 400, max_tokens=100), 1024) == (400 + 16 + 3) // 4 + 100
    assert estimate_tokens("chat", chat("x" * 400, max_completion_tokens=50, n=3), 1024) == 104 + 150
    assert estimate_tokens("chat", chat("x" * 400), 1024) == 104 + 1024
    parts = [{"type": "text", "text": "y" * 40}, {"type": "image_url", "image_url": {"url": "data:..."}}]
    assert estimate_tokens("chat", chat(parts, max_tokens=0), 1024) == (40 + 340 + 16 + 3) // 4
    assert estimate_tokens("completions", {"prompt": ["ab" * 10, "c" * 20], "max_tokens": 5}, 1024) == 10 + 5
    assert estimate_tokens("embeddings", {"input": "z" * 80}, 1024) == 20
    assert estimate_tokens("chat", {"messages": "junk", "max_tokens": "no"}, 7) == 7


async def test_model_limits_headers_and_refusal() -> None:
    adm = build_admission(config(), clock=Clock())
    for i in range(5):
        ctx = Ctx(MASTER, Route("m"), chat(max_tokens=10))
        await adm.admit(ctx)
        assert ctx.headers["x-ratelimit-limit-requests"] == "5"
        assert ctx.headers["x-ratelimit-remaining-requests"] == str(4 - i)
        assert ctx.headers["x-ratelimit-reset-requests"] == "1m1s"
        assert ctx.headers["x-ratelimit-limit-tokens"] == "10000"
    ctx = Ctx(MASTER, Route("m"), chat(max_tokens=10))
    with pytest.raises(RateLimited) as caught:
        await adm.admit(ctx)
    err = caught.value
    assert err.status == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    assert err.message == (
        "Rate limit reached for model `m` on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 1m1s."
    )
    assert err.retry_after_s == 61.0 and err.headers["retry-after-ms"] == "61000"
    assert ctx.headers["x-ratelimit-remaining-requests"] == "0"  # headers on the refusal too
    assert ctx.rate_limit_charge is None


async def test_defaults_apply_to_every_key_and_own_limits_win() -> None:
    adm = build_admission(config(defaults={"rpm": 2}), clock=Clock())
    own = Principal(key_id="k-own", rpm=3)
    for _ in range(2):
        await adm.admit(Ctx(MASTER, Route("free"), chat()))
    with pytest.raises(RateLimited, match="for key `master` on requests per min"):
        await adm.admit(Ctx(MASTER, Route("free"), chat()))
    for _ in range(3):
        await adm.admit(Ctx(own, Route("free"), chat()))
    with pytest.raises(RateLimited, match="for key `k-own`"):
        await adm.admit(Ctx(own, Route("free"), chat()))


async def test_team_and_user_scopes() -> None:
    adm = build_admission(config(teams={"red": {"rpm": 2}}, users={"ann": {"tpm": 100}}), clock=Clock())
    a, b = Principal(key_id="a", team="red"), Principal(key_id="b", team="red")
    await adm.admit(Ctx(a, Route("free"), chat()))
    await adm.admit(Ctx(b, Route("free"), chat()))
    with pytest.raises(RateLimited, match="for team `red`"):
        await adm.admit(Ctx(a, Route("free"), chat()))
    ann = Principal(key_id="c", user="ann")
    with pytest.raises(
        RateLimited, match=r"Request too large for user `ann` on tokens per min \(TPM\): Limit 100, Requested 1029"
    ) as caught:
        await adm.admit(Ctx(ann, Route("free"), chat()))
    assert caught.value.type == "tokens"
    await adm.admit(Ctx(ann, Route("free"), chat(max_tokens=50)))


async def test_settle_reconciles_tokens_and_refunds_unserved_requests() -> None:
    adm = build_admission(config(), clock=Clock())
    ctx = Ctx(MASTER, Route("m"), chat("x" * 4000, max_tokens=1000))
    await adm.admit(ctx)
    assert ctx.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1004 - 1000)
    adm.settle(ctx, record(prompt=1000, completion=20))
    probe = Ctx(MASTER, Route("m"), chat(max_tokens=0))
    await adm.admit(probe)
    assert probe.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1020 - 5)
    adm.settle(probe, record(5, 0))
    # A request that never reached an upstream gives back its request and its tokens.
    unserved = Ctx(MASTER, Route("m"), chat(max_tokens=500), attempts=[])
    await adm.admit(unserved)
    adm.settle(unserved, RequestRecord("r", "chat", "m", 429, 0.0, 1.0))
    probe = Ctx(MASTER, Route("m"), chat(max_tokens=0))
    await adm.admit(probe)
    assert probe.headers["x-ratelimit-remaining-requests"] == "2"  # 3 charged: first, probe, this probe
    assert probe.headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1020 - 5 - 5)
    adm.settle(probe, record(5, 0))
    adm.settle(probe, record(5, 0))  # settling twice is harmless


async def test_no_limits_means_no_work_and_no_headers() -> None:
    adm = build_admission(config(), clock=Clock())
    ctx = Ctx(MASTER, Route("free"), chat())
    await adm.admit(ctx)
    assert ctx.headers == {} and ctx.rate_limit_charge is None


class DownLimiter:
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    def adjust(self, *a: Any) -> None: ...

    async def acquire(self, windows: Any, amounts: Any, lease: str = "") -> Any:
        raise BackendUnavailable("ConnectionError")


async def test_backend_error_policies() -> None:
    allow = build_admission(config(redis={"on_error": "allow"}))
    allow.limiter = DownLimiter()
    ctx = Ctx(MASTER, Route("m"), chat())
    await allow.admit(ctx)
    await allow.admit(ctx)
    assert allow.backend_errors == 2 and ctx.headers == {}
    deny = build_admission(config(redis={"on_error": "deny"}))
    deny.limiter = DownLimiter()
    with pytest.raises(LimiterUnavailable) as caught:
        await deny.admit(Ctx(MASTER, Route("m"), chat()))
    assert caught.value.status == 503 and caught.value.code == "rate_limiter_unavailable"
