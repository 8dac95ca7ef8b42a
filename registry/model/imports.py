"""Imports from other registries (OpenShift's ImageStreamImport).

An import reads manifests from an upstream registry and writes them into an image stream:
the spec tag (`from: DockerImage`), the tag's history item (with the upstream pull spec
by digest), the manifests themselves and their config blobs. Layers stay upstream until
someone pulls them through this registry (registry/model/pullthrough.py). Failures do not
fail the call: each becomes the tag's ImportSuccess=False condition, level-driven (written
only when its reason or message changes), and the tag keeps its current image.

Everything is fetched first, then written in one transaction, so a failed or half-done
fetch leaves nothing behind; `store=False` (spec.import false) is a dry run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, select, update

from registry.errors import ManifestInvalid, ResourceConflict, ResourceNotFound
from registry.imports import upstream as up
from registry.imports.guard import HostGuard
from registry.imports.keyring import DockerConfigError, Keyring, parse_docker_config
from registry.metadata.db import Database, utcnow
from registry.metadata.schema import manifest_blobs, manifest_children, manifests, repositories, tag_events
from registry.metrics import imports_total
from registry.model import blobs, secrets, streams
from registry.model.changes import ADDED, Change
from registry.model.context import Registry
from registry.model.manifest_format import INDEX_TYPES, parse_manifest
from registry.model.streams import Stream, TagCondition, TagReference

log = logging.getLogger("okura.imports")

CLUSTER_NAMESPACE = "openshift"  # its pull secrets serve every namespace
EXCLUDE_SECRET = "openshift.io/image.excludeSecret"
PREFER_ARCH = "importer.image.openshift.io/prefer-arch"
PREFER_OS = "importer.image.openshift.io/prefer-os"
CONFIG_MAX_BYTES = 4 << 20  # image configs are a few KiB
MAX_CHILDREN = 64  # manifests of one index imported whole (PreserveOriginal)
MAX_TAGS_LISTED = 10_000


# -- what is asked ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSource:
    """One image to import (spec.images[]): `to` is the tag it becomes, or None to only look."""

    from_name: str
    to: str | None
    insecure: bool = False
    scheduled: bool = False
    import_mode: str | None = None  # None: the tag's, else the configured default
    reference_policy: str | None = None  # None: the tag's, else Source


@dataclass(frozen=True)
class RepositorySource:
    """A whole upstream repository (spec.repository): its tags, up to the configured limit."""

    from_name: str
    insecure: bool = False
    scheduled: bool = False
    import_mode: str | None = None
    reference_policy: str | None = None


@dataclass(frozen=True)
class ImportRequest:
    namespace: str
    name: str
    images: tuple[ImportSource, ...] = ()
    repository: RepositorySource | None = None
    store: bool = True  # spec.import: False is a dry run
    expected_version: int | None = None  # metadata.resourceVersion: the stream must still be at it
    expected_uid: str | None = None
    # Write each imported spec tag anew (a user's import: a new generation); the controller's
    # re-imports pass False, so an unchanged upstream writes nothing.
    reset: bool = True
    actor: str | None = None


# -- what is answered ------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedImage:
    digest: str
    media_type: str
    content: bytes
    upstream: str  # host/repository the blobs come from
    insecure: bool
    config: dict[str, Any] | None = None  # the parsed config blob
    config_blob: tuple[str, bytes] | None = None  # (digest, bytes) to store
    children: tuple[FetchedImage, ...] = ()  # an index imported whole

    @property
    def reference(self) -> str:
        return f"{self.upstream}@{self.digest}"


@dataclass(frozen=True)
class ImageOutcome:
    source: ImportSource
    status: str  # Success or Failure
    reason: str = ""
    message: str = ""
    code: int = 200
    image: FetchedImage | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"


@dataclass(frozen=True)
class RepositoryOutcome:
    status: str
    reason: str = ""
    message: str = ""
    code: int = 200
    images: tuple[ImageOutcome, ...] = ()
    additional_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportResult:
    images: tuple[ImageOutcome, ...]
    repository: RepositoryOutcome | None
    stream: Stream | None  # after the import (None for a dry run)

    @property
    def failed(self) -> bool:
        outcomes = [*self.images, *(self.repository.images if self.repository else ())]
        return any(not o.succeeded for o in outcomes) or (
            self.repository is not None and self.repository.status != "Success"
        )


def failure(source: ImportSource, reason: str, message: str, code: int) -> ImageOutcome:
    return ImageOutcome(source, "Failure", reason, message, code)


def _failure_of(source: ImportSource, error: Exception) -> ImageOutcome:
    """An upstream error as OpenShift's importer reports it (reason, message, HTTP code)."""
    message = str(error)
    if isinstance(error, up.UpstreamUnauthorized):
        return failure(source, "Unauthorized", message, 401)
    if isinstance(error, up.UpstreamNotFound):
        return failure(source, "NotFound", message, 404)
    if isinstance(error, up.UpstreamRefused):
        return failure(source, "Forbidden", message, 403)
    if isinstance(error, up.SchemaOneRefused):
        return failure(source, "BadRequest", message, 400)
    if isinstance(error, up.ManifestTooLarge):
        return failure(source, "RequestEntityTooLarge", message, 413)
    if isinstance(error, up.UpstreamUnavailable):
        return failure(source, "ServiceUnavailable", message, 503)
    return failure(source, "InternalError", message, 500)


