"""Upstream connection pools: deployments on one base URL with the same pool settings share one pool."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from lockgate.config import Deployment
from lockgate.providers.http import HttpPool


def deployment(**fields: Any) -> Any:
    return TypeAdapter(Deployment).validate_python({"provider": "openai", "model": "m", **fields})


async def test_one_pool_per_base_url_and_settings() -> None:
    pool = HttpPool()
    a = pool.session_for(deployment(model="a", api_base="http://127.0.0.1:9/v1", api_key="k1"))
    b = pool.session_for(deployment(model="b", api_base="http://127.0.0.1:9/v1", api_key="k2"))
    other_host = pool.session_for(deployment(model="a", api_base="http://127.0.0.2:9/v1"))
    other_limit = pool.session_for(deployment(model="a", api_base="http://127.0.0.1:9/v1", max_connections=5))
    anthropic = pool.session_for(TypeAdapter(Deployment).validate_python({"provider": "anthropic", "model": "c"}))
    try:
        assert a is b  # credentials travel per request, not per pool
        assert len({id(a), id(other_host), id(other_limit), id(anthropic)}) == 4
        assert other_limit.connector is not None and other_limit.connector.limit == 5
    finally:
        await pool.aclose()
    assert a.closed and other_host.closed
