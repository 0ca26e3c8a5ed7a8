"""Upstream protocols behind one small seam (see base.py)."""

from __future__ import annotations

import aiohttp

from lockgate.config import Deployment
from lockgate.providers.base import Provider


def build_provider(deployment: Deployment, session: aiohttp.ClientSession) -> Provider:
    """The provider for a deployment; imported lazily so unused protocols cost nothing."""
    if deployment.provider == "openai":
        from lockgate.providers.openai import OpenAIProvider

        return OpenAIProvider(deployment, session)
    if deployment.provider == "mock":
        from lockgate.providers.mock import MockProvider

        return MockProvider(deployment)
    if deployment.provider == "anthropic":
        from lockgate.providers.anthropic import AnthropicProvider

        return AnthropicProvider(deployment, session)
    raise ValueError(f"unknown provider {deployment.provider!r}")
