"""The configuration reference (docs/config-reference.md), generated from lockgate/config.py's models.

    python -m lockgate.config_docs > docs/config-reference.md

Every field: its YAML path, type, default and description. tests/test_config_docs.py fails when the
committed page differs from this output.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lockgate.config import AnthropicDeployment, Config, MockDeployment, OpenAIDeployment

_DEPLOYMENTS: tuple[type[BaseModel], ...] = (OpenAIDeployment, AnthropicDeployment, MockDeployment)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field holds (through Optional, list, dict and the deployments' union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(m for m in _models_in(arg) if m not in out)
    return out


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"map {_type_name(key)} → {_type_name(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object" if annotation not in _DEPLOYMENTS else "deployment"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "—"
    return f"`{value!r}`".replace("|", "\\|")


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for name, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "min length")):
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _section(title: str, model: type[BaseModel], lines: list[str], seen: set[str]) -> None:
    lines += [f"## `{title}`", ""]
    doc = (model.__doc__ or "").strip()
    if doc and model.__module__ == "lockgate.config":
        lines += [doc.splitlines()[0], ""]
    lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|") + _constraints(field)
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description.strip()} |")
        for inner in _models_in(field.annotation):
            origin = typing.get_origin(field.annotation)
            path = f"{title}.{name}" + ("[]" if origin is list else ".<name>" if origin is dict else "")
            if inner in _DEPLOYMENTS:
                path = f"{title}.{name}[] (provider: {inner.model_fields['provider'].annotation.__args__[0]})"  # type: ignore[union-attr]
            nested.append((path, inner))
    lines.append("")
    for path, inner in nested:
        if path not in seen:
            seen.add(path)
            _section(path, inner, lines, seen)


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every key of `lockgate.yaml`, generated from `lockgate/config.py` "
        "(`python -m lockgate.config_docs > docs/config-reference.md`). Unknown keys are refused; "
        "`${ENV}` and `${ENV:-default}` are interpolated. Sections are written as YAML paths; `[]` marks a list item, `<name>` a key of your choosing.",
        "",
    ]
    seen: set[str] = set()
    for name, field in Config.model_fields.items():
        for model in _models_in(field.annotation):
            path = name + ("[]" if typing.get_origin(field.annotation) is list else "")
            seen.add(path)
            _section(path, model, lines, seen)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
