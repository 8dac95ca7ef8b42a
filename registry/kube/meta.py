"""Object and list metadata (meta.k8s.io/v1), as every object of the API carries it."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from registry.errors import RequestInvalid
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

META = "io.k8s.apimachinery.pkg.apis.meta.v1"

OBJECT_META: Schema = obj(
    {
        "name": string("Name, unique within a namespace (or the cluster, for cluster-scoped kinds)."),
        "generateName": string("Ignored: names are always given."),
        "namespace": string("The namespace of a namespaced object."),
        "uid": string("Unique in time and space; set by the server."),
        "resourceVersion": string(
            "Opaque version of the object, from one monotonic sequence of changes. An update naming a stale "
            "one is refused with 409 Conflict."
        ),
        "generation": integer("Sequence number of the desired state (spec); set by the server."),
        "creationTimestamp": string("When the object was created (RFC 3339); set by the server.", fmt="date-time"),
        "deletionTimestamp": string("Set by the server while an object is being deleted.", fmt="date-time"),
        "deletionGracePeriodSeconds": integer("Ignored."),
        "labels": string_map("Labels, for selecting objects (-l)."),
        "annotations": string_map("Annotations: arbitrary metadata kept with the object."),
        "ownerReferences": {"type": "array", "items": free_form(), "description": "Kept as given."},
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Kept as given."},
        "managedFields": {"type": "array", "items": free_form(), "description": "Ignored."},
        "selfLink": string("Deprecated; ignored."),
    },
    "Standard object metadata.",
)

LIST_META: Schema = obj(
    {
        "resourceVersion": string("The version of the list: watch from it to follow changes."),
        "continue": string("Present when the list was cut by `limit`: pass it back to get the next page."),
        "remainingItemCount": integer("Items after this page, when known."),
        "selfLink": string("Deprecated."),
    },
    "Standard list metadata.",
)

STATUS: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": free_form(),
        "status": string("Success or Failure."),
        "message": string(),
        "reason": string(),
        "details": free_form(),
        "code": integer(),
    },
    "The result of an operation that does not return an object, or of a failure.",
)

DELETE_OPTIONS: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "gracePeriodSeconds": integer(),
        "preconditions": obj({"uid": string(), "resourceVersion": string()}),
        "propagationPolicy": string(),
        "orphanDependents": boolean(),
        "dryRun": {"type": "array", "items": {"type": "string"}},
    },
    "Options of a DELETE.",
)

WATCH_EVENT: Schema = obj(
    {"type": string("ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."), "object": free_form()},
    "One change of a watched collection.",
)

COMPONENTS: dict[str, Schema] = {
    f"{META}.ObjectMeta": OBJECT_META,
    f"{META}.ListMeta": LIST_META,
    f"{META}.Status": STATUS,
    f"{META}.DeleteOptions": DELETE_OPTIONS,
    f"{META}.WatchEvent": WATCH_EVENT,
}


def timestamp(value: datetime) -> str:
    """RFC 3339, UTC, whole seconds, `Z`: how Kubernetes writes times."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def list_object(kind: str, api_version: str, items: list[dict[str, Any]], resource_version: int,
                continue_token: str | None = None) -> dict[str, Any]:  # fmt: skip
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}


def list_schema(item: str, kind: str) -> Schema:
    """The schema of a `<kind>List`: list metadata and items of the component `item`."""
    return obj(
        {
            "kind": string("The kind of the object."),
            "apiVersion": string("The API version of the object."),
            "metadata": ref(f"{META}.ListMeta", "Standard list metadata."),
            "items": array(ref(item)),
        },
        f"A list of {kind} objects.",
        required=("items",),
    )


# -- label and annotation keys and values (as the API server validates them) ---------------------

_NAME_PART_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_ANNOTATIONS_BYTES = 256 * 1024


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is no qualified name (`[prefix/]name`, a DNS subdomain prefix and a name
    of at most 63 alphanumerics, '-', '_', '.'), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        return "a qualified name's prefix must be a lowercase DNS subdomain (e.g. example.com)"
    if not _NAME_PART_RE.fullmatch(name):
        return (
            "a qualified name must be at most 63 characters: alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value and not _NAME_PART_RE.fullmatch(value):
        return (
            "a label value must be empty or at most 63 characters: alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


# -- resourceVersion and continue tokens --------------------------------------------------------

_RV_RE = re.compile(r"[0-9]{1,18}")  # ASCII digits only (\d takes other scripts' too)
_LIMIT_RE = re.compile(r"[0-9]{1,9}")


def parse_resource_version(value: Any, field: str = "resourceVersion") -> int | None:
    """None when absent or empty; a non-negative integer otherwise (resourceVersions are
    opaque to clients, but these come from us)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _RV_RE.fullmatch(value):
        shown = value[:64] if isinstance(value, str) else json.dumps(value)[:64]
        raise RequestInvalid(f'invalid {field} "{shown}": must be a resourceVersion the server gave')
    return int(value)


def continue_token(resource_version: int, last_key: str) -> str:
    raw = json.dumps({"rv": resource_version, "start": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv, start = data["rv"], data["start"]
        if type(rv) is not int or not isinstance(start, str) or rv < 0:  # bool is an int subclass
            raise ValueError
        return rv, start
    except (ValueError, KeyError, TypeError):
        raise RequestInvalid("invalid continue token: pass back the one a list answered with") from None


def parse_limit(value: str | None) -> int | None:
    if value is None or value == "" or value == "0":
        return None
    if not _LIMIT_RE.fullmatch(value):
        raise RequestInvalid(f'invalid limit "{value[:32]}": must be a non-negative integer')
    return int(value)
