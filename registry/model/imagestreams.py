"""Image streams and images as OpenShift's API shows them (image.openshift.io/v1).

A repository `<namespace>/<name>` is the image stream `name` in `namespace`; its tags
are the stream's tags and `tag_events` their history (newest first in the API). An
image is a manifest, named by its digest and cluster-scoped: the same digest may be
in several repositories, and a caller sees it if it may read at least one of them.

No HTTP here: the caller passes the registry host that image references start with
and a `may_read(repository)` callback that says what the caller may see.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from registry.errors import ResourceNotFound
from registry.metadata.db import as_utc
from registry.metadata.schema import manifests, repositories, tag_events, tags
from registry.model.context import Registry
from registry.model.manifest_format import INDEX_TYPES
from registry.names import DIGEST_RE, HEX_LENGTH
from storage.base import StorageError

log = logging.getLogger("okura.imagestreams")

GROUP = "image.openshift.io"
API_VERSION = f"{GROUP}/v1"
STREAMS = "imagestreams"
IMAGES = "images"
# Image configs are read from blob storage to show labels and the creation time; bigger
# ones are not parsed (real configs are a few KiB; the biggest seen are well under 1 MiB).
CONFIG_LIMIT = 4 << 20
_BATCH = 500  # repository ids per IN (...) query

MayRead = Callable[[str], Awaitable[bool]]


def rfc3339(value: datetime) -> str:
    """A timestamp as Kubernetes writes one: RFC 3339, UTC, whole seconds, `Z`."""
    return as_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_repository(repo: str) -> tuple[str, str] | None:
    """`ns/name` -> ("ns", "name"); None for a repository without a namespace."""
    namespace, sep, name = repo.partition("/")
    return (namespace, name) if sep and name else None


# -- image streams -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Repo:
    id: int
    name: str
    created_at: datetime


def _repositories(conn: Connection, namespace: str | None, name: str | None) -> list[_Repo]:
    query = select(repositories.c.id, repositories.c.name, repositories.c.created_at)
    if namespace is not None and name is not None:
        query = query.where(repositories.c.name == f"{namespace}/{name}")
    elif namespace is not None:
        query = query.where(repositories.c.name.startswith(f"{namespace}/", autoescape=True))
    else:
        query = query.where(repositories.c.name.contains("/"))
    return [_Repo(r.id, r.name, r.created_at) for r in conn.execute(query)]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _BATCH):
        yield ids[i : i + _BATCH]


def _tags_and_events(conn: Connection, repo_ids: list[int]) -> tuple[dict[int, dict[str, str]], dict[int, list[Any]]]:
    """Per repository: its current tags (tag -> digest) and all its tag events, oldest first."""
    current: dict[int, dict[str, str]] = defaultdict(dict)
    events: dict[int, list[Any]] = defaultdict(list)
    for ids in _chunks(repo_ids):
        rows = conn.execute(
            select(tags.c.repository_id, tags.c.name, manifests.c.digest)
            .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
            .where(tags.c.repository_id.in_(ids))
        )
        for row in rows:
            current[row.repository_id][row.name] = row.digest
        rows = conn.execute(
            select(
                tag_events.c.repository_id,
                tag_events.c.id,
                tag_events.c.tag,
                tag_events.c.digest,
                tag_events.c.created_at,
            )
            .where(tag_events.c.repository_id.in_(ids))
            .order_by(tag_events.c.repository_id, tag_events.c.id)
        )
        for row in rows:
            events[row.repository_id].append(row)
    return current, events


def _stream(host: str, repo: _Repo, current: dict[str, str], events: list[Any]) -> dict[str, Any]:
    namespace, name = split_repository(repo.name) or ("", repo.name)
    reference = f"{host}/{repo.name}"
    # An item's generation is its event's id: ids only grow, so newer items have larger
    # generations, and pruning or deleting other items never renumbers the ones left.
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        generation = event.id
        if event.tag in current:  # deleted tags are not listed
            history[event.tag].append(
                {
                    "created": rfc3339(event.created_at),
                    "dockerImageReference": f"{reference}@{event.digest}",
                    "image": event.digest,
                    "generation": generation,
                }
            )
    return {
        "kind": "ImageStream",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": rfc3339(repo.created_at),
            "generation": max((e.id for e in events), default=0),
        },
        "spec": {"lookupPolicy": {"local": False}},
        "status": {
            "dockerImageRepository": reference,
            "tags": [{"tag": tag, "items": history[tag][::-1]} for tag in sorted(current)],
        },
    }


def _load_streams(conn: Connection, repos: list[_Repo], host: str) -> list[dict[str, Any]]:
    current, events = _tags_and_events(conn, [r.id for r in repos])
    return [_stream(host, r, current.get(r.id, {}), events.get(r.id, [])) for r in repos]


async def list_image_streams(
    reg: Registry, host: str, namespace: str | None = None, may_read: MayRead | None = None
) -> dict[str, Any]:
    """The ImageStreamList of one namespace (or of all), sorted by namespace and name, holding
    only the streams `may_read` accepts. An unknown namespace lists nothing, as in Kubernetes."""
    repos = await reg.db.read(_repositories, namespace, None)
    visible = [r for r in repos if split_repository(r.name) and (may_read is None or await may_read(r.name))]
    visible.sort(key=lambda r: split_repository(r.name) or ("", ""))
    items = await reg.db.read(_load_streams, visible, host) if visible else []
    return {"kind": "ImageStreamList", "apiVersion": API_VERSION, "metadata": {}, "items": items}


async def get_image_stream(reg: Registry, host: str, namespace: str, name: str) -> dict[str, Any]:
    """One ImageStream; the caller has checked that it may read the repository."""

    def load(conn: Connection) -> dict[str, Any] | None:
        repos = _repositories(conn, namespace, name)
        return _load_streams(conn, repos, host)[0] if repos else None

    stream = await reg.db.read(load)
    if stream is None:
        raise ResourceNotFound(STREAMS, GROUP, name)
    return stream


# -- images --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Holder:
    manifest_id: int
    repo: str
    created_at: datetime


def _holders(conn: Connection, digest: str) -> list[_Holder]:
    rows = conn.execute(
        select(manifests.c.id, repositories.c.name, manifests.c.created_at)
        .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(manifests.c.digest == digest)
        .order_by(manifests.c.created_at, manifests.c.id)
    )
    return [_Holder(r.id, r.name, r.created_at) for r in rows]


def _manifest(conn: Connection, manifest_id: int) -> Any:
    return conn.execute(
        select(manifests.c.media_type, manifests.c.content, manifests.c.config_digest).where(
            manifests.c.id == manifest_id
        )
    ).first()


def is_digest_name(name: str) -> bool:
    m = DIGEST_RE.fullmatch(name)
    return bool(m) and HEX_LENGTH.get(m.group(1)) == len(m.group(2))


async def get_image(reg: Registry, host: str, digest: str, may_read: MayRead | None = None) -> dict[str, Any]:
    """The Image named `digest`, if a repository the caller may read holds it; otherwise
    ResourceNotFound (never a refusal, so that the existence of an image is not revealed)."""
    if not is_digest_name(digest):
        raise ResourceNotFound(IMAGES, GROUP, digest)
    holder = None
    for candidate in await reg.db.read(_holders, digest):
        if may_read is None or await may_read(candidate.repo):
            holder = candidate
            break
    row = await reg.db.read(_manifest, holder.manifest_id) if holder is not None else None
    if holder is None or row is None:
        raise ResourceNotFound(IMAGES, GROUP, digest)
    try:
        document = json.loads(bytes(row.content))
    except ValueError:
        document = {}
    image: dict[str, Any] = {
        "kind": "Image",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": digest,
            "creationTimestamp": rfc3339(holder.created_at),
            "annotations": {
                "openshift.io/image.managed": "true",
                "image.openshift.io/dockerLayersOrder": "ascending",
            },
        },
        "dockerImageReference": f"{host}/{holder.repo}@{digest}",
        "dockerImageManifestMediaType": row.media_type,
        "dockerImageMetadataVersion": "1.0",
    }
    if row.media_type in INDEX_TYPES:
        image["dockerImageMetadata"] = {"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0"}
        image["dockerImageLayers"] = []
        image["dockerImageManifests"] = [_platform_manifest(m) for m in _list(document.get("manifests"))]
        return image
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    layers = [
        {"name": layer.get("digest"), "size": _size(layer), "mediaType": layer.get("mediaType")}
        for layer in _list(document.get("layers"))
    ]
    metadata: dict[str, Any] = {"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0"}
    metadata["Id"] = row.config_digest or config.get("digest")
    parsed = await read_config(reg, metadata["Id"], _size(config))
    if parsed is not None:
        metadata.update(_config_metadata(parsed))
    metadata["Size"] = sum(layer["size"] for layer in layers) + _size(config)
    image["dockerImageMetadata"] = metadata
    image["dockerImageLayers"] = layers
    return image


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _size(descriptor: dict[str, Any]) -> int:
    size = descriptor.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


def _platform_manifest(entry: dict[str, Any]) -> dict[str, Any]:
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    out: dict[str, Any] = {
        "digest": entry.get("digest"),
        "mediaType": entry.get("mediaType"),
        "manifestSize": _size(entry),
        "architecture": platform.get("architecture", ""),
        "os": platform.get("os", ""),
    }
    if platform.get("variant"):
        out["variant"] = platform["variant"]
    return out


async def read_config(reg: Registry, digest: str | None, size: int) -> dict[str, Any] | None:
    """An image config from blob storage, parsed; None when it is missing, unreadable, not
    JSON, does not match its digest, or is larger than CONFIG_LIMIT (never read then)."""
    if not digest or size > CONFIG_LIMIT or not is_digest_name(digest):
        return None
    algorithm = digest.partition(":")[0]
    hasher = hashlib.new(algorithm)
    parts: list[bytes] = []
    received = 0
    stream = reg.storage.read(digest, 0, None)
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > CONFIG_LIMIT:
                return None
            hasher.update(chunk)
            parts.append(chunk)
    except (StorageError, OSError) as e:
        log.info("cannot read image config %s: %s", digest, e)
        return None
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    if f"{algorithm}:{hasher.hexdigest()}" != digest:
        log.warning("image config %s in storage does not match its digest", digest)
        return None
    try:
        config = json.loads(b"".join(parts))
    except (ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


# The container config fields OpenShift's DockerConfig carries (same names as in Docker and OCI configs).
_CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
)


def _config_metadata(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    created = _timestamp(config.get("created"))
    if created:
        out["Created"] = created
    for key, field in (("architecture", "Architecture"), ("os", "Os"), ("author", "Author")):
        if isinstance(config.get(key), str) and config[key]:
            out[field] = config[key]
    container = config.get("config") if isinstance(config.get("config"), dict) else {}
    kept = {k: container[k] for k in _CONFIG_FIELDS if container.get(k) not in (None, "", [], {})}
    if kept:
        out["Config"] = kept
    return out


def _timestamp(value: Any) -> str | None:
    """An RFC 3339 time from an image config (nanoseconds allowed), as whole seconds in UTC."""
    if not isinstance(value, str) or len(value) < 20:
        return None
    text = value.strip()
    head, _, rest = text.partition(".")
    if rest:  # drop fractional seconds, keep the zone
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + rest[digits:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return rfc3339(parsed)
