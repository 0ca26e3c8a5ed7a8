"""SIGTERM through the real `lockgate serve`: the stream in flight completes, its usage row is written,
exit 0; a second SIGTERM ends the drain at once."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest
from openai import OpenAI

MASTER = "sk-test-master-0123456789"


def _config(tmp_path) -> dict:
    return {
        "auth": {"master_key": MASTER},
        "database": {"url": f"sqlite:///{tmp_path / 'drain.db'}"},
        "models": [
            {
                "name": "slow",
                "deployments": [
                    {"provider": "mock", "model": "slow", "mock_response": " ".join(["w"] * 30), "mock_tokens_per_s": 10}
                ],
            }
        ],
    }


def _stream(gw, chunks: list, errors: list) -> None:
    client = OpenAI(base_url=gw.url, api_key=MASTER, max_retries=0)
    try:
        with client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}], stream=True) as s:
            for c in s:
                chunks.append(c)
    except Exception as err:  # the forced exit cuts it
        errors.append(err)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_stream_finish_and_writes_usage(start_gateway, tmp_path, workers):
    gw = start_gateway(_config(tmp_path), env={"LOCKGATE_DRAIN_SECONDS": "20"}, workers=workers)
    chunks, errors = [], []
    t = threading.Thread(target=_stream, args=(gw, chunks, errors))
    t.start()
    while len(chunks) < 3:
        time.sleep(0.05)
    gw.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert not errors, errors
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() == ["w"] * 30
    assert gw.proc.wait(30) == 0, gw.logs()
    with sqlite3.connect(tmp_path / "drain.db") as db:
        assert db.execute("SELECT count(*) FROM usage_records").fetchone()[0] == 1


def test_a_second_sigterm_stops_the_drain(start_gateway, tmp_path):
    gw = start_gateway(_config(tmp_path), env={"LOCKGATE_DRAIN_SECONDS": "60"})
    chunks, errors = [], []
    t = threading.Thread(target=_stream, args=(gw, chunks, errors))
    t.start()
    while len(chunks) < 3:
        time.sleep(0.05)
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(10)
    assert time.monotonic() - started < 2.5, "the second SIGTERM did not end the drain"
    t.join(10)
    assert len(chunks) < 30
