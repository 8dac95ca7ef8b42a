"""Kubernetes' protobuf encoding, read-only and for the few messages clients insist on
sending that way: client-go sends its built-in types (such as the SelfSubjectAccessReview of
`kubectl auth can-i`) as `application/vnd.kubernetes.protobuf`, and accepts JSON back.

The encoding is a 4-byte magic, then a runtime.Unknown message (typeMeta, raw bytes) whose
`raw` is the object's message. A `Message` maps field numbers to JSON names and either a
nested Message or a scalar kind; fields not in it are skipped, as protobuf readers do."""

from __future__ import annotations

import base64
from typing import Any, Union

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

# field number -> (JSON name, nested message or "string" | "bool" | "int" | "strings" | "bytes"
# | "map:string" | "map:base64"): a map is repeated entries {1: key, 2: value}; "base64" is
# bytes the JSON form writes as base64 (a Secret's data), so both forms read alike.
Message = dict[int, tuple[str, Union["Message", str]]]

_TYPE_META: Message = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_MAP_ENTRIES: dict[str, Message] = {
    "map:string": {1: ("key", "string"), 2: ("value", "string")},
    "map:base64": {1: ("key", "string"), 2: ("value", "base64")},
}
# k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto: the fields a client sets on a write.
OBJECT_META: Message = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    11: ("labels", "map:string"),
    12: ("annotations", "map:string"),
}
_UNKNOWN: Message = {1: ("typeMeta", _TYPE_META), 2: ("raw", "bytes"), 3: ("contentEncoding", "string")}


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos + i]
        if i == 9 and byte < 0x80 and byte > 1:
            raise ProtobufError("varint larger than 64 bits")
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ProtobufError("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: varints as ints, length-delimited fields as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):  # fixed64, fixed32: none of ours, skipped
            pos += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    if pos != len(data):
        raise ProtobufError("truncated field")
    return out


def decode(data: bytes, message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        known = message.get(number)
        if known is None:
            continue
        name, kind = known
        if isinstance(kind, dict):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected a message")
            out[name] = decode(value, kind)
        elif kind == "bool":
            if not isinstance(value, int):
                raise ProtobufError(f"{name}: expected a boolean")
            out[name] = bool(value)
        elif kind == "int":
            if not isinstance(value, int):
                raise ProtobufError(f"{name}: expected a number")
            out[name] = value
        elif kind.startswith("map:"):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected a map entry")
            entry = decode(value, _MAP_ENTRIES[kind])
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        elif kind == "base64":
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected bytes")
            out[name] = base64.b64encode(value).decode()
        elif kind in ("string", "strings", "bytes"):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: expected bytes")
            if kind == "bytes":
                out[name] = value
                continue
            try:
                text = value.decode()
            except UnicodeDecodeError:
                raise ProtobufError(f"{name}: not UTF-8") from None
            if kind == "strings":
                out.setdefault(name, []).append(text)
            else:
                out[name] = text
    return out


def decode_object(body: bytes, message: Message) -> dict[str, Any]:
    """A whole request body: the envelope, then the object in it (with its kind and apiVersion)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic")
    unknown = decode(body[len(MAGIC) :], _UNKNOWN)
    if unknown.get("contentEncoding"):
        raise ProtobufError(f"unsupported content encoding {unknown['contentEncoding'][:20]!r}")
    obj = decode(unknown.get("raw", b""), message)
    type_meta = unknown.get("typeMeta", {})
    return {"kind": type_meta.get("kind", ""), "apiVersion": type_meta.get("apiVersion", ""), **obj}
