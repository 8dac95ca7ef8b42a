"""PATCH bodies as the API server takes them: JSON merge patch (RFC 7386), JSON patch
(RFC 6902), and strategic merge patch, driven by the type's schema: a list whose schema
declares `x-kubernetes-patch-strategy: merge` merges item by item (by its
`x-kubernetes-patch-merge-key` for objects), any other list is replaced whole, as kubectl
expects when it builds `kubectl apply` patches from the same OpenAPI document."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from registry.errors import PatchNotApplicable, RequestInvalid, UnsupportedMediaType
from registry.kube.meta import COMPONENTS as META_COMPONENTS
from registry.kube.schema import REF, Schema

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, JSON_PATCH, STRATEGIC)

PATCH_MERGE_KEY = "x-kubernetes-patch-merge-key"
PATCH_STRATEGY = "x-kubernetes-patch-strategy"
DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"


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


# -- strategic merge patch -----------------------------------------------------------------------


def keyed_list(schema: Schema, key: str) -> Schema:
    """An array schema whose items (objects) are told apart by `key`: a strategic merge patch
    merges them item by item, and the list is a map for server-side apply."""
    return {
        **schema,
        PATCH_MERGE_KEY: key,
        PATCH_STRATEGY: "merge",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": [key],
    }


def _resolve(schema: Schema | None, components: Mapping[str, Schema]) -> Schema:
    """The schema itself, through `$ref` and single-entry `allOf` (an unknown reference: {})."""
    while schema:
        if "$ref" in schema:
            schema = components.get(str(schema["$ref"]).removeprefix(REF))
        elif len(schema.get("allOf") or ()) == 1:
            schema = schema["allOf"][0]
        else:
            return schema
    return {}


def field_meta(
    schema: Schema | None, key: str, components: Mapping[str, Schema]
) -> tuple[Schema | None, set[str], str]:
    """The schema of the field `key` of an object schema, its patch strategies and merge key
    (read where kubectl reads them: on the property, else on what it refers to)."""
    resolved = _resolve(schema, components)
    field = (resolved.get("properties") or {}).get(key)
    if field is None and isinstance(resolved.get("additionalProperties"), dict):
        field = resolved["additionalProperties"]
    if field is None:
        return None, set(), ""
    target = _resolve(field, components)
    strategy = field.get(PATCH_STRATEGY, target.get(PATCH_STRATEGY)) or ""
    merge_key = field.get(PATCH_MERGE_KEY, target.get(PATCH_MERGE_KEY)) or ""
    return field, {s.strip() for s in str(strategy).split(",") if s.strip()}, str(merge_key)


def _items(schema: Schema | None, components: Mapping[str, Schema]) -> Schema | None:
    items = _resolve(schema, components).get("items")
    return items if isinstance(items, dict) else None


def _identity(value: Any, merge_key: str) -> str:
    """What tells list items apart: the merge key's value for objects, else the value."""
    if merge_key and isinstance(value, dict):
        value = value.get(merge_key)
    return json.dumps(value, sort_keys=True)


def _directive_list(patch: dict[str, Any], key: str) -> list[Any]:
    value = patch[key]
    if not isinstance(value, list):
        raise RequestInvalid(f"the strategic merge patch directive {key[:80]} must be a list")
    return value


def _parallel_lists(patch: dict[str, Any], prefix: str) -> dict[str, list[Any]]:
    """The `prefix<field>` directives of a patch object, by field."""
    return {k.removeprefix(prefix): _directive_list(patch, k) for k in patch if k.startswith(prefix)}


def _merge_map(
    original: Any, patch: dict[str, Any], schema: Schema | None, components: Mapping[str, Schema]
) -> dict[str, Any] | None:
    """`patch` applied to the object `original` (anything else counts as {}), which it may
    change; None when the patch deletes the object (`$patch: delete`)."""
    directive = patch.pop(DIRECTIVE, None)
    if directive == "delete":
        return None
    if directive not in (None, "replace"):
        raise RequestInvalid(f"unknown strategic merge patch directive $patch: {str(directive)[:60]!r}")
    result: dict[str, Any] = original if isinstance(original, dict) and directive is None else {}
    for key in patch:
        if key.startswith("$") and key != RETAIN_KEYS and not key.startswith((SET_ORDER, DELETE_FROM)):
            raise RequestInvalid(f"unknown strategic merge patch directive {key[:60]!r}")
    live = {k: v for k, v in result.items() if isinstance(v, list)}  # for $setElementOrder
    if RETAIN_KEYS in patch:  # the object keeps only these fields; the patch may set no other
        retain = _directive_list(patch, RETAIN_KEYS)
        if any(v is not None and not k.startswith("$") and k not in retain for k, v in patch.items()):
            raise RequestInvalid("the strategic merge patch sets a field that $retainKeys does not list")
        for key in [k for k in result if k not in retain]:
            del result[key]
    for key, gone in _parallel_lists(patch, DELETE_FROM).items():
        if isinstance(result.get(key), list):
            drop = {_identity(v, "") for v in gone}
            result[key] = [v for v in result[key] if _identity(v, "") not in drop]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        field, strategies, merge_key = field_meta(schema, key, components)
        current = result.get(key)
        if isinstance(value, dict):
            value = _merge_map({} if "replace" in strategies else current, value, field, components)
        elif isinstance(value, list) and "merge" in strategies:
            value = _merge_list(current if isinstance(current, list) else [], value, field, merge_key, components)
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    for key, order in _parallel_lists(patch, SET_ORDER).items():
        if isinstance(result.get(key), list):
            merge_key = field_meta(schema, key, components)[2]
            result[key] = _set_order(result[key], order, live.get(key, []), merge_key)
    return result


