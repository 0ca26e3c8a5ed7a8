"""docs/config-reference.md is generated from lockgate/config.py: it lists every field and never drifts."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from lockgate import config
from lockgate.config_docs import render

PAGE = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
REGENERATE = "python -m lockgate.config_docs > docs/config-reference.md"


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text() == render(), f"docs/config-reference.md is out of date; regenerate it with: {REGENERATE}"


def test_every_field_of_every_config_model_is_listed() -> None:
    text = render()
    models = [
        m for m in vars(config).values() if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == config.__name__
    ]
    assert len(models) > 15
    for model in models:
        if model.__name__.startswith("_") or model is config.DeploymentBase:
            continue
        for name in model.model_fields:
            listed = f"## `{name}" if model is config.Config else f"| `{name}` |"  # top-level keys are sections
            assert listed in text, (model.__name__, name)
    assert "| `max_body_bytes` | int | `33554432` |" in text
