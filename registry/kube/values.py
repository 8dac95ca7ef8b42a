"""Helpers shared by the operator resources (ImagePruner, Config): JSON type names in
validation messages, JSON-only checks of free-form fields, and condition transition times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def check_json(value: Any, where: str, add: Callable[[str, str], None]) -> None:
    """Free-form fields are stored as JSON: YAML timestamps or binary values are refused
    (each through `add(field, message)`)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                add(where, f"keys must be strings, not {k!r}")
            else:
                check_json(v, f"{where}.{k}", add)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json(v, f"{where}[{i}]", add)
    elif value is not None and not isinstance(value, str | int | float | bool):
        add(where, f"unsupported value of type {type(value).__name__}")


def with_transitions(
    wanted: dict[str, tuple[str, str, str]], previous: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Conditions from {type: (status, reason, message)}; lastTransitionTime stays that of
    the previous condition of the type while its status is unchanged, else it is `now`."""
    old = {c.get("type"): c for c in previous}
    result = []
    for type_, (status, reason, message) in wanted.items():
        before = old.get(type_)
        since = before["lastTransitionTime"] if before and before.get("status") == status else now
        result.append(
            {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
        )
    return result


TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


def check_singleton(
    body: dict[str, Any], api_version: str, kind: str, name: str, add: Callable[[str, str], None]
) -> None:
    """The parts of a singleton object's PUT body other than its spec: known top-level fields,
    its apiVersion and kind, its one name, labels and annotations as maps of strings."""
    for key in sorted(str(k) for k in body if k not in TOP_LEVEL):
        add(key, f"unknown field (known: {', '.join(TOP_LEVEL)})")
    if body.get("apiVersion") not in (None, api_version):
        add("apiVersion", f"must be {api_version}, not {body['apiVersion']!r}")
    if body.get("kind") not in (None, kind):
        add("kind", f"must be {kind}, not {body['kind']!r}")
    metadata = body.get("metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        add("metadata", f"must be an object, not {type_name(metadata)}")
        return
    if metadata.get("name") not in (None, name):
        add("metadata.name", f"the only {kind} is named {name!r}, not {metadata['name']!r}")
    for key in ("labels", "annotations"):
        value = metadata.get(key)
        if value is not None and (
            not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            add(f"metadata.{key}", "must be a map of strings")


def singleton_metadata(
    name: str,
    uid: str,
    resource_version: int,
    generation: int,
    created: str,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    **extra: Any,
) -> dict[str, Any]:
    """metadata of a stored singleton object as the API shows it."""
    return {
        "name": name,
        "uid": uid,
        "resourceVersion": str(resource_version),
        "generation": generation,
        "creationTimestamp": created,
        **extra,
        **({"labels": dict(labels)} if labels else {}),
        **({"annotations": dict(annotations)} if annotations else {}),
    }
