"""Configs and helpers shared by the tests/test_telemetry_*.py files."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import basic_config, openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI

PRICES = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}  # 9 + 7 tokens → 9e-6 + 14e-6 USD


def telemetry_config(fake: FakeOpenAI, **top: Any) -> dict[str, Any]:
    """basic_config with prices on gpt-test, a two-deployment model for failover, no back-off or cool-down."""
    cfg = basic_config(fake, **top)
    cfg["models"][0] = {"name": "gpt-test", "deployments": [openai_deployment(fake, first_byte_timeout_s=3, **PRICES)]}
    cfg["models"].append(
        {
            "name": "gpt-failover",
            "deployments": [
                openai_deployment(fake, id="primary", **PRICES),
                openai_deployment(fake, id="secondary", **PRICES),
            ],
        }
    )
    cfg["router"] = {"max_attempts": 3, "backoff": {"base_s": 0, "max_s": 0}, "cooldown": {"failures": 1000}}
    return cfg


def chat_body(model: str = "gpt-test", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **extra}


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for (sample, sample_labels), v in samples.items():
        if sample == name and all((k, val) in sample_labels for k, val in labels.items()):
            total += v
    return total
