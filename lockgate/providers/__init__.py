"""Upstream protocols behind one small seam (see base.py)."""

from __future__ import annotations

import aiohttp

from lockgate.config import AnthropicDeployment, Deployment, MockDeployment, OpenAIDeployment
from lockgate.providers.base import Provider


def build_provider(deployment: Deployment, session: aiohttp.ClientSession) -> Provider:
    """The provider for a deployment; imported lazily so unused protocols cost nothing."""
    # The config's union is discriminated on `provider`, so each class has exactly its provider's fields.
    if isinstance(deployment, OpenAIDeployment):
        from lockgate.providers.openai import OpenAIProvider

        return OpenAIProvider(deployment, session)
    if isinstance(deployment, MockDeployment):
        from lockgate.providers.mock import MockProvider

        return MockProvider(deployment)
    if isinstance(deployment, AnthropicDeployment):
        from lockgate.providers.anthropic import AnthropicProvider

        return AnthropicProvider(deployment, session)
    raise ValueError(f"unknown provider {deployment.provider!r}")