# -- credentials and the upstream client -------------------------------------------------------


async def keyring_for(reg: Registry, namespace: str) -> Keyring:
    """The namespace's pull secrets, then those of the `openshift` namespace, then the
    configured auth file (the install pull secret). A secret that cannot be read is skipped
    with a warning naming it (never its content)."""
    sources: list[tuple[str, Any]] = []
    for ns in dict.fromkeys([namespace, CLUSTER_NAMESPACE]):
        for secret in await secrets.list_secrets(reg, ns, reveal=True):
            if (secret.annotations or {}).get(EXCLUDE_SECRET) == "true":
                continue
            key = secrets.DATA_KEYS.get(secret.type)
            payload = (secret.data or {}).get(key or "")
            if payload is None:
                continue
            try:
                sources.append((f"secret {ns}/{secret.name}", parse_docker_config(payload, secret.type)))
            except DockerConfigError as e:
                log.warning("pull secret skipped", extra={"secret": f"{ns}/{secret.name}", "error": str(e)})
    path = reg.config.imports.auth_file
    if path:
        try:
            with open(path, "rb") as f:
                sources.append((f"auth file {path}", parse_docker_config(f.read(), secrets.DOCKERCONFIGJSON)))
        except (OSError, DockerConfigError) as e:
            log.warning("imports.auth_file skipped", extra={"path": path, "error": str(e)})
    return Keyring(sources)


def guard_of(reg: Registry) -> HostGuard:
    guard = getattr(reg, "_import_guard", None)
    if guard is None:
        guard = HostGuard(reg.config.imports.allowed_registries)
        reg._import_guard = guard  # type: ignore[attr-defined]  # one per process: it caches lookups
    return guard


def upstream_client(reg: Registry, keyring: Keyring, ref: up.ImageRef, insecure: bool) -> up.Upstream:
    config = reg.config.imports
    guard = guard_of(reg)
    return up.Upstream(
        ref.registry,
        keyring.lookup(ref.name),
        allow_host=guard.for_registry(ref.registry),
        insecure=insecure or guard.insecure_allowed(ref.registry),
        ca_bundle=config.ca_bundle or None,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_manifest_bytes=reg.config.manifests.max_size,
    )


# -- fetching ------------------------------------------------------------------------------------


