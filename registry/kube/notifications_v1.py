"""notifications.okura.io/v1: the registry's webhook endpoints as an API resource
(NotificationEndpoint, cluster-scoped), besides those of the config file.

The spec holds the keys of the config file's notifications.endpoints, in the API's camelCase;
SPEC_KEYS maps one onto the other, so the stored spec is what the config parser reads."""

from __future__ import annotations

from typing import Any

from registry.kube.meta import META, list_schema
from registry.kube.resources import READ_VERBS, WRITE_VERBS, Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, integer, obj, ref, string

GROUP = "notifications.okura.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NotificationEndpoint"
PREFIX = "io.okura.notifications.v1"
# Says where an endpoint is defined; `config` ones are read-only through the API.
SOURCE_ANNOTATION = "notifications.okura.io/source"

# spec field -> key of the stored spec (the config file's notifications.endpoints keys).
SPEC_KEYS = {
    "url": "url",
    "headers": "headers",
    "timeout": "timeout",
    "backoff": "backoff",
    "maxBackoff": "max_backoff",
    "ignore": "ignore",
    "pulls": "pulls",
    "format": "format",
    "secret": "secret",
    "maxBatchEvents": "max_batch_events",
    "maxBatchBytes": "max_batch_bytes",
    "disabled": "disabled",
}
IGNORE_KEYS = {"mediaTypes": "mediatypes", "actions": "actions"}

# Go durations as strings, as metav1.Duration is written ("5s", "1m30s").
_DURATION = "A duration such as 500ms, 5s, 1m30s."

SPEC: Schema = obj(
    {
        "url": string("Where events are POSTed: an http:// or https:// URL."),
        "headers": {
            "type": "object",
            "additionalProperties": array(string()),
            "description": "Headers sent with every request: a name and its values (distribution's shape).",
        },
        "timeout": string(f"How long a request may take (default 5s). {_DURATION}"),
        "backoff": string(f"The wait after a first failure, doubled per failure (default 1s). {_DURATION}"),
        "maxBackoff": string(f"The longest wait between retries (default 5m). {_DURATION}"),
        "ignore": obj(
            {
                "mediaTypes": array(string(), "Events of these media types are not sent."),
                "actions": array(
                    string("pull, push, mount or delete.", enum=("pull", "push", "mount", "delete")),
                    "Events of these actions are not sent.",
                ),
            },
            "Events this endpoint does not receive.",
        ),
        "pulls": boolean("Send pull events too (when the registry records them)."),
        "format": string("distribution (the default) or cloudevents.", enum=("distribution", "cloudevents")),
        "secret": string("HMAC-SHA256 key signing every body. Write-only: never returned (see status.signed)."),
        "maxBatchEvents": integer("At most this many events in one request (default 100)."),
        # IntOrString, as OpenAPI v3 has it (the field check lets either through; the parser decides).
        "maxBatchBytes": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "At most this many bytes in one request: a number or a size such as 1Mi (default 1MiB).",
        },
        "disabled": boolean("Deliver nothing (events are kept for it)."),
    },
    "Where and how registry events are delivered.",
    required=("url",),
)

STATUS: Schema = obj(
    {
        "signed": boolean("Whether a secret signs the bodies."),
        "cursor": integer("The id of the last event delivered (or skipped past)."),
        "pending": integer("Events after the cursor."),
        "delivered": integer("Events delivered so far."),
        "dropped": integer("Events dropped because the endpoint fell too far behind."),
        "failures": integer("Failed attempts in a row."),
        "lastSuccessTime": string("When a delivery last succeeded.", fmt="date-time"),
        "lastErrorTime": string("When a delivery last failed.", fmt="date-time"),
        "lastError": string("Why it failed."),
    },
    "Delivery state; set by the server, absent until the endpoint's first delivery attempt.",
)

NOTIFICATION_ENDPOINT: Schema = obj(
    {
        "kind": string("NotificationEndpoint."),
        "apiVersion": string(API_VERSION),
        "metadata": ref(f"{META}.ObjectMeta", "Standard object metadata; the name is a DNS label."),
        "spec": ref(f"{PREFIX}.NotificationEndpointSpec"),
        "status": ref(f"{PREFIX}.NotificationEndpointStatus"),
    },
    "A webhook endpoint the registry delivers its events to.",
)

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.NotificationEndpoint": NOTIFICATION_ENDPOINT,
    f"{PREFIX}.NotificationEndpointSpec": SPEC,
    f"{PREFIX}.NotificationEndpointStatus": STATUS,
    f"{PREFIX}.NotificationEndpointList": list_schema(f"{PREFIX}.NotificationEndpoint", KIND),
}

NOTIFICATION_ENDPOINTS = ResourceDef(
    GROUP,
    VERSION,
    KIND,
    "notificationendpoints",
    namespaced=False,
    verbs=READ_VERBS + WRITE_VERBS,
    schema=f"{PREFIX}.NotificationEndpoint",
    columns=(
        Column("Name", format="name", description="The endpoint"),
        Column("URL", description="Where events are sent"),
        Column("Source", description="api, or config (the config file's: read-only here)"),
        Column("Pending", type="integer", description="Events not delivered yet"),
        Column("Failures", type="integer", description="Failed attempts in a row"),
        Column("Age", description="Since it was made"),
        Column("Format", description="distribution or cloudevents", priority=1),
        Column("Last Error", description="Why the last attempt failed", priority=1),
    ),
)

RESOURCES = (NOTIFICATION_ENDPOINTS,)


# -- the spec as stored and as shown -------------------------------------------------------------


def stored_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An object's spec in the stored keys; absent and null fields are left out (defaults)."""
    out = {SPEC_KEYS[k]: v for k, v in spec.items() if k in SPEC_KEYS and v is not None}
    ignore = out.get("ignore")
    if isinstance(ignore, dict):
        out["ignore"] = {IGNORE_KEYS[k]: v for k, v in ignore.items() if k in IGNORE_KEYS and v is not None}
    return out


def object_spec(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec in the object's keys (the inverse of stored_spec)."""
    fields = {v: k for k, v in SPEC_KEYS.items()}
    ignore_fields = {v: k for k, v in IGNORE_KEYS.items()}
    out = {fields[k]: v for k, v in stored.items() if k in fields}
    if isinstance(out.get("ignore"), dict):
        out["ignore"] = {ignore_fields[k]: v for k, v in out["ignore"].items() if k in ignore_fields}
    return out


def spec_field(key: str) -> str:
    """`spec.maxBackoff` for the stored key `max_backoff` (`ignore.mediatypes`: spec.ignore.mediaTypes)."""
    head, _, rest = key.partition(".")
    fields = {v: k for k, v in SPEC_KEYS.items()}
    path = f"spec.{fields.get(head, head)}"
    if rest:
        path += "." + {v: k for k, v in IGNORE_KEYS.items()}.get(rest, rest)
    return path
