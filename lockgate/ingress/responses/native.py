"""Responses pass-through as the ingress sees it: the body for a native deployment, the stream's framing.

A native deployment gets the client's body with only ``model`` rewritten. When the turn
continues a conversation that a native deployment does not hold (it was served by
translation, or by a deployment of another model), the stored conversation is sent as
input items instead of ``previous_response_id``: the upstream cannot know that id.
The events are relayed as the upstream sent them; the framing only watches them go by
(the response object for the store, the last sequence number), and when the upstream
breaks mid-stream it ends the stream itself with ``response.failed``, numbered on.
"""

from __future__ import annotations

from typing import Any

from lockgate.errors import GatewayError
from lockgate.ingress.responses.request import input_items
from lockgate.ingress.responses.response import new_id, shell
from lockgate.ingress.responses.stream import sse

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def native_body(
    original: dict[str, Any], upstream_model: str, history: list[dict[str, Any]], holds_previous: bool
) -> dict[str, Any]:
    """The body a native deployment gets: the client's, model rewritten (and the chain inlined when needed)."""
    body = {**original, "model": upstream_model}
    if history and not holds_previous:
        # Our ids (msg_…, fc_…) mean nothing upstream: items go without them.
        inlined = [{k: v for k, v in item.items() if k != "id"} for item in history]
        body["input"] = [*inlined, *input_items(original)]
        body.pop("previous_response_id", None)
    return body


class NativeFrames:
    """The pipeline's relay hooks for a pass-through stream: the upstream's own event bytes, as they came."""

    def __init__(self, request: dict[str, Any], model: str, record_extra: dict[str, Any]) -> None:
        self._request = request
        self._model = model
        self._record_extra = record_extra  # the request's record names the upstream's response id
        self._seq = -1  # the last sequence number relayed
        self._items: list[dict[str, Any]] = []  # output items finished so far (for response.failed)
        self.response: dict[str, Any] | None = None  # the latest response object the upstream sent
        self.terminal: str | None = None  # the terminal event relayed, if any

    def chunk(self, event: dict[str, Any]) -> bytes:
        seq = event.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq
        etype = event.get("type")
        if isinstance(event.get("response"), dict):
            self.response = event["response"]
            if etype == "response.created" and isinstance(self.response.get("id"), str):
                self._record_extra["response_id"] = self.response["id"]
            if etype in _TERMINAL:
                self.terminal = str(etype)
        elif etype == "response.output_item.done" and isinstance(event.get("item"), dict):
            self._items.append(event["item"])
        return getattr(event, "raw", b"")

    def done(self) -> bytes:
        return b""  # the upstream's terminal event was its last, already relayed

    def error(self, err: GatewayError) -> bytes:
        if self.terminal is not None:
            return b""  # the upstream ended the response itself (response.failed): nothing to add
        self.terminal = "response.failed"
        base = self.response or shell(self._request, response_id=new_id("resp"), model=self._model)
        failed = {**base, "status": "failed", "error": {"code": err.code or "server_error", "message": err.message}}
        failed["output"] = list(self._items)
        self._seq += 1
        return sse({"type": "response.failed", "sequence_number": self._seq, "response": failed})

    def finished_response(self) -> dict[str, Any] | None:
        """The response to store, once the upstream completed it (completed or incomplete)."""
        if self.terminal in ("response.completed", "response.incomplete"):
            return self.response
        return None