class _Clients:
    """One upstream client per registry and security mode for the whole request: connections
    and tokens are shared by every tag fetched from the same place."""

    def __init__(self, reg: Registry, keyring: Keyring) -> None:
        self.reg = reg
        self.keyring = keyring
        self._open: dict[tuple[str, str, bool], up.Upstream] = {}

    async def get(self, ref: up.ImageRef, insecure: bool) -> up.Upstream:
        key = (ref.registry, ref.repository, insecure)
        client = self._open.get(key)
        if client is None:
            client = upstream_client(self.reg, self.keyring, ref, insecure)
            await client.__aenter__()
            self._open[key] = client
        return client

    async def close(self) -> None:
        for client in self._open.values():
            await client.__aexit__(None, None, None)
        self._open.clear()


def _platform_key(entry: dict[str, Any]) -> tuple[str, str]:
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    return str(platform.get("os", "")), str(platform.get("architecture", ""))


def choose_platform(index: dict[str, Any], prefer_os: str, prefer_arch: str, default: str) -> str | None:
    """The child Legacy mode keeps (OpenShift's order): the tag's preferred os/arch, the
    configured default platform, linux/amd64, then the first image that has a platform."""
    entries = [m for m in index.get("manifests", []) if isinstance(m, dict) and isinstance(m.get("digest"), str)]
    default_os, _, default_arch = default.partition("/")
    wanted = [(prefer_os or default_os, prefer_arch or default_arch), (default_os, default_arch), ("linux", "amd64")]
    for want in wanted:
        for entry in entries:
            if _platform_key(entry) == want:
                return str(entry["digest"])
    for entry in entries:
        if _platform_key(entry) not in (("", ""), ("unknown", "unknown")):
            return str(entry["digest"])
    return str(entries[0]["digest"]) if entries else None


async def _config_of(client: up.Upstream, ref: up.ImageRef, config_digest: str | None) -> tuple[Any, Any]:
    if not config_digest:
        return None, None
    data = bytearray()
    async with client.blob(ref.repository, config_digest) as blob:
        if blob.size is not None and blob.size > CONFIG_MAX_BYTES:
            raise up.UpstreamError(blob.shown, f"the image config is {blob.size} bytes; at most {CONFIG_MAX_BYTES}")
        async for chunk in blob:
            data += chunk
            if len(data) > CONFIG_MAX_BYTES:
                raise up.UpstreamError(blob.shown, f"the image config is over {CONFIG_MAX_BYTES} bytes")
    try:
        parsed = json.loads(bytes(data))
    except ValueError:
        parsed = None
    return (parsed if isinstance(parsed, dict) else None), (config_digest, bytes(data))


async def _fetch_one(
    client: up.Upstream, ref: up.ImageRef, insecure: bool, keep_index: bool, tag: TagReference | None, reg: Registry
) -> FetchedImage:
    """The image `ref` names, verified: one image manifest (an index reduced to the child
    Legacy mode picks) or, with `keep_index`, the index and its images."""
    fetched = await client.manifest(ref)
    image = await _image_of(client, ref, fetched, insecure)
    if fetched.media_type not in INDEX_TYPES:
        return image
    document = json.loads(fetched.content)
    if not keep_index:
        annotations = dict(tag.annotations or {}) if tag else {}
        child = choose_platform(
            document,
            annotations.get(PREFER_OS, ""),
            annotations.get(PREFER_ARCH, ""),
            reg.config.imports.default_platform,
        )
        if child is None:
            raise up.UpstreamError(f"{ref}", "the manifest list names no images")
        return await _fetch_one(client, replace(ref, digest=child), insecure, False, tag, reg)
    children = [m["digest"] for m in document.get("manifests", []) if isinstance(m, dict) and "digest" in m]
    if len(children) > MAX_CHILDREN:
        raise up.UpstreamError(f"{ref}", f"the index names {len(children)} manifests; at most {MAX_CHILDREN} import")
    kept = []
    for digest in children:
        child_ref = replace(ref, digest=digest)
        child_manifest = await client.manifest(child_ref)
        if child_manifest.media_type in INDEX_TYPES:
            raise up.UpstreamError(f"{child_ref}", "nested indexes are not imported")
        kept.append(await _image_of(client, child_ref, child_manifest, insecure))
    return replace(image, children=tuple(kept))


