"""A routed stream: reports mid-stream breaks to the router and, when the model opts in
(``stream_resume: true``), resumes on another deployment so the client sees one stream.

Resuming sends the conversation again with the text already delivered as a final
assistant message (a prefix the next deployment continues; Anthropic treats it
as prefill). The resumed stream's role chunk is dropped and its chunks carry the
first stream's id, so the client's SDK sees nothing but more text. Only chat
streams that delivered plain text (no tool calls, one choice) are resumed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from lockgate.errors import GatewayError
from lockgate.providers.base import ProviderStream, Usage

if TYPE_CHECKING:
    from lockgate.router import Attempt, ModelRoute, Router, Upstream

log = structlog.get_logger("lockgate.router")

Opened = tuple[ProviderStream, AsyncIterator[dict[str, Any]], "dict[str, Any] | None"]
Reopen = Callable[[dict[str, Any]], Callable[["Upstream"], Awaitable[Opened]]]


class RoutedStream:
    """Wraps the winning upstream stream; the pipeline's relay reads it like any ProviderStream."""

    def __init__(
        self,
        router: "Router",
        route: "ModelRoute",
        opened: Opened,
        attempts: list["Attempt"],
        *,
        body: dict[str, Any] | None = None,
        reopen: Reopen | None = None,
    ) -> None:
        self._router, self._route, self._attempts = router, route, attempts
        self._stream, self._chunks, first = opened
        self._first = first
        self._body, self._reopen = body, reopen
        self._delivered: list[str] = []
        self._resumable = reopen is not None and body is not None and isinstance(body.get("messages"), list)
        self._id: Any = first.get("id") if first else None
        self._closed = False
        self._trim = False  # drop leading whitespace of the resumed text (the client has it already)
        self.resumes = 0

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage

    @property
    def upstream(self) -> "Upstream":
        return self._attempts[-1].upstream

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._run()

    def _note(self, chunk: dict[str, Any]) -> None:
        if not self._resumable:
            return
        choices: list[Any] = chunk.get("choices") or []
        if len(choices) > 1:
            self._resumable = False
        for choice in choices:
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call") or choice.get("finish_reason"):
                self._resumable = False  # a finished or tool-calling answer is not resumed
            text = delta.get("content")
            if text:
                self._delivered.append(text)

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        if self._first is not None:
            self._note(self._first)
        skip_role = False
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                return
            except GatewayError as err:
                attempt = self._attempts[-1]
                attempt.error = err
                self._router.failed(attempt.upstream, err)
                if not (self._resumable and err.retryable and self._delivered):
                    raise
                await self._resume(err)
                skip_role = True
                continue
            if skip_role:
                skip_role = False
                if _is_role_only(chunk):
                    continue
            if self._trim and not self._trim_leading(chunk):
                continue
            if self._id is not None and "id" in chunk:
                chunk["id"] = self._id
            self._note(chunk)
            yield chunk

    def _trim_leading(self, chunk: dict[str, Any]) -> bool:
        """Strip whitespace the resumed deployment repeats; False when nothing is left to send."""
        choices: list[Any] = chunk.get("choices") or []
        delta = choices[0].get("delta") if len(choices) == 1 else None
        text = delta.get("content") if delta else None
        if not isinstance(text, str):
            return True
        stripped = text.lstrip()
        if not stripped and not choices[0].get("finish_reason"):
            return False
        self._trim = False
        delta["content"] = stripped  # type: ignore[index]
        return True

    async def _resume(self, err: GatewayError) -> None:
        """Open the rest of the answer on another deployment (raises the error if none can)."""
        assert self._reopen is not None and self._body is not None
        router, broken = self._router, self._attempts[-1].upstream
        max_resumes = router.max_attempts - 1
        deadline = self._attempts[0].at + router.deadline_s
        if self.resumes >= max_resumes or router.clock() >= deadline:
            raise err
        await self._close_current()
        delivered = "".join(self._delivered)
        # Anthropic refuses a prefill that ends in whitespace; the model adds it back.
        prefix = delivered.rstrip()
        self._trim = prefix != delivered
        body = {**self._body, "messages": [*self._body["messages"], {"role": "assistant", "content": prefix}]}
        opened = await router.call(self._route, self._reopen(body), self._attempts, hold=True, avoid=(broken,), deadline=deadline)
        self.resumes += 1
        self._closed = False
        self._stream, self._chunks, first = opened
        log.info("stream_resumed", deployment=self.upstream.id, after_chars=len(delivered), error=err.kind)
        if first is not None and not _is_role_only(first):
            # Put the first chunk back in front of the rest.
            self._chunks = _prepend(first, self._chunks)

    async def _close_current(self) -> None:
        if not self._closed:
            self._closed = True
            await self._stream.aclose()
            self._router.release(self.upstream)

    async def aclose(self) -> None:
        await self._close_current()


def _is_role_only(chunk: dict[str, Any]) -> bool:
    choices: list[Any] = chunk.get("choices") or []
    if len(choices) != 1:
        return False
    delta = choices[0].get("delta") or {}
    return bool(delta.get("role")) and not delta.get("content") and not delta.get("tool_calls")


async def _prepend(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for chunk in rest:
        yield chunk
