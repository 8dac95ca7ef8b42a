"""PATCH bodies as the API server takes them: JSON merge patch (RFC 7386), JSON patch
(RFC 6902), and strategic merge patch, which for these types (no merge keys declared in
their schemas) is a merge patch: its `$patch`-style directives are dropped."""

from __future__ import annotations

import copy
import json
from typing import Any

from registry.errors import PatchNotApplicable, RequestInvalid, UnsupportedMediaType

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, JSON_PATCH, STRATEGIC)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(patch: Any) -> Any:
    """Strategic merge patch directives ($patch, $setElementOrder/..., $retainKeys,
    $deleteFromPrimitiveList/...) mean nothing for types without merge keys."""
    if isinstance(patch, dict):
        return {k: _without_directives(v) for k, v in patch.items() if not str(k).startswith("$")}
    if isinstance(patch, list):
        return [_without_directives(v) for v in patch]
    return patch


# -- RFC 6902 ------------------------------------------------------------------------------------


def _tokens(pointer: Any, op_index: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise RequestInvalid(f"the JSON patch operation {op_index} has an invalid path {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]] if pointer else []


def _index(container: list[Any], token: str, op_index: int, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or len(token) > 9:
        raise RequestInvalid(f"the JSON patch operation {op_index}: {token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchNotApplicable(f"the JSON patch operation {op_index}: index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str], op_index: int) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, op_index, allow_end=False)]
        else:
            raise PatchNotApplicable(f"the JSON patch operation {op_index}: /{'/'.join(tokens)} does not exist")
    return node


def _get(doc: Any, tokens: list[str], op_index: int) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, op_index), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, op_index, allow_end=False)]
    raise PatchNotApplicable(f"the JSON patch operation {op_index}: /{'/'.join(tokens)} does not exist")


def _remove(doc: Any, tokens: list[str], op_index: int) -> Any:
    if not tokens:
        raise PatchNotApplicable(f"the JSON patch operation {op_index} cannot remove the whole object")
    parent, last = _parent(doc, tokens, op_index), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, op_index, allow_end=False))
    raise PatchNotApplicable(f"the JSON patch operation {op_index}: /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any, op_index: int, replace: bool = False) -> Any:
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _parent(doc, tokens, op_index), tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchNotApplicable(f"the JSON patch operation {op_index}: /{'/'.join(tokens)} does not exist")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        index = _index(parent, last, op_index, allow_end=not replace)
        if replace:
            parent[index] = copy.deepcopy(value)
        else:
            parent.insert(index, copy.deepcopy(value))
    else:
        raise PatchNotApplicable(
            f"the JSON patch operation {op_index}: the parent of /{'/'.join(tokens)} is not a container"
        )
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test; all or nothing."""
    if not isinstance(operations, list):
        raise RequestInvalid("a JSON patch must be an array of operations")
    if len(operations) > 10_000:
        raise RequestInvalid("a JSON patch may hold at most 10000 operations")
    doc = copy.deepcopy(target)
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op:
            raise RequestInvalid(f"the JSON patch operation {i} has no 'op'")
        kind = op["op"]
        path = _tokens(op.get("path"), i)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise RequestInvalid(f"the JSON patch operation {i} ({kind}) needs a 'value'")
        if kind == "add":
            doc = _add(doc, path, op["value"], i)
        elif kind == "remove":
            _remove(doc, path, i)
        elif kind == "replace":
            doc = _add(doc, path, op["value"], i, replace=True)
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"), i)
            if kind == "move" and path[: len(source)] == source and len(path) > len(source):
                raise PatchNotApplicable(f"the JSON patch operation {i} moves a value into itself")
            value = _remove(doc, source, i) if kind == "move" else copy.deepcopy(_get(doc, source, i))
            doc = _add(doc, path, value, i)
        elif kind == "test":
            if _get(doc, path, i) != op["value"]:
                raise PatchNotApplicable(f"the JSON patch test at operation {i} failed: {op.get('path')}")
        else:
            raise RequestInvalid(f"the JSON patch operation {i} has an unknown op {kind!r}")
    return doc


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def apply_patch(target: dict[str, Any], body: bytes, content_type: str | None) -> Any:
    """The patched object; raises 415 for a patch type we do not take, 400 for a malformed patch,
    422 for one that does not apply to `target`."""
    kind = media_type(content_type)
    if kind not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}"
        )
    try:
        patch = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestInvalid("the patch is not valid JSON") from None
    if kind == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise RequestInvalid("a merge patch must be a JSON object")
    return merge_patch(target, _without_directives(patch) if kind == STRATEGIC else patch)
