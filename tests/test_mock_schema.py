"""The mock provider's schema-driven values: valid against the schema (checked by jsonschema), deterministic."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from lockgate.providers.mock_schema import key_word, value_for


class Step(BaseModel):
    explanation: str
    output: int


class Node(BaseModel):
    name: str
    children: list[Node]


class Answer(BaseModel):
    city: str
    kind: Literal["city", "town"]
    population: int
    share: float
    capital: bool
    steps: list[Step]
    note: str | None = None
    parent: Answer | None = None
    tree: Node


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    {"type": "object", "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["unit"]},
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 3},
        "minItems": 3,
        "uniqueItems": True,
    },
    {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 6},
    {"type": "integer", "exclusiveMaximum": -3},
    {"type": "string", "minLength": 12, "maxLength": 14},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "email"},
    {"type": ["null", "boolean"]},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "minItems": 2},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, {"required": ["b"]}]},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"const": 7}}, "required": ["x"]}]},
    {"type": "object", "minProperties": 2, "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}, "c": {}}},
    {"oneOf": [{"type": "string", "maxLength": 2}]},
    {
        "$defs": {
            "Leaf": {
                "type": "object",
                "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Leaf"}, {"type": "null"}]}},
                "required": ["next"],
            }
        },
        "$ref": "#/$defs/Leaf",
    },
    Answer.model_json_schema(),
    to_strict_json_schema(Answer),
    Node.model_json_schema(),
    to_strict_json_schema(Node),
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_values_are_valid_and_deterministic(schema: dict[str, Any]) -> None:
    value = value_for(schema, "Paris")
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert value_for(schema, "Paris") == value


def test_values_follow_enum_default_const_and_the_word() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "default": 3},
            "v": {"const": "v1"},
            "optional": {"type": "string"},
        },
        "required": ["city", "unit", "days", "v"],
    }
    assert value_for(schema, "Paris") == {"city": "Paris", "unit": "celsius", "days": 3, "v": "v1"}
    assert value_for(schema) == {"city": "mock", "unit": "celsius", "days": 3, "v": "v1"}
    strict = value_for(to_strict_json_schema(Answer), "Oslo")
    assert strict["city"] == "Oslo" and strict["kind"] == "city" and strict["parent"]["parent"] is None


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "wat"},
        {"$ref": "#/nowhere"},
        {"$ref": "#"},
        {"anyOf": []},
        {"allOf": [1]},
        {"properties": 3, "required": [1, "a"]},
        {"items": None, "minItems": "x"},
    ],
)
def test_odd_schemas_give_a_value_not_an_exception(schema: dict[str, Any]) -> None:
    value_for(schema)
    value_for("not a schema")


def test_key_word() -> None:
    assert key_word("What is the weather in Paris today?") == "Paris"
    assert key_word("what is the weather in rome") == "rome"
    assert key_word("Hello") == "Hello"
    assert key_word("  ?! ") is None
