"""A deterministic value for a JSON schema: the mock provider's tool-call arguments and structured output.

Pure and small on purpose: it covers what tools and `response_format` schemas use in practice
(object, array, string, number, integer, boolean, null, enum, const, default, required, nested
objects, `$ref` into `$defs`, anyOf/oneOf/allOf, string formats, numeric bounds), which is what
the SDKs' pydantic and zod schemas produce. It is not a validator: a schema nothing can satisfy
(a `pattern`, contradictory bounds) gets a best effort, never an exception.
"""

from __future__ import annotations

import math
import re
from typing import Any

_MAX_DEPTH = 12  # a recursive schema (a tree of nodes) stops here with the smallest value it allows

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "duration": "PT1M",
}

_WORD = re.compile(r"[^\W_][\w'-]*")


def key_word(text: str) -> str | None:
    """The word of a message a string argument takes: its last capitalised word after the first
    (a name, a city: "What is the weather in Paris?" -> "Paris"), else its last word."""
    words = [w.strip("'-") for w in _WORD.findall(text)]
    words = [w for w in words if w]
    if not words:
        return None
    named = [w for w in words[1:] if w[0].isupper()]
    return named[-1] if named else words[-1]


def value_for(schema: Any, word: str | None = None) -> Any:
    """A value valid against `schema` (a JSON schema dict), the same every time for the same input."""
    return _Generator(schema if isinstance(schema, dict) else {}, word or "mock").value(schema, 0)


class _Generator:
    def __init__(self, root: dict[str, Any], word: str) -> None:
        self._root = root
        self._word = word
        self._expanding: list[str] = []  # the $refs being expanded: a way back into one is recursion

    def _recursive(self, schema: Any) -> bool:
        return isinstance(schema, dict) and schema.get("$ref") in self._expanding

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        node: Any = self._root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return {k: v for k, v in schema.items() if k != "$ref"}
        # Keywords beside a $ref (a description, a default) apply too.
        return {**node, **{k: v for k, v in schema.items() if k != "$ref"}}

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict) or depth > 3 * _MAX_DEPTH:
            return self._word  # (the depth guard is a backstop for a schema that only refers to itself)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            self._expanding.append(ref)
            try:
                return self._value(self._resolve(schema), depth)
            finally:
                self._expanding.pop()
        return self._value(schema, depth)

    def _value(self, schema: dict[str, Any], depth: int) -> Any:
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        if "default" in schema:
            return schema["default"]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                # A non-null option first (Optional[X] answers an X), unless it recurses (a tree ends in null).
                ranked = sorted(
                    options, key=lambda o: (self._recursive(o), _is_null(self._resolve(o) if isinstance(o, dict) else o))
                )
                chosen = ranked[0]
                rest = {k: v for k, v in schema.items() if k != key}
                return self.value({**rest, **chosen} if isinstance(chosen, dict) else chosen, depth + 1)
        if isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, dict):
                    merged = _merge(merged, self._resolve(part))
            return self.value(merged, depth + 1)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return _number(schema, integer=True)
        if kind == "number":
            return _number(schema, integer=False)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = _get(schema, "properties", dict, {})
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        if depth >= _MAX_DEPTH:
            return {}
        out: dict[str, Any] = {}
        for name in required:
            out[name] = self.value(properties.get(name, True), depth + 1)
        min_props = schema.get("minProperties")
        if isinstance(min_props, int):  # fill optional properties, in order, up to the minimum
            for name, sub in properties.items():
                if len(out) >= min_props:
                    break
                out.setdefault(name, self.value(sub, depth + 1))
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix: list[Any] = _get(schema, "prefixItems", list, [])
        low: int = _get(schema, "minItems", int, 0)
        high: int | None = _get(schema, "maxItems", int, None)
        items = schema.get("items", True)
        count = max(low, len(prefix), 0 if depth >= _MAX_DEPTH or self._recursive(items) else 1)
        if high is not None:
            count = min(count, high)
        out = [self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)]
        if schema.get("uniqueItems") and len(out) > 1:
            step = items.get("multipleOf", 1) if isinstance(items, dict) else 1
            out = [_distinct(v, i, step if isinstance(step, int | float) else 1) for i, v in enumerate(out)]
        return out

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        text = _FORMATS.get(fmt, self._word) if isinstance(fmt, str) else self._word
        low: int = _get(schema, "minLength", int, 0)
        high: int | None = _get(schema, "maxLength", int, None)
        if len(text) < low:
            text = text + "x" * (low - len(text))
        if high is not None and len(text) > high:
            text = text[:high]
        return text


def _get(schema: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """schema[key] when it has the expected type (a bool is no int here), else the default."""
    value = schema.get(key)
    return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else default


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "null" or schema.get("const", ...) is None)


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first that is not null
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if isinstance(a.get("properties"), dict) and isinstance(b.get("properties"), dict):
        out["properties"] = {**a["properties"], **b["properties"]}
    if isinstance(a.get("required"), list) and isinstance(b.get("required"), list):
        out["required"] = list(dict.fromkeys(a["required"] + b["required"]))
    return out


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """1 (or 1.5), moved into [minimum, maximum] and onto multipleOf."""
    low = _bound(schema, "minimum", "exclusiveMinimum", integer, +1)
    high = _bound(schema, "maximum", "exclusiveMaximum", integer, -1)
    value: float = 1 if integer else 1.5
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        value = math.ceil(value / step) * step
        if high is not None and value > high:
            value -= step
    return int(value) if integer else float(value)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, integer: bool, direction: int) -> float | None:
    value = schema.get(inclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.ceil(value) if integer and direction > 0 else math.floor(value) if integer else value
    value = schema.get(exclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if integer:
            return math.floor(value) + 1 if direction > 0 else math.ceil(value) - 1
        return value + direction * max(abs(value) * 1e-6, 1e-6)
    return None


def _distinct(value: Any, i: int, step: float) -> Any:
    """Make the i-th item of a uniqueItems array differ from the others, keeping its type (best effort on bounds)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value + i * step
    if isinstance(value, str):
        return value if i == 0 else f"{value}{i + 1}"
    return value