def _merge_list(
    original: list[Any], patch: list[Any], schema: Schema | None, merge_key: str, components: Mapping[str, Schema]
) -> list[Any]:
    """A list with the merge strategy: objects are matched by `merge_key` and merged, new ones
    appended, `$patch: delete` items removed, a `$patch: replace` item replaces the list;
    primitives are added once each."""
    if any(isinstance(v, list) for v in (*original, *patch)):
        raise PatchNotApplicable("a strategic merge patch cannot merge lists of lists")
    if not merge_key:
        if any(isinstance(v, dict) for v in patch):
            raise PatchNotApplicable("a strategic merge patch cannot merge objects in a list without a merge key")
        merged = list({_identity(v, ""): v for v in (*original, *patch)}.values())
        return _normalize_order(merged, patch, original, "")
    changes: list[dict[str, Any]] = []
    for item in patch:
        if not isinstance(item, dict):
            raise RequestInvalid(f"the items of a list merged by {merge_key!r} must be objects")
        directive = item.get(DIRECTIVE)
        if directive == "replace":
            original = []  # the other items are the list
        elif directive not in (None, "delete"):
            raise RequestInvalid(f"unknown strategic merge patch directive $patch: {str(directive)[:60]!r}")
        elif merge_key not in item:
            raise RequestInvalid(f"an item of a list merged by {merge_key!r} has no {merge_key!r}")
        elif directive == "delete":
            gone = _identity(item, merge_key)
            original = [v for v in original if _identity(v, merge_key) != gone]
        else:
            changes.append(item)
    item_schema = _items(schema, components)
    merged = list(original)
    index = {_identity(v, merge_key): i for i, v in reversed(list(enumerate(merged)))}
    for item in changes:
        at = index.setdefault(_identity(item, merge_key), len(merged))
        if at == len(merged):
            merged.append({})
        merged[at] = _merge_map(merged[at], item, item_schema, components)
    return _normalize_order(merged, changes, original, merge_key)


def _normalize_order(merged: list[Any], order: list[Any], live: list[Any], merge_key: str) -> list[Any]:
    """The items named in `order` in that order, the others in their `live` order, the two
    interleaved as the live list orders them (as the API server does)."""
    wanted: dict[str, int] = {}
    for i, v in enumerate(order):
        wanted.setdefault(_identity(v, merge_key), i)
    at_live: dict[str, int] = {}
    for i, v in enumerate(live):
        at_live.setdefault(_identity(v, merge_key), i)
    keyed = [(_identity(v, merge_key), v) for v in merged]
    named = sorted((kv for kv in keyed if kv[0] in wanted), key=lambda kv: wanted[kv[0]])
    others = sorted((kv for kv in keyed if kv[0] not in wanted), key=lambda kv: at_live.get(kv[0], len(live)))
    result: list[Any] = []
    i = j = 0
    while i < len(others) or j < len(named):
        if i < len(others) and j < len(named):
            left, right = at_live.get(others[i][0]), at_live.get(named[j][0])
            take_other = left is not None and right is not None and left < right
        else:
            take_other = i < len(others)
        if take_other:
            result.append(others[i][1])
            i += 1
        else:
            result.append(named[j][1])
            j += 1
    return result


def _set_order(value: list[Any], order: list[Any], live: list[Any], merge_key: str) -> list[Any]:
    """$setElementOrder/<field>: the patched list in the order the client wants."""
    if any(isinstance(v, dict) for v in value):
        if not merge_key:
            return value  # the schema gives no way to tell the items apart: the order stays
        if any(not isinstance(v, dict) or merge_key not in v for v in order):
            raise RequestInvalid(f"the items of a $setElementOrder list must name their {merge_key!r}")
    return _normalize_order(value, order, live, merge_key)


def strategic_merge_patch(
    target: Any, patch: dict[str, Any], schema: Schema | None = None, components: Mapping[str, Schema] | None = None
) -> dict[str, Any]:
    """A strategic merge patch applied to `target`, whose (OpenAPI) schema is `schema`, its
    references resolved in `components` (and the meta/v1 ones). Without a schema every list
    is replaced whole, as by a merge patch; the directives still apply."""
    every = {**META_COMPONENTS, **(components or {})}
    result = _merge_map(copy.deepcopy(target), copy.deepcopy(patch), schema, every)
    return {} if result is None else result


# -- RFC 6902 ------------------------------------------------------------------------------------


def _tokens(pointer: Any, op_index: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise RequestInvalid(f"the JSON patch operation {op_index} has an invalid path {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]] if pointer else []


def _index(container: list[Any], token: str, op_index: int, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not (token.isascii() and token.isdigit()) or (len(token) > 1 and token[0] == "0") or len(token) > 9:
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


def apply_patch(
    target: dict[str, Any],
    body: bytes,
    content_type: str | None,
    schema: Schema | None = None,
    components: Mapping[str, Schema] | None = None,
) -> Any:
    """The patched object; raises 415 for a patch type we do not take, 400 for a malformed patch,
    422 for one that does not apply to `target`. `schema` (the resource's component schema, its
    references in `components`) tells a strategic merge patch which lists merge and how."""
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
    try:
        if kind == STRATEGIC:
            return strategic_merge_patch(target, patch, schema, components)
        return merge_patch(target, patch)
    except RecursionError:
        raise RequestInvalid("the patch is nested too deeply") from None
