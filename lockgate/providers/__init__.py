"""Upstream protocols behind one small seam (see base.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from lockgate.config import AnthropicDeployment, Deployment, MockDeployment, OpenAIDeployment
from lockgate.providers.base import Provider

if TYPE_CHECKING:
    from lockgate.providers.http import HttpPool


def pooled_provider(deployment: Deployment, pool: HttpPool) -> Provider:
    """The provider for a deployment, on the pool's session for its upstream (the mock needs none)."""
    session = pool.session_for(deployment) if deployment.provider != "mock" else None
    return build_provider(deployment, session)


def build_provider(deployment: Deployment, session: aiohttp.ClientSession | None) -> Provider:
    """The provider for a deployment; imported lazily so unused protocols cost nothing."""
    # The config's union is discriminated on `provider`, so each class has exactly its provider's fields.
    if isinstance(deployment, OpenAIDeployment):
        assert session is not None, "an HTTP provider needs a session"
        if deployment.responses == "native":
            from lockgate.providers.openai_responses import OpenAIResponsesProvider

            return OpenAIResponsesProvider(deployment, session)
        from lockgate.providers.openai import OpenAIProvider

        return OpenAIProvider(deployment, session)
    if isinstance(deployment, MockDeployment):
        from lockgate.providers.mock import MockProvider

        return MockProvider(deployment)
    if isinstance(deployment, AnthropicDeployment):
        from lockgate.providers.anthropic import AnthropicProvider

        assert session is not None, "an HTTP provider needs a session"
        return AnthropicProvider(deployment, session)
    raise ValueError(f"unknown provider {deployment.provider!r}")
