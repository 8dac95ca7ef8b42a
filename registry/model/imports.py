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
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, select, update

from registry.errors import ResourceConflict, ResourceNotFound
from registry.metadata.db import Database, utcnow
from registry.metadata.schema import manifests, repositories, tag_events
from registry.metrics import imports_total
from registry.model import blobs, streams
from registry.model.changes import ADDED, Change
from registry.model.context import Registry
from registry.model.import_fetch import (
    FetchedImage as FetchedImage,
)
from registry.model.import_fetch import (
    ImageOutcome as ImageOutcome,
)
from registry.model.import_fetch import (
    ImportSource as ImportSource,
)
from registry.model.import_fetch import (
    RepositoryOutcome as RepositoryOutcome,
)
from registry.model.import_fetch import (
    RepositorySource as RepositorySource,
)
from registry.model.import_fetch import (
    choose_platform as choose_platform,
)
from registry.model.import_fetch import (
    fetch_all,
    imports_from,
)
from registry.model.import_fetch import (
    keyring_for as keyring_for,
)
from registry.model.import_fetch import (
    prioritize_tags as prioritize_tags,
)
from registry.model.manifest_format import parse_manifest
from registry.model.manifests import manifest_row, record_references
from registry.model.streams import Stream, TagCondition, TagReference

log = logging.getLogger("okura.imports")


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


# -- the import ----------------------------------------------------------------------------------


async def import_images(reg: Registry, request: ImportRequest) -> ImportResult:
    """Fetch every image asked for, then (unless a dry run) write them into the stream."""
    current = await _current(reg, request)
    spec = {t.name: t for t in current.spec_tags} if current else {}
    images, repository = await fetch_all(reg, request.namespace, request.images, request.repository, spec)
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
    keep = prior if imports_from(prior, source) else None
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
        manifest_row(repo_id, image.digest, image.content, parsed, now, None, image.upstream, image.insecure),
    )
    manifest_id = conn.execute(
        select(manifests.c.id).where(manifests.c.repository_id == repo_id, manifests.c.digest == image.digest)
    ).scalar_one()
    record_references(db, conn, manifest_id, parsed)
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
