"""The provider seam: a few methods every upstream protocol implements.

A provider translates an OpenAI-shaped request body into one upstream HTTP
call and the answer back into OpenAI shapes. It never retries (the router
does) and never touches the web layer. Errors are raised as
``lockgate.errors.GatewayError`` subclasses, with ``retryable`` set so the
router knows what it may try again.

Bodies handed to a provider already carry the upstream model id in ``model``;
what comes back carries whatever the upstream said, and the pipeline rewrites
``model`` to the public name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Usage:
    """Token counts of one upstream call, normalised to OpenAI's meaning.

    ``prompt_tokens`` includes cached and cache-creation tokens (OpenAI's
    convention); ``cached_tokens`` and ``cache_creation_tokens`` say how many of
    them were read from or written to a prompt cache; ``reasoning_tokens`` are
    part of ``completion_tokens``. ``estimated`` is true when the upstream never
    reported usage and the numbers were counted from what was relayed.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> "Usage | None":
        """Read an OpenAI `usage` object (chat, completions or embeddings)."""
        if not usage:
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            cache_creation_tokens=int(prompt_details.get("cache_creation_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass(slots=True)
class ProviderResult:
    """A complete (non-streamed) answer: an OpenAI-shaped body and its usage."""

    body: dict[str, Any]
    usage: Usage | None = None
    # Upstream response headers worth keeping (for example rate-limit hints).
    headers: dict[str, str] = field(default_factory=dict)


class ProviderStream(Protocol):
    """An open upstream stream of OpenAI chunk dicts.

    It is returned only once the upstream accepted the request (HTTP 2xx), so an
    upstream error surfaces as an exception before any byte reaches the client.
    Iterating yields ``chat.completion.chunk`` (or ``text_completion``) dicts as
    they arrive, including a usage chunk (``choices: []``) when the upstream
    reports usage; ``usage`` holds the final usage once known. Errors during
    iteration are raised as GatewayError. ``aclose()`` releases the upstream
    connection and must be safe to call twice.
    """

    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    """One upstream protocol. One instance per deployment, made at start-up."""

    name: str

    async def chat(self, body: dict[str, Any]) -> ProviderResult: ...

    async def chat_stream(self, body: dict[str, Any]) -> ProviderStream: ...

    async def completions(self, body: dict[str, Any]) -> ProviderResult: ...

    async def completions_stream(self, body: dict[str, Any]) -> ProviderStream: ...

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult: ...

    async def aclose(self) -> None: ...


def tokens_for_chars(chars: int) -> int:
    """The gateway's one token estimate: about four characters a token, rounded up."""
    return (chars + 3) // 4 if chars > 0 else 0


def estimate_tokens(text: str) -> int:
    """A fast token estimate of a text, for when nothing was reported."""
    return tokens_for_chars(len(text))


def openai_usage(usage: Usage, *, details: bool = True) -> dict[str, Any]:
    """The one rendering of Usage as OpenAI's usage object (``details``: chat's token details, not completions')."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if details:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
        if usage.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out
