"""The Redactor: configured secrets by value, their masked echoes, key shapes; and where secrets are found."""

from __future__ import annotations

import io
import logging

import pytest

from lockgate import redaction
from lockgate.config import parse_config
from lockgate.redaction import MASK, Redactor, configured_secrets

GROQ = "gsk_Q7wErTy9uIoP4aSdFgHjKlZx"
HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
META = "a.b*c+d?(e)[f]{g}|h^$\\z-9"
SHORT = "hunter2"


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([GROQ, HEX, META, SHORT, "gsk_Q7wErTy9"])


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"Incorrect API key provided: {GROQ}.", f"Incorrect API key provided: {MASK}."),
        (f"azure key={HEX}&x", f"azure key={MASK}&x"),
        (f"meta {META} end", f"meta {MASK} end"),
        (f"Incorrect API key provided: {GROQ[:7]}***{GROQ[-4:]}.", f"Incorrect API key provided: {MASK}."),
        (f"key {HEX[:8]}…", f"key {MASK}"),
        (f"ending ****{GROQ[-4:]} here", f"ending {MASK} here"),
        (f"pw {SHORT} ok", f"pw {MASK} ok"),
        (f"x{SHORT}x and {SHORT}9", f"x{SHORT}x and {SHORT}9"),  # a short secret only as a whole word
        ("sk-abcdef lg-12345678 Bearer tok eyJa.b.c", f"{MASK} {MASK} {MASK} {MASK}"),
        ("task-force and plain words", "task-force and plain words"),
    ],
)
def test_redacts_by_value_and_shape(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor(text) == expected


def test_longest_secret_wins(redactor: Redactor) -> None:
    # "gsk_Q7wErTy9" is a prefix of GROQ: the whole key goes, no tail is left behind.
    assert redactor(f"[{GROQ}]") == f"[{MASK}]"


def test_too_short_values_are_not_secrets() -> None:
    assert Redactor(["abc"])("abc abc") == "abc abc"


def test_cached_and_deep_agree(redactor: Redactor) -> None:
    assert redactor.cached(f"k {HEX}") == redactor.cached(f"k {HEX}") == f"k {MASK}"
    assert redactor.deep({"a": [GROQ, 1, (SHORT,)]}) == {"a": [MASK, 1, (MASK,)]}


def test_configured_secrets_are_found_everywhere() -> None:
    config = parse_config(
        {
            "auth": {"master_key": "sk-master-123456", "jwt": {"hs256_secret": "jwt-secret-value"}},
            "database": {"url": "postgresql+asyncpg://u:p%40ss-word@127.0.0.1/test"},
            "redis": {"url": "redis://:redispw123@127.0.0.1:6379/0"},
            "posthog": {"api_key": "phc_abcdefgh"},
            "models": [
                {
                    "name": "a",
                    "deployments": [
                        {
                            "provider": "openai",
                            "model": "m",
                            "api_key": GROQ,
                            "api_base": "https://x.example/v1?api-version=2024&api-key=qkey%2B1",
                            "headers": {"api-key": HEX, "Authorization": "Bearer hdrtoken", "X-Trace": "notsecret"},
                        }
                    ],
                }
            ],
        },
        env={},
    )
    found = set(configured_secrets(config))
    assert {
        "sk-master-123456",
        "jwt-secret-value",
        "p%40ss-word",
        "p@ss-word",
        "redispw123",
        "phc_abcdefgh",
        GROQ,
        HEX,
        "Bearer hdrtoken",
        "hdrtoken",
        "qkey%2B1",
        "qkey+1",
    } <= found
    assert "notsecret" not in found and "2024" not in found


def test_log_processor_and_stdlib_records_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    from lockgate.telemetry.logging import _redacting_record_factory, redact_event

    previous = redaction.active()
    redaction.install(Redactor([GROQ]))
    try:
        event = redact_event(None, "info", {"event": "x", "error": f"said {GROQ}", "nested": {"k": [GROQ]}, "n": 1})
        assert event == {"event": "x", "error": f"said {MASK}", "nested": {"k": [MASK]}, "n": 1}
        factory = _redacting_record_factory(logging.LogRecord)
        try:
            raise RuntimeError(f"upstream echoed {GROQ}")
        except RuntimeError as err:
            record = factory("t", logging.ERROR, __file__, 1, "failed %s %d", (err, 3), (type(err), err, err.__traceback__))
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.emit(record)
        out = stream.getvalue()
        assert "failed" in out and MASK in out and "3" in out and GROQ not in out
    finally:
        redaction.install(previous)