async def _image_of(client: up.Upstream, ref: up.ImageRef, fetched: up.FetchedManifest, insecure: bool) -> FetchedImage:
    try:
        parsed = parse_manifest(fetched.content, fetched.media_type)
    except ManifestInvalid as e:
        raise up.UpstreamError(f"{replace(ref, digest=fetched.digest)}", f"invalid manifest: {e.message}") from None
    config, blob = (None, None)
    if fetched.media_type not in INDEX_TYPES:
        config, blob = await _config_of(client, ref, parsed.config_digest)
    return FetchedImage(
        fetched.digest, fetched.media_type, fetched.content, ref.name, insecure, config=config, config_blob=blob
    )


async def _fetch(reg: Registry, clients: _Clients, source: ImportSource, tag: TagReference | None) -> ImageOutcome:
    try:
        ref = up.ImageRef.parse(source.from_name)
    except ValueError as e:
        return failure(source, "Invalid", str(e), 422)
    # The tag's own mode holds only while it imports from the same source (as _spec_tag_for writes it).
    same_source = tag is not None and tag.from_kind == "DockerImage" and tag.from_name == source.from_name
    mode = source.import_mode or (tag.import_mode if same_source and tag else None)
    mode = mode or reg.config.imports.default_import_mode
    try:
        client = await clients.get(ref, source.insecure)
        image = await _fetch_one(client, ref, source.insecure, mode == "PreserveOriginal", tag, reg)
    except up.UpstreamError as e:
        return _failure_of(source, e)
    return ImageOutcome(source, "Success", image=image)


_SEMVER_MINOR = re.compile(r"v?(\d+)\.(\d+)")
_SEMVER_FULL = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?")


def prioritize_tags(tags: Sequence[str]) -> list[str]:
    """OpenShift's order for a repository import: latest, then X.Y versions (newest first),
    then full versions (newest first), then the rest alphabetically."""

    def key(tag: str) -> tuple[Any, ...]:
        if tag == "latest":
            return (0,)
        m = _SEMVER_MINOR.fullmatch(tag)
        if m:
            return (1, -int(m.group(1)), -int(m.group(2)), tag)
        m = _SEMVER_FULL.fullmatch(tag)
        if m:
            return (2, -int(m.group(1)), -int(m.group(2)), -int(m.group(3)), tag)
        return (3, tag)

    return sorted(dict.fromkeys(t or "latest" for t in tags), key=key)


async def _fetch_repository(
    reg: Registry, clients: _Clients, source: RepositorySource, spec: dict[str, TagReference]
) -> RepositoryOutcome:
    try:
        ref = up.ImageRef.parse(source.from_name)
        if "@" in source.from_name or ref.tag != up.DEFAULT_TAG or source.from_name.endswith(":latest"):
            raise ValueError(f"{source.from_name!r}: name a repository, without a tag or digest")
    except ValueError as e:
        return RepositoryOutcome("Failure", "Invalid", str(e), 422)
    try:
        client = await clients.get(ref, source.insecure)
        listed = await client.tags(ref.repository, MAX_TAGS_LISTED)
    except up.UpstreamError as e:
        failed = _failure_of(ImportSource(source.from_name, None), e)
        return RepositoryOutcome("Failure", failed.reason, failed.message, failed.code)
    ordered = prioritize_tags(listed)
    limit = reg.config.imports.max_tags_per_repository
    outcomes = []
    for tag in ordered[:limit]:
        one = ImportSource(
            f"{ref.name}:{tag}", tag, source.insecure, source.scheduled, source.import_mode, source.reference_policy
        )
        outcomes.append(await _fetch(reg, clients, one, spec.get(tag)))
    failed = sum(1 for o in outcomes if not o.succeeded)
    if failed:
        message = (
            "one of the images from this repository failed to import"
            if failed == 1
            else f"{failed} of the images from this repository failed to import"
        )
        return RepositoryOutcome("Failure", "ImportFailed", message, 422, tuple(outcomes), tuple(ordered[limit:]))
    return RepositoryOutcome("Success", images=tuple(outcomes), additional_tags=tuple(ordered[limit:]))


