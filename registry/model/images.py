"""Images (image.openshift.io/v1 Image): a manifest, named by its digest and cluster-scoped.
The same digest may be in several repositories; a caller sees it through one it may read.
What the API shows of an image (platform, labels, creation time) is read from its config
blob. Returns frozen dataclasses; the API renders them (registry/api/objects.py)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from registry.errors import ResourceNotFound
from registry.kube.meta import timestamp
from registry.metadata.db import as_utc
from registry.metadata.schema import manifests, repositories
from registry.model.context import Registry
from registry.model.manifest_format import INDEX_TYPES
from registry.names import DIGEST_RE, HEX_LENGTH
from storage.base import StorageError

log = logging.getLogger("okura.images")

GROUP = "image.openshift.io"
IMAGES = "images"
# Image configs are read from blob storage to show labels and the creation time; bigger
# ones are not parsed (real configs are a few KiB; the biggest seen are well under 1 MiB).
CONFIG_LIMIT = 4 << 20

MayRead = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PlatformManifest:
    digest: str
    media_type: str
    size: int
    architecture: str
    os: str
    variant: str


@dataclass(frozen=True)
class Image:
    digest: str
    repository: str  # one repository holding it (that the caller may read)
    created: datetime
    resource_version: int
    media_type: str
    layers: tuple[Layer, ...] = ()
    manifests: tuple[PlatformManifest, ...] = ()  # an index's
    config_digest: str | None = None
    config_size: int = 0
    config: dict[str, Any] | None = None  # the docker metadata read from the config blob

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers) + self.config_size


def is_digest_name(name: str) -> bool:
    m = DIGEST_RE.fullmatch(name)
    return bool(m) and HEX_LENGTH.get(m.group(1)) == len(m.group(2))


@dataclass(frozen=True)
class _Holder:
    manifest_id: int
    repo: str
    created_at: datetime
    resource_version: int


def _holders(conn: Connection, digest: str) -> list[_Holder]:
    rows = conn.execute(
        select(manifests.c.id, repositories.c.name, manifests.c.created_at, manifests.c.resource_version)
        .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(manifests.c.digest == digest)
        .order_by(manifests.c.created_at, manifests.c.id)
    )
    return [_Holder(r.id, r.name, as_utc(r.created_at), r.resource_version) for r in rows]


def _manifest(conn: Connection, manifest_id: int) -> Any:
    return conn.execute(
        select(manifests.c.media_type, manifests.c.content, manifests.c.config_digest).where(
            manifests.c.id == manifest_id
        )
    ).first()


async def get_image(reg: Registry, digest: str, may_read: MayRead | None = None, config: bool = True) -> Image:
    """The image named `digest`, seen through the first repository holding it that `may_read`
    accepts; ResourceNotFound otherwise (never a refusal: the existence of an image is not
    revealed). `config=False` skips reading the config blob."""
    if not is_digest_name(digest):
        raise ResourceNotFound(IMAGES, GROUP, digest)
    holders = await reg.db.read(_holders, digest)
    holder = None
    for candidate in holders:
        if may_read is None or await may_read(candidate.repo):
            holder = candidate
            break
    row = await reg.db.read(_manifest, holder.manifest_id) if holder is not None else None
    if holder is None or row is None:
        raise ResourceNotFound(IMAGES, GROUP, digest)
    created = min(h.created_at for h in holders)
    version = min(h.resource_version for h in holders)
    image = image_from_manifest(digest, holder.repo, created, version, row.media_type, bytes(row.content))
    if row.config_digest and not image.is_index:
        image = _replace(image, config_digest=row.config_digest)
    if image.is_index or not config:
        return image
    parsed = await read_config(reg, image.config_digest, image.config_size)
    return _replace(image, config=_config_metadata(parsed) if parsed is not None else None)


def image_from_manifest(
    digest: str,
    repository: str,
    created: datetime,
    resource_version: int,
    media_type: str,
    content: bytes,
    config: dict[str, Any] | None = None,
) -> Image:
    """The Image a manifest makes; `config` is its parsed config blob when the caller has
    it (an import, before anything is stored)."""
    try:
        document = json.loads(content)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    base = Image(digest, repository, created, resource_version, media_type)
    if media_type in INDEX_TYPES:
        return _replace(base, manifests=tuple(_platform_manifest(m) for m in _list(document.get("manifests"))))
    descriptor = document.get("config") if isinstance(document.get("config"), dict) else {}
    layers = tuple(
        Layer(str(layer.get("digest")), _size(layer), str(layer.get("mediaType")))
        for layer in _list(document.get("layers"))
    )
    return _replace(
        base,
        layers=layers,
        config_digest=descriptor.get("digest"),
        config_size=_size(descriptor),
        config=_config_metadata(config) if config is not None else None,
    )


def _replace(image: Image, **fields: Any) -> Image:
    return replace(image, **fields)


@dataclass(frozen=True)
class ImageSummary:
    digest: str
    repository: str
    created: datetime
    resource_version: int
    media_type: str


async def list_images(reg: Registry) -> tuple[list[ImageSummary], int]:
    """Every image (one row per digest, with its first repository), and the list's version."""
    from registry.model import changes

    def run(conn: Connection) -> tuple[list[ImageSummary], int]:
        first = (
            select(
                manifests.c.digest,
                func.min(manifests.c.id).label("id"),
                func.min(manifests.c.created_at).label("created"),
                func.min(manifests.c.resource_version).label("rv"),
            )
            .group_by(manifests.c.digest)
            .subquery()
        )
        rows = conn.execute(
            select(first.c.digest, first.c.created, first.c.rv, repositories.c.name, manifests.c.media_type)
            .select_from(first.join(manifests, manifests.c.id == first.c.id))
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .order_by(first.c.digest)
        )
        found = [ImageSummary(r.digest, r.name, as_utc(r.created), r.rv, r.media_type) for r in rows]
        return found, changes.latest(conn)

    return await reg.db.read(run)


