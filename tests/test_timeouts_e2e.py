"""Each upstream timeout of a deployment, through a real `lockgate serve`, driven with the openai client.

The semantics pinned here are documented in docs/routing.md ("Timeouts"):
connect_timeout_s bounds the TCP connect and TLS handshake; timeout_s a whole
non-streamed answer and a stream's wait for its first event (when
first_byte_timeout_s is absent), never a stream that has started;
first_byte_timeout_s a stream's first event; stream_idle_timeout_s the silence
after it; max_stream_duration_s (off by default) a whole stream.

Each setting is short (0.5-1 s) against a fault several times longer, so a
cut is told from a natural end with wide margins on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import openai_deployment
from tests.fakes.anthropic_upstream import UPSTREAM_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stalled import FullBacklog, SilentServer
from tests.harness import MASTER_KEY, GatewayProcess

MSG = [{"role": "user", "content": "hi"}]
LONG = 20  # seconds: every timeout a test does not exercise, far past its faults
OPENAI_TEXT = "Hello from the fake upstream."
ANTHROPIC_TEXT = "Hello from the fake Anthropic upstream."


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_anthropic(anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    anthropic_server.reset()
    yield anthropic_server
    anthropic_server.reset()


@pytest.fixture(scope="module")
def stalled() -> Iterator[tuple[FullBacklog, SilentServer]]:
    backlog, silent = FullBacklog().start(), SilentServer().start()
    yield backlog, silent
    backlog.stop()
    silent.stop()


def _anthropic(fake: FakeAnthropic, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "anthropic",
        "model": "claude-test",
        "api_base": fake.url,
        "api_key": ANTHROPIC_KEY,
        "timeout_s": LONG,
        **extra,
    }


@pytest.fixture(scope="module")
def gw(
    fake_openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    stalled: tuple[FullBacklog, SilentServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    backlog, silent = stalled
    fake = fake_openai_server

    def oa(**extra: Any) -> dict[str, Any]:
        return openai_deployment(fake, **{"timeout_s": LONG, **extra})

    def model(name: str, *deployments: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"name": name, "deployments": list(deployments), **more}

    tcp = oa(id="tcp", api_base=f"http://127.0.0.1:{backlog.port}/v1", connect_timeout_s=0.5)
    models = [
        model("ok", oa(id="ok")),
        model("connect-tcp", tcp),
        model("connect-tls", oa(id="tls", api_base=f"https://127.0.0.1:{silent.port}/v1", connect_timeout_s=0.5)),
        model("connect-fb", {**tcp, "id": "tcp-fb"}, fallbacks=["ok"]),
        model("first-byte", oa(id="first-byte", first_byte_timeout_s=0.5)),
        model("first-byte-fb", oa(id="first-byte-fb", first_byte_timeout_s=0.5), fallbacks=["ok"]),
        model("a-first-byte", _anthropic(anthropic_server, id="a-first-byte", first_byte_timeout_s=0.5)),
        model("idle", oa(id="idle", stream_idle_timeout_s=0.5)),
        model("a-idle", _anthropic(anthropic_server, id="a-idle", stream_idle_timeout_s=0.5)),
        model("total", oa(id="total", timeout_s=1, stream_idle_timeout_s=LONG)),
        model("maxdur", oa(id="maxdur", max_stream_duration_s=1, stream_idle_timeout_s=LONG)),
    ]
    config = {
        "auth": {"master_key": MASTER_KEY},
        "router": {"max_attempts": 1, "backoff": {"base_s": 0, "max_s": 0}, "deadline_s": 60},
        "models": models,
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("timeouts")).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> openai.OpenAI:
    # The client's own timeout is far above every gateway deadline tested, below the LONG ones.
    return openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=10)


def fault_for(model: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> list[dict[str, Any]]:
    return fake_anthropic.faults if model.startswith("a-") else fake_openai.faults


def health_of(gw: GatewayProcess, deployment: str) -> dict[str, Any]:
    ready = httpx.get(gw.base_url + "/health/ready", timeout=5).json()
    for model in ready["models"]:
        for dep in model["deployments"]:
            if dep["id"] == deployment:
                return dep
    raise AssertionError(f"{deployment} not in {ready}")


def stream_text(client: openai.OpenAI, model: str) -> tuple[str, openai.APIError | None, float, httpx.Headers]:
    """The text a stream delivered, the error that ended it (None for a clean end), its duration and headers."""
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, stream=True)  # type: ignore[arg-type]
    parts: list[str] = []
    error = None
    try:
        for chunk in raw.parse():
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
    except openai.APIError as err:
        error = err
    return "".join(parts), error, time.monotonic() - started, raw.headers


def refused(client: openai.OpenAI, model: str, *, stream: bool) -> tuple[openai.APIStatusError, float]:
    """The error status a request was refused with before its response started, and how long it took."""
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        resp = client.chat.completions.create(model=model, messages=MSG, stream=stream)  # type: ignore[call-overload]
        if stream:
            list(resp)
    return err.value, time.monotonic() - started


def assert_timeout_504(err: openai.APIStatusError, setting: str) -> None:
    assert err.status_code == 504, err
    body = err.body
    assert isinstance(body, dict) and body.get("code") == "upstream_timeout", body
    assert setting in body["message"], body["message"]


# --- connect_timeout_s -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["connect-tcp", "connect-tls"])
@pytest.mark.parametrize("stream", [False, True])
def test_connect_timeout_s_bounds_the_tcp_connect_and_the_tls_handshake(
    client: openai.OpenAI, stalled: tuple[FullBacklog, SilentServer], model: str, stream: bool
) -> None:
    # connect-tcp: the SYN is never answered; connect-tls: TCP connects, the server never says hello.
    accepted = stalled[1].accepted
    err, elapsed = refused(client, model, stream=stream)
    assert_timeout_504(err, "connect_timeout_s (0.5 s)")
    assert 0.4 < elapsed < 4, elapsed  # not timeout_s (20 s), nor the client's 10 s
    if model == "connect-tls":
        assert stalled[1].accepted > accepted  # the TCP part did connect: the handshake was what timed out


def test_a_connect_timeout_fails_over(client: openai.OpenAI, gw: GatewayProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(model="connect-fb", messages=MSG, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == OPENAI_TEXT
    assert raw.headers["x-lockgate-deployment"] == "ok" and raw.headers["x-lockgate-attempts"] == "2"


# --- first_byte_timeout_s ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["first-byte", "a-first-byte"])
@pytest.mark.parametrize("fault", [{"hang_s": 3}, {"first_event_delay_s": 3}], ids=["slow-headers", "slow-first-event"])
def test_first_byte_timeout_s_bounds_a_streams_first_event(
    client: openai.OpenAI, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str, fault: dict[str, Any]
) -> None:
    fault_for(model, fake_openai, fake_anthropic).append(fault)
    err, elapsed = refused(client, model, stream=True)
    assert_timeout_504(err, "first_byte_timeout_s (0.5 s)")
    assert 0.4 < elapsed < 2.5, elapsed  # the upstream would have started at 3 s


def test_first_byte_timeout_s_fails_over_and_spares_non_streamed_answers(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"first_event_delay_s": 3})
    text, error, elapsed, headers = stream_text(client, "first-byte-fb")
    assert error is None and text == OPENAI_TEXT
    assert headers["x-lockgate-deployment"] == "ok" and headers["x-lockgate-attempts"] == "2"
    assert elapsed < 2.5, elapsed
    # A non-streamed answer only comes once it is written: first_byte_timeout_s is no limit to it.
    fake_openai.faults.append({"hang_s": 1.5})
    answer = client.chat.completions.create(model="first-byte", messages=MSG)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == OPENAI_TEXT


# --- stream_idle_timeout_s ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["idle", "a-idle"])
def test_stream_idle_timeout_s_ends_a_silent_stream_with_an_error_event(
    client: openai.OpenAI, gw: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    fault_for(model, fake_openai, fake_anthropic).append({"gap_after": 2, "gap_s": 4})
    text, error, elapsed, headers = stream_text(client, model)
    assert text == ("Hello from " if model == "idle" else "Hello from t")  # what came before the silence
    assert error is not None and "stream_idle_timeout_s (0.5 s)" in error.message, error
    assert isinstance(error.body, dict) and error.body.get("code") == "upstream_timeout"
    assert elapsed < 3.5, elapsed  # the upstream would have gone on at 4 s
    line = gw.access_line(headers["x-request-id"])
    assert line["status"] == 504 and line["error_type"] == "provider_timeout" and line["partial"] is True
    assert health_of(gw, model).get("recent_failures", 0) >= 1  # counted against the deployment


@pytest.mark.parametrize("model", ["idle", "a-idle"])
def test_stream_idle_timeout_s_spares_short_gaps_and_keep_alives(
    client: openai.OpenAI, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    faults = fault_for(model, fake_openai, fake_anthropic)
    expected = OPENAI_TEXT if model == "idle" else ANTHROPIC_TEXT
    faults.append({"gap_after": 2, "gap_s": 0.15})
    text, error, _, _ = stream_text(client, model)
    assert error is None and text == expected
    # Three times the idle timeout without an event, but with a keep-alive every 0.15 s: alive.
    faults.append({"gap_after": 2, "gap_s": 1.5, "keepalive_s": 0.15})
    text, error, elapsed, _ = stream_text(client, model)
    assert error is None and text == expected
    assert elapsed > 1.4


# --- timeout_s ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [{"hang_s": 4}, {"body_delay_s": 4}], ids=["slow-headers", "slow-body"])
def test_timeout_s_cuts_a_non_streamed_answer(client: openai.OpenAI, fake_openai: FakeOpenAI, fault: dict[str, Any]) -> None:
    fake_openai.faults.append(fault)
    err, elapsed = refused(client, "total", stream=False)
    assert_timeout_504(err, "timeout_s (1 s)")
    assert 0.9 < elapsed < 3.5, elapsed


def test_timeout_s_does_not_cut_a_healthy_stream_that_lasts_longer(
    client: openai.OpenAI, gw: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(8))
    fake_openai.reply.chunk_delay_s = 0.3  # about 2.4 s in all, more than twice timeout_s
    text, error, elapsed, headers = stream_text(client, "total")
    assert error is None and text == fake_openai.reply.content
    assert elapsed > 2.0, elapsed
    assert gw.access_line(headers["x-request-id"])["status"] == 200


def test_timeout_s_bounds_a_streams_first_event_without_first_byte_timeout_s(
    client: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.faults.append({"first_event_delay_s": 4})
    err, elapsed = refused(client, "total", stream=True)
    assert_timeout_504(err, "timeout_s (1 s)")
    assert 0.9 < elapsed < 3.5, elapsed


# --- max_stream_duration_s ---------------------------------------------------------------------


def test_max_stream_duration_s_caps_a_whole_stream(client: openai.OpenAI, gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(20))
    fake_openai.reply.chunk_delay_s = 0.2  # a healthy 4 s stream
    text, error, elapsed, headers = stream_text(client, "maxdur")
    assert error is not None and "max_stream_duration_s (1 s)" in error.message, error
    assert isinstance(error.body, dict) and error.body.get("code") == "max_stream_duration"
    assert text.startswith("w0 w1") and text != fake_openai.reply.content
    assert 0.9 < elapsed < 3.0, elapsed
    assert fake_openai.stream_closed.wait(3), "the upstream stream was not closed at the cap"
    assert headers["x-lockgate-attempts"] == "1"  # not resumed or retried
    line = gw.access_line(headers["x-request-id"])
    assert line["status"] == 504 and line["error_type"] == "provider_timeout" and line["partial"] is True
    # The operator's cap, not the deployment's failure: nothing counted against it.
    assert "recent_failures" not in health_of(gw, "maxdur")