# -- the import ----------------------------------------------------------------------------------


async def import_images(reg: Registry, request: ImportRequest) -> ImportResult:
    """Fetch every image asked for, then (unless a dry run) write them into the stream."""
    current = await _current(reg, request)
    spec = {t.name: t for t in current.spec_tags} if current else {}
    clients = _Clients(reg, await keyring_for(reg, request.namespace))
    try:
        images = tuple([await _fetch(reg, clients, s, spec.get(s.to or "")) for s in request.images])
        repository = await _fetch_repository(reg, clients, request.repository, spec) if request.repository else None
    finally:
        await clients.close()
    every = [*images, *(repository.images if repository else ())]
    for outcome in every:
        _report(request, outcome)
    if not request.store:
        return ImportResult(images, repository, None)
    for outcome in every:
        if outcome.succeeded and outcome.source.to and outcome.image is not None:
            await _store_configs(reg, outcome.image)
    stream = await _write(reg, request, every)
    return ImportResult(images, repository, stream)


def _report(request: ImportRequest, outcome: ImageOutcome) -> None:
    imports_total.labels(outcome="success" if outcome.succeeded else outcome.reason).inc()
    extra = {
        "stream": f"{request.namespace}/{request.name}",
        "upstream": outcome.source.from_name,
        "tag": outcome.source.to or "",
        "outcome": "success" if outcome.succeeded else outcome.reason,
    }
    if outcome.image is not None:
        extra["digest"] = outcome.image.digest
    if outcome.succeeded:
        log.info("image import", extra=extra)
    else:
        log.warning("image import failed", extra={**extra, "error": outcome.message})


async def _current(reg: Registry, request: ImportRequest) -> Stream | None:
    try:
        stream = await streams.get_stream(reg, request.namespace, request.name)
    except ResourceNotFound:
        if request.expected_version is not None or request.expected_uid is not None:
            raise
        return None
    _check_expected(stream.resource_version, stream.uid, request)
    return stream


def _check_expected(version: int, uid: str, request: ImportRequest) -> None:
    if request.expected_uid is not None and request.expected_uid != uid:
        raise ResourceConflict(
            f'the image stream "{request.name}" is not the object the import names (uid {request.expected_uid})',
            kind=streams.STREAMS,
            group=streams.GROUP,
            name=request.name,
        )
    if request.expected_version is not None and request.expected_version != version:
        raise ResourceConflict(
            f'the image stream "{request.name}" was updated from {request.expected_version} to {version}',
            kind=streams.STREAMS,
            group=streams.GROUP,
            name=request.name,
        )


async def _store_configs(reg: Registry, image: FetchedImage) -> None:
    """Config blobs go to storage before the metadata that names them (as for a push)."""
    for one in (image, *image.children):
        if one.config_blob is None:
            continue
        digest, data = one.config_blob
        if await blobs.stored_size(reg, digest) is not None:
            continue
        upload_id = str(uuid.uuid4())
        state = await reg.storage.start_upload(upload_id)
        try:
            writer = await reg.storage.upload_writer(upload_id, state, 0)
            try:
                await writer.write(data)
                state = await writer.finish()
            except BaseException:
                await writer.abort()
                raise
            await blobs.reserve_blob(reg, digest, len(data))
            await reg.storage.commit_upload(upload_id, state, digest, len(data))
        except BaseException:
            with contextlib.suppress(Exception):  # the upload purge reclaims what is left
                await reg.storage.cancel_upload(upload_id, state)
            raise