def _platform_manifest(entry: dict[str, Any]) -> PlatformManifest:
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    return PlatformManifest(
        digest=str(entry.get("digest")),
        media_type=str(entry.get("mediaType")),
        size=_size(entry),
        architecture=str(platform.get("architecture", "")),
        os=str(platform.get("os", "")),
        variant=str(platform.get("variant", "")),
    )


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _size(descriptor: dict[str, Any]) -> int:
    size = descriptor.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


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
    return timestamp(parsed)


async def delete_image(reg: Registry, digest: str, dry_run: bool = False) -> Image:
    """Delete an image everywhere (its manifest in every repository); its blobs are left to
    the pruner. Refused (409) while a tag, a tag's history or an index refers to it. A dry
    run checks all of that and keeps everything."""
    from sqlalchemy import delete as sql_delete

    from registry.errors import ResourceConflict
    from registry.metadata.schema import manifest_blobs, manifest_children, tag_events, tags
    from registry.model import changes
    from registry.model.changes import DELETED, Change

    image = await get_image(reg, digest, None, config=False)

    def run(conn: Connection) -> list[str]:
        reg.db.gc_exclusive(conn)
        ids = [r.manifest_id for r in _holders(conn, digest)]
        if not ids:
            raise ResourceNotFound(IMAGES, GROUP, digest)
        users = (
            conn.execute(select(tags.c.name).where(tags.c.manifest_id.in_(ids)).limit(1)).first()
            or conn.execute(select(tag_events.c.tag).where(tag_events.c.digest == digest).limit(1)).first()
            or conn.execute(
                select(manifest_children.c.manifest_id).where(manifest_children.c.child_digest == digest).limit(1)
            ).first()
        )
        if users is not None:
            raise ResourceConflict(
                f'images.{GROUP} "{digest}" is still referenced by an image stream tag, its history or an index; '
                "delete those (or let the pruner) first",
                kind=IMAGES,
                group=GROUP,
                name=digest,
            )
        repos = [r.repo for r in _holders(conn, digest)]
        conn.execute(sql_delete(manifest_blobs).where(manifest_blobs.c.manifest_id.in_(ids)))
        conn.execute(sql_delete(manifest_children).where(manifest_children.c.manifest_id.in_(ids)))
        conn.execute(sql_delete(manifests).where(manifests.c.id.in_(ids)))
        changes.record(reg.db, conn, [Change(IMAGES, None, digest, DELETED, {"name": digest})])
        return repos

    repos = await reg.db.write(run, rehearse=dry_run)
    if not dry_run:
        for repo in repos:
            await reg.cache.changed(repo)
    return image
