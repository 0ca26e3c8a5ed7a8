"""The pipeline's observation seam: what a tracer (or any observer) may wrap.

A Pipeline built without hooks never calls one (tracing off costs nothing);
with hooks it runs each stage inside ``stage``, the request inside
``request``, and the router call inside ``route`` with every attempt wrapped by
``attempt``. Hooks observe only: they must not change what a stage returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from lockgate.context import RequestContext
    from lockgate.pipeline import Outcome
    from lockgate.router import Attempt, ModelRoute, Upstream

T = TypeVar("T")


class PipelineHooks(Protocol):
    async def request(self, ctx: RequestContext, handle: Awaitable[Outcome]) -> Outcome:
        """Run the whole request (``handle``), e.g. inside the request's span; may wrap a stream's chunks."""
        ...

    def stage(self, name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
        """One stage (authenticate, parse, resolve, admit …) runs inside this."""
        ...

    def route(self, route: ModelRoute, attempts: list[Attempt]) -> AbstractContextManager[Any]:
        """The router's call (every attempt of the request) runs inside this."""
        ...

    def attempt(
        self, ctx: RequestContext, attempts: list[Attempt], op: Callable[[Upstream], Awaitable[T]]
    ) -> Callable[[Upstream], Awaitable[T]]:
        """The per-attempt upstream call, wrapped."""
        ...