def _spec_tag_for(source: ImportSource, prior: TagReference | None, default_mode: str) -> TagReference:
    """ensureSpecTag: the tag imports from `source`; flags OR with the tag's, and a reference
    policy the tag already has is never overwritten by a default."""
    same_source = prior is not None and prior.from_kind == "DockerImage" and prior.from_name == source.from_name
    keep = prior if same_source else None
    return TagReference(
        name=source.to or "",
        from_kind="DockerImage",
        from_name=source.from_name,
        insecure=source.insecure or bool(keep and keep.insecure),
        scheduled=source.scheduled or bool(keep and keep.scheduled),
        import_mode=source.import_mode or (keep.import_mode if keep else default_mode),
        reference_policy=source.reference_policy or (prior.reference_policy if prior else "Source"),
        annotations=prior.annotations if prior else None,
        generation=prior.generation if prior else None,
    )


async def _write(reg: Registry, request: ImportRequest, outcomes: Sequence[ImageOutcome]) -> Stream:
    repo = f"{request.namespace}/{request.name}"

    def run(conn: Connection) -> Stream:
        row = conn.execute(
            select(repositories.c.resource_version, repositories.c.uid, repositories.c.deleted_at).where(
                repositories.c.name == repo
            )
        ).first()
        exists = row is not None and row.deleted_at is None
        if exists:
            _check_expected(row.resource_version, row.uid, request)
        elif request.expected_version is not None or request.expected_uid is not None:
            raise ResourceNotFound(streams.STREAMS, streams.GROUP, request.name)
        return _apply(reg.db, conn, repo, request, outcomes, reg.config.imports.default_import_mode)

    stream = await reg.db.write(run)
    await reg.cache.changed(repo)
    return stream


def _apply(
    db: Database,
    conn: Connection,
    repo: str,
    request: ImportRequest,
    outcomes: Sequence[ImageOutcome],
    default_mode: str,
) -> Stream:
    repo_id, created, generation, spec_tags = streams.ensure_stream(db, conn, repo)
    row = conn.execute(
        select(repositories.c.spec, repositories.c.tag_conditions).where(repositories.c.id == repo_id)
    ).one()
    spec = {t.name: t for t in spec_tags}
    order = [t.name for t in spec_tags]
    conditions: dict[str, Any] = dict(row.tag_conditions or {})
    entries: list[Change | None] = [streams.stream_added(repo)] if created else []
    now = utcnow()
    next_generation = generation + 1
    spec_changed = conditions_changed = False
    for outcome in outcomes:
        tag = outcome.source.to
        if not tag:
            continue
        prior = spec.get(tag)
        wanted = _spec_tag_for(outcome.source, prior, default_mode)
        if prior is None or not prior.same_intent(wanted) or (request.reset and outcome.succeeded):
            spec[tag] = replace(wanted, generation=next_generation)
            spec_changed = True
            if tag not in order:
                order.append(tag)
        tag_generation = spec[tag].generation or next_generation
        if not outcome.succeeded:
            old = conditions.get(tag)
            if not old or old.get("reason") != outcome.reason or old.get("message") != outcome.message:
                conditions[tag] = TagCondition(outcome.reason, outcome.message, tag_generation, now).to_json()
                conditions_changed = True
                entries.append(streams.tag_changed(repo, tag))
            continue
        image = outcome.image
        assert image is not None
        manifest_id, added = _store_image(db, conn, repo_id, image)
        entries += [Change(streams.IMAGES, None, d, ADDED) for d in added]
        if conditions.pop(tag, None) is not None:
            conditions_changed = True
        moved = streams.point_tag(
            db, conn, repo_id, tag, manifest_id, image.digest, tag_generation, request.actor, image.reference
        )
        if moved:
            entries.append(streams.tag_changed(repo, tag, moved))
            entries += [
                streams.tag_changed(repo, t)
                for t in streams.follow_tracking_tags(db, conn, repo, repo_id, tag, manifest_id, image.digest)
            ]
        elif _collapse(conn, repo_id, tag, tag_generation, image.reference):
            entries.append(streams.tag_changed(repo, tag))
    values: dict[str, Any] = {"imported_at": now}
    if spec_changed:
        generation = next_generation
        values["generation"] = generation
        lookup_local = bool((row.spec or {}).get("lookup_local", False))
        values["spec"] = {"tags": [spec[n].to_json() for n in order], "lookup_local": lookup_local}
    if conditions_changed:
        values["tag_conditions"] = conditions or None
    conn.execute(update(repositories).where(repositories.c.id == repo_id).values(**values))
    if not created and (spec_changed or any(e is not None for e in entries)):
        entries.append(streams.stream_changed(repo))
    streams.record_and_stamp(db, conn, repo_id, entries)
    namespace, name = streams.split_repository(repo) or ("", repo)
    return streams.load_streams(conn, namespace, name)[0]


