"""OpenAPI v3 schemas in a compact notation, and the check of an incoming object against
one as the API server's strict field validation does: every unknown field and every
value of the wrong type, each named by its path."""

from __future__ import annotations

from typing import Any

from registry.kube.values import type_name

Schema = dict[str, Any]
REF = "#/components/schemas/"


def obj(properties: dict[str, Schema], description: str = "", required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if description:
        schema["description"] = description
    if required:
        schema["required"] = list(required)
    return schema


def string(description: str = "", enum: tuple[str, ...] = (), fmt: str = "") -> Schema:
    schema: Schema = {"type": "string"}
    if description:
        schema["description"] = description
    if enum:
        schema["enum"] = list(enum)
    if fmt:
        schema["format"] = fmt
    return schema


def integer(description: str = "") -> Schema:
    return {"type": "integer", "format": "int64", **({"description": description} if description else {})}


def boolean(description: str = "") -> Schema:
    return {"type": "boolean", **({"description": description} if description else {})}


def array(items: Schema, description: str = "") -> Schema:
    return {"type": "array", "items": items, **({"description": description} if description else {})}


def string_map(description: str = "") -> Schema:
    schema: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
    if description:
        schema["description"] = description
    return schema


def free_form(description: str = "") -> Schema:
    """Any JSON object, kept as given."""
    schema: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if description:
        schema["description"] = description
    return schema


def ref(name: str, description: str = "") -> Schema:
    """A reference to a component schema (wrapped in allOf so it may carry a description)."""
    schema: Schema = {"allOf": [{"$ref": REF + name}]}
    if description:
        schema["description"] = description
    return schema


def check(value: Any, schema: Schema, components: dict[str, Schema], path: str = "") -> list[tuple[str, str]]:
    """Every problem of `value` against `schema`, as (field path, message); [] when it fits.
    Null is accepted anywhere (an omitted value)."""
    problems: list[tuple[str, str]] = []
    _check(value, schema, components, path, problems)
    return problems


def _resolve(schema: Schema, components: dict[str, Schema]) -> Schema:
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"][len(REF) :]]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _check(value: Any, schema: Schema, components: dict[str, Schema], path: str, problems: list) -> None:
    schema = _resolve(schema, components)
    if value is None or len(problems) > 100:
        return
    kind = schema.get("type")
    where = path or "<root>"
    if kind == "object":
        if not isinstance(value, dict):
            problems.append((where, f"expected an object, got {type_name(value)}"))
            return
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if properties is not None and key in properties:
                _check(item, properties[key], components, child, problems)
            elif isinstance(extra, dict):
                _check(item, extra, components, child, problems)
            elif not isinstance(key, str) or properties is not None:
                problems.append((child, "unknown field"))
    elif kind == "array":
        if not isinstance(value, list):
            problems.append((where, f"expected an array, got {type_name(value)}"))
            return
        for i, item in enumerate(value):
            _check(item, schema.get("items", {}), components, f"{path}[{i}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append((where, f"expected a string, got {type_name(value)}"))
        elif "enum" in schema and value not in schema["enum"]:
            problems.append((where, f"unsupported value {value!r}: supported values: {', '.join(schema['enum'])}"))
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((where, f"expected an integer, got {type_name(value)}"))
        elif not -(2**63) <= value < 2**63:
            problems.append((where, "out of range for a 64-bit integer"))
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((where, f"expected a number, got {type_name(value)}"))
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append((where, f"expected a boolean, got {type_name(value)}"))
