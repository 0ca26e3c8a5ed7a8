"""One price per deployment, from the outside: the cost strategy, the usage row and the PostHog event agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import basic_config, openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.posthog_capture import CaptureServer
from tests.harness import MASTER_KEY, GatewayProcess
from tests.usage_helpers import usage_config, wait_for_records

# 9 prompt + 7 completion tokens (the fake's reply): cheap = 9e-6 + 28e-6, dear = 90e-6 + 280e-6.
CHEAP = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0}
DEAR = {"input_cost_per_mtok": 10.0, "output_cost_per_mtok": 40.0}


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    yield server
    server.stop()


def test_strategy_usage_row_and_posthog_read_the_same_price(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], capture: CaptureServer, tmp_path: Path
) -> None:
    cfg = basic_config(fake_openai)
    # The dear one first in config order and priority: only the price can make the cheap one win.
    deps = [openai_deployment(fake_openai, id="dear", **DEAR), openai_deployment(fake_openai, id="cheap", **CHEAP)]
    cfg["models"] = [{"name": "gpt-priced", "strategy": "cost", "deployments": deps}]
    cfg["posthog"] = {"api_key": "phc_test_project_token", "host": capture.url, "flush_interval_s": 0.1, "flush_at": 1}
    db_url = f"sqlite:///{tmp_path / 'usage.db'}"
    gw = start_gateway(usage_config(cfg, db_url))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)

    done = client.chat.completions.with_raw_response.create(model="gpt-priced", messages=[{"role": "user", "content": "hello"}])
    request_id = done.headers["x-request-id"]
    assert done.headers["x-lockgate-deployment"] == "cheap"  # the cost strategy ranked by the price

    [row] = wait_for_records(db_url, 1)
    assert row["request_id"] == request_id and row["deployment"] == "cheap"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (9, 7)
    expected_in, expected_out = 9 * 1.0 / 1e6, 7 * 4.0 / 1e6
    assert row["cost_usd"] == pytest.approx(expected_in + expected_out, abs=1e-12)

    [event] = [e for e in capture.wait_for_events(1) if e["properties"].get("$ai_trace_id") == request_id]
    props = event["properties"]
    assert props["$ai_input_cost_usd"] == pytest.approx(expected_in, abs=1e-12)
    assert props["$ai_output_cost_usd"] == pytest.approx(expected_out, abs=1e-12)
    assert props["$ai_total_cost_usd"] == pytest.approx(row["cost_usd"], abs=1e-15)  # the same number as the store's
