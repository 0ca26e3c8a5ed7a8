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

from lockgate.errors import ProviderBadUsage, redact

# No single call uses more tokens than this (context windows are a few million at most);
# a count past it is the upstream's nonsense, and past 2**31 it would not fit the store's columns.
MAX_CALL_TOKENS = 100_000_000


def token_count(value: Any, field: str, *, strict: bool = True) -> int:
    """One upstream token count, checked: absent is 0; negative, non-integer or absurdly large is refused.

    ``strict=False`` (a stream already failing, counting what it cost so far) reads a bad count as 0.
    """
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CALL_TOKENS:
        return value
    if not strict:
        return 0
    shown = redact(repr(value)[:40])
    raise ProviderBadUsage(
        f"The upstream reported usage that cannot be true ({field}: {shown}); the request was not charged by it."
    )


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
        if not isinstance(usage, dict):
            raise ProviderBadUsage("The upstream reported usage that is not an object.")
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        if not isinstance(prompt_details, dict) or not isinstance(completion_details, dict):
            raise ProviderBadUsage("The upstream reported usage details that are not objects.")
        out = cls(
            prompt_tokens=token_count(usage.get("prompt_tokens"), "prompt_tokens"),
            completion_tokens=token_count(usage.get("completion_tokens"), "completion_tokens"),
            cached_tokens=token_count(prompt_details.get("cached_tokens"), "cached_tokens"),
            cache_creation_tokens=token_count(prompt_details.get("cache_creation_tokens"), "cache_creation_tokens"),
            reasoning_tokens=token_count(completion_details.get("reasoning_tokens"), "reasoning_tokens"),
        )
        if out.cached_tokens + out.cache_creation_tokens > out.prompt_tokens or out.reasoning_tokens > out.completion_tokens:
            raise ProviderBadUsage("The upstream reported usage whose parts exceed their totals.")
        return out


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
