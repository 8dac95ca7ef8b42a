"""Request bodies of deliveries: distribution's notification envelope, or CloudEvents (HTTP
structured mode). Pure functions of logged events, so a retried batch is byte for byte the same
request and receivers can de-duplicate by event id."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from typing import Any

from registry.model.events import LoggedEvent

DISTRIBUTION = "distribution"
CLOUDEVENTS = "cloudevents"
FORMATS = (DISTRIBUTION, CLOUDEVENTS)
ENVELOPE_TYPE = "application/vnd.docker.distribution.events.v1+json"
CLOUDEVENTS_TYPE = "application/cloudevents+json"
CLOUDEVENTS_BATCH_TYPE = "application/cloudevents-batch+json"
SIGNATURE_HEADER = "X-Okura-Signature"
EVENT_ID_HEADER = "X-Okura-Event-Ids"
# Event ids are UUIDs (as distribution's), derived from the log's id: the same event always
# has the same id, on every replica and every retry.
_EVENT_NAMESPACE = uuid.UUID("5a0c6a53-8f3e-4c0f-9d0e-6f6b75726101")
MANIFEST_PATH_TYPES = ("manifest", "index", "list")


def event_id(logged_id: int) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, str(logged_id)))


def _timestamp(logged: LoggedEvent) -> str:
    return logged.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_manifest(media_type: str | None) -> bool:
    return bool(media_type) and any(word in (media_type or "") for word in MANIFEST_PATH_TYPES)


def target_url(base_url: str, logged: LoggedEvent) -> str | None:
    """The canonical URL of what the event is about (by digest), as distribution gives it."""
    event = logged.event
    if not event.digest or not base_url:
        return None
    kind = "manifests" if _is_manifest(event.media_type) else "blobs"
    return f"{base_url.rstrip('/')}/v2/{event.repository}/{kind}/{event.digest}"


def distribution_event(logged: LoggedEvent, base_url: str) -> dict[str, Any]:
    """One event in distribution's shape (docs/content/about/notifications.md)."""
    event = logged.event
    target: dict[str, Any] = {"repository": event.repository}
    if event.media_type:
        target["mediaType"] = event.media_type
    if event.digest:
        target["digest"] = event.digest
    if event.size is not None:
        target["size"] = event.size
        target["length"] = event.size  # deprecated by distribution, still read by old receivers
    url = target_url(base_url, logged)
    if url:
        target["url"] = url
    if event.tag:
        target["tag"] = event.tag
    if event.references:
        target["references"] = [{"digest": d} for d in event.references]
    if event.from_repository:
        target["fromRepository"] = event.from_repository
    out: dict[str, Any] = {
        "id": event_id(logged.id),
        "timestamp": _timestamp(logged),
        "action": event.action,
        "target": target,
        "request": {
            "id": logged.request.get("id", ""),
            "addr": logged.request.get("addr", ""),
            "host": logged.request.get("host", ""),
            "method": logged.request.get("method", ""),
            "useragent": logged.request.get("useragent", ""),
        },
        "actor": {"name": event.actor} if event.actor else {},
        "source": {"addr": logged.source.get("addr", ""), "instanceID": logged.source.get("instanceID", "")},
    }
    extra: dict[str, Any] = {}
    if event.upstream:
        extra["importedFrom"] = event.upstream
    if event.pulls:
        extra["pulls"] = event.pulls  # pull events are sampled: how many pulls this one stands for
    if extra:
        out["okura"] = extra
    return out


def cloud_event(logged: LoggedEvent, base_url: str) -> dict[str, Any]:
    """The same event as a CloudEvent (structured mode): distribution's event is the data."""
    event = logged.event
    subject = event.repository + (f":{event.tag}" if event.tag else (f"@{event.digest}" if event.digest else ""))
    return {
        "specversion": "1.0",
        "id": event_id(logged.id),
        "source": f"okura://{logged.source.get('addr', '')}",
        "type": f"io.okura.registry.{event.action}",
        "subject": subject,
        "time": _timestamp(logged),
        "datacontenttype": "application/json",
        "data": distribution_event(logged, base_url),
    }


def body(logged: Sequence[LoggedEvent], fmt: str, base_url: str) -> tuple[bytes, str]:
    """The request body and its Content-Type for a batch of events."""
    if fmt == CLOUDEVENTS:
        if len(logged) == 1:
            return _dump(cloud_event(logged[0], base_url)), CLOUDEVENTS_TYPE
        return _dump([cloud_event(e, base_url) for e in logged]), CLOUDEVENTS_BATCH_TYPE
    return _dump({"events": [distribution_event(e, base_url) for e in logged]}), ENVELOPE_TYPE


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def signature(secret: bytes, payload: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


def first_batch(logged: Sequence[LoggedEvent], max_events: int, max_bytes: int, fmt: str, base_url: str) -> int:
    """How many of `logged` the next request carries: at most max_events, and as many as fit
    in max_bytes (always at least one, however big)."""
    count = min(len(logged), max_events)
    while count > 1 and len(body(logged[:count], fmt, base_url)[0]) > max_bytes:
        count = max(1, count // 2)
    return count