def _collapse(conn: Connection, repo_id: int, tag: str, generation: int, reference: str) -> bool:
    """Same image as now: bring the current history item's generation and reference up to
    date in place (OpenShift's collapse), rather than adding an item. True when it changed."""
    latest = conn.execute(
        select(tag_events.c.id, tag_events.c.generation, tag_events.c.reference)
        .where(tag_events.c.repository_id == repo_id, tag_events.c.tag == tag)
        .order_by(tag_events.c.id.desc())
        .limit(1)
    ).first()
    if latest is None or (latest.generation >= generation and latest.reference == reference):
        return False
    conn.execute(
        update(tag_events)
        .where(tag_events.c.id == latest.id)
        .values(generation=max(generation, latest.generation), reference=reference)
    )
    return True


def _store_image(db: Database, conn: Connection, repo_id: int, image: FetchedImage) -> tuple[int, list[str]]:
    """Record an imported manifest (an index's images first) in the repository; returns its
    id and the digests new to the registry. A manifest already here (pushed, or imported
    before) is kept as it is."""
    added: list[str] = []
    for child in image.children:
        added += _store_image(db, conn, repo_id, child)[1]
    found = conn.execute(
        select(manifests.c.id).where(manifests.c.repository_id == repo_id, manifests.c.digest == image.digest)
    ).scalar()
    if found is not None:
        return found, added
    db.gc_shared(conn)
    parsed = parse_manifest(image.content, image.media_type)
    known = conn.execute(select(manifests.c.id).where(manifests.c.digest == image.digest).limit(1)).first()
    now = utcnow()
    conn.execute(
        db.insert_ignore(manifests, "repository_id", "digest"),
        {
            "repository_id": repo_id,
            "digest": image.digest,
            "media_type": parsed.media_type,
            "size": len(image.content),
            "content": image.content,
            "config_digest": parsed.config_digest,
            "subject_digest": parsed.subject,
            "artifact_type": parsed.artifact_type,
            "annotations": parsed.annotations,
            "created_at": now,
            "pushed_by": None,
            "last_pushed_at": now,
            "upstream": image.upstream,
            "upstream_insecure": image.insecure,
        },
    )
    manifest_id = conn.execute(
        select(manifests.c.id).where(manifests.c.repository_id == repo_id, manifests.c.digest == image.digest)
    ).scalar_one()
    if parsed.blobs:
        conn.execute(
            db.insert_ignore(manifest_blobs, "manifest_id", "digest"),
            [{"manifest_id": manifest_id, "digest": d} for d in parsed.blobs],
        )
    if parsed.children:
        conn.execute(
            db.insert_ignore(manifest_children, "manifest_id", "child_digest"),
            [{"manifest_id": manifest_id, "child_digest": d} for d in parsed.children],
        )
    if image.config_blob is not None:
        digest, data = image.config_blob
        if not blobs.link_referenced_blob(db, conn, repo_id, digest, len(data)):
            raise ResourceConflict(
                f"the config of {image.digest} was garbage collected while it was imported; try again",
                kind=streams.IMAGES,
                group=streams.GROUP,
                name=image.digest,
            )
    if known is None:
        added.append(image.digest)
    return manifest_id, added
