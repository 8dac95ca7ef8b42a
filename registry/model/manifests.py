"""Manifests and the tags that point at them, with each tag's history."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestTooLarge,
    ManifestUnknown,
    Unsupported,
)
from registry.metadata.db import Database, utcnow
from registry.metadata.schema import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tag_events,
    tags,
)
from registry.model import events, streams
from registry.model.changes import ADDED, DELETED, Change
from registry.model.context import Registry
from registry.model.manifest_format import ParsedManifest, parse_manifest
from registry.model.repositories import repository_id_in
from registry.names import is_digest, split_digest


@dataclass(frozen=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class PutResult:
    digest: str
    subject: str | None


def compute_digest(content: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


_BY_DIGEST = (
    select(manifests.c.digest, manifests.c.media_type, manifests.c.content)
    .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
    .where(repositories.c.name == bindparam("repo"), manifests.c.digest == bindparam("reference"))
)
_BY_TAG = (
    select(manifests.c.digest, manifests.c.media_type, manifests.c.content)
    .select_from(
        tags.join(manifests, manifests.c.id == tags.c.manifest_id).join(
            repositories, repositories.c.id == tags.c.repository_id
        )
    )
    .where(repositories.c.name == bindparam("repo"), tags.c.name == bindparam("reference"))
)
# The blobs a manifest names that are linked in its repository, and whether the link or the
# blob is still pending (see registry/pruning/gc.py): only then is there anything to clear.
_LINKED_BLOBS = (
    select(
        repository_blobs.c.digest,
        (repository_blobs.c.pending_since.is_not(None) | blobs.c.pending_since.is_not(None)).label("pending"),
    )
    .join(blobs, blobs.c.digest == repository_blobs.c.digest)
    .where(
        repository_blobs.c.repository_id == bindparam("repo_id"),
        repository_blobs.c.digest.in_(bindparam("digests", expanding=True)),
    )
)
_PRESENT_MANIFESTS = select(manifests.c.digest).where(
    manifests.c.repository_id == bindparam("repo_id"), manifests.c.digest.in_(bindparam("digests", expanding=True))
)
_MANIFEST_ID = select(manifests.c.id).where(
    manifests.c.repository_id == bindparam("repo_id"), manifests.c.digest == bindparam("digest")
)
_ANY_HOLDER = select(manifests.c.repository_id).where(manifests.c.digest == bindparam("digest"))
# A new manifest takes the resourceVersion of the change that added it (the stream's newest).
_STAMP_MANIFEST = (
    update(manifests)
    .where(manifests.c.id == bindparam("manifest_id"))
    .values(
        resource_version=select(repositories.c.resource_version)
        .where(repositories.c.id == manifests.c.repository_id)
        .scalar_subquery()
    )
)
_DELETE_TAG = delete(tags).where(tags.c.repository_id == bindparam("repo_id"), tags.c.name == bindparam("tag"))
# A deleted tag takes its history with it, as deleting an OpenShift image stream tag does.
_DELETE_TAG_HISTORY = delete(tag_events).where(
    tag_events.c.repository_id == bindparam("repo_id"), tag_events.c.tag == bindparam("tag")
)
# Blobs a manifest now references are no longer pending (see registry/pruning/gc.py).
_LINKS_REFERENCED = (
    update(repository_blobs)
    .where(
        repository_blobs.c.repository_id == bindparam("repo_id"),
        repository_blobs.c.digest.in_(bindparam("digests", expanding=True)),
        repository_blobs.c.pending_since.is_not(None),
    )
    .values(pending_since=None)
)
_BLOBS_REFERENCED = (
    update(blobs)
    .where(blobs.c.digest.in_(bindparam("digests", expanding=True)), blobs.c.pending_since.is_not(None))
    .values(pending_since=None)
)


def _select_manifest(conn: Connection, repo: str, reference: str) -> Any:
    query = _BY_DIGEST if is_digest(reference) else _BY_TAG
    return conn.execute(query, {"repo": repo, "reference": reference}).first()


async def get_manifest(reg: Registry, repo: str, reference: str) -> StoredManifest:
    key = ("manifest", reference)
    cached = reg.cache.get(repo, key)
    if cached is not None:
        return cached
    stamp = reg.cache.stamp(repo)
    row = await reg.db.read(_select_manifest, repo, reference)
    if row is None:
        raise ManifestUnknown(detail={"reference": reference})
    found = StoredManifest(row.digest, row.media_type, bytes(row.content))
    reg.cache.put(repo, key, found, stamp, size=len(found.content) + 200)
    return found


def _missing(conn: Connection, query: Any, repo_id: int, wanted: list[str]) -> list[str]:
    present = set(conn.execute(query, {"repo_id": repo_id, "digests": wanted}).scalars())
    return [d for d in wanted if d not in present]


def manifest_row(
    repo_id: int,
    digest: str,
    content: bytes,
    parsed: ParsedManifest,
    now: Any,
    pushed_by: str | None,
    upstream: str | None = None,
    upstream_insecure: bool | None = None,
) -> dict[str, Any]:
    """A manifests row (pushed, or imported from `upstream`)."""
    return {
        "repository_id": repo_id,
        "digest": digest,
        "media_type": parsed.media_type,
        "size": len(content),
        "content": content,
        "config_digest": parsed.config_digest,
        "subject_digest": parsed.subject,
        "artifact_type": parsed.artifact_type,
        "annotations": parsed.annotations,
        "created_at": now,
        "pushed_by": pushed_by,
        "last_pushed_at": now,
        "upstream": upstream,
        "upstream_insecure": upstream_insecure,
    }


def record_references(db: Database, conn: Connection, manifest_id: int, parsed: ParsedManifest) -> None:
    """What a manifest names (its blobs, an index's children), for the pruner and pull-through."""
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


def _store_manifest(
    conn: Connection,
    db: Database,
    repo: str,
    digest: str,
    tag: str | None,
    content: bytes,
    parsed: ParsedManifest,
    pushed_by: str | None,
) -> bool:
    """Record a verified manifest and point the tag at it (and the tags following it), with
    the changes in the change log. Returns True when a tag changed."""
    now = utcnow()
    db.gc_shared(conn)
    repo_id, created, generation, spec_tags = streams.ensure_stream(db, conn, repo)
    if parsed.blobs:
        linked = {
            r.digest: r.pending for r in conn.execute(_LINKED_BLOBS, {"repo_id": repo_id, "digests": parsed.blobs})
        }
        missing = [d for d in parsed.blobs if d not in linked]
        if missing:
            raise ManifestBlobUnknown(f"blob {missing[0]} is not in repository {repo}", detail={"digests": missing})
        pending = sorted(d for d, is_pending in linked.items() if is_pending)  # one lock order for all
        if pending:  # usually only the first manifest naming freshly uploaded blobs
            conn.execute(_LINKS_REFERENCED, {"repo_id": repo_id, "digests": pending})
            conn.execute(_BLOBS_REFERENCED, {"digests": pending})
    if parsed.children:
        missing = _missing(conn, _PRESENT_MANIFESTS, repo_id, parsed.children)
        if missing:
            raise ManifestUnknown(
                f"manifest {missing[0]} referenced by the index is not in repository {repo}",
                detail={"digests": missing},
            )
    stored_before = conn.execute(_ANY_HOLDER, {"digest": digest}).all()
    new_here = all(row.repository_id != repo_id for row in stored_before)
    conn.execute(
        db.upsert(manifests, ("repository_id", "digest"), ("last_pushed_at",)),
        manifest_row(repo_id, digest, content, parsed, now, pushed_by),
    )
    manifest_id = conn.execute(_MANIFEST_ID, {"repo_id": repo_id, "digest": digest}).scalar_one()
    if new_here:
        record_references(db, conn, manifest_id, parsed)
    entries: list[Change | None] = [streams.stream_added(repo)] if created else []
    moved: list[str] = []
    if tag is not None:
        change = streams.point_tag(db, conn, repo_id, tag, manifest_id, digest, generation, pushed_by)
        if change is not None:
            followers = streams.follow_tracking_tags(
                db, conn, repo, repo_id, tag, manifest_id, digest, pushed_by, (generation, spec_tags)
            )
            moved = [tag, *followers]
            entries.append(streams.tag_changed(repo, tag, change))
            entries += [streams.tag_changed(repo, t) for t in moved[1:]]
            if not created:
                entries.append(streams.stream_changed(repo))
    image = Change(streams.IMAGES, None, digest, ADDED) if not stored_before else None
    if image is not None:
        entries.append(image)
    # Every manifest PUT is a push event (distribution's), by tag or by digest; tags that
    # follow the pushed one moved too.
    pushed = events.Event(
        events.PUSH,
        repo,
        parsed.media_type,
        digest,
        len(content),
        tag,
        pushed_by,
        references=tuple(parsed.blobs + parsed.children),
    )
    followed = [replace(pushed, tag=t, references=()) for t in moved[1:]]
    streams.record_and_stamp(db, conn, repo_id, entries, [pushed, *followed])
    if new_here and any(e is not None for e in entries):
        conn.execute(_STAMP_MANIFEST, {"manifest_id": manifest_id})
    return bool(moved)


async def put_manifest(
    reg: Registry, repo: str, reference: str, content: bytes, content_type: str | None, pushed_by: str | None = None
) -> PutResult:
    limit = reg.config.manifests.max_size
    if len(content) > limit:
        raise ManifestTooLarge(f"manifest is {len(content)} bytes; the limit is {limit}")
    if is_digest(reference):
        algorithm, _ = split_digest(reference)
        digest = compute_digest(content, algorithm)
        if digest != reference:
            raise DigestInvalid(
                "manifest digest does not match its content", detail={"expected": reference, "actual": digest}
            )
        tag = None
    else:
        digest = compute_digest(content)
        tag = reference
    parsed = parse_manifest(content, content_type)
    if await reg.db.write(_store_manifest, reg.db, repo, digest, tag, content, parsed, pushed_by):
        await reg.cache.changed(repo)
    return PutResult(digest, parsed.subject)


def _delete(conn: Connection, db: Database, repo: str, reference: str) -> bool:
    repo_id = repository_id_in(conn, repo)
    if repo_id is None:
        return False
    if not is_digest(reference):
        if not conn.execute(_DELETE_TAG, {"repo_id": repo_id, "tag": reference}).rowcount:
            return False
        conn.execute(_DELETE_TAG_HISTORY, {"repo_id": repo_id, "tag": reference})
        streams.record_and_stamp(
            db,
            conn,
            repo_id,
            [streams.stream_changed(repo), streams.tag_changed(repo, reference, DELETED)],
            [events.Event(events.DELETE, repo, tag=reference)],
        )
        return True
    manifest_id = conn.execute(_MANIFEST_ID, {"repo_id": repo_id, "digest": reference}).scalar()
    if manifest_id is None:
        return False
    media_type = conn.execute(select(manifests.c.media_type).where(manifests.c.id == manifest_id)).scalar()
    tag_names = list(conn.execute(select(tags.c.name).where(tags.c.manifest_id == manifest_id)).scalars())
    conn.execute(delete(tags).where(tags.c.manifest_id == manifest_id))
    conn.execute(delete(tag_events).where(tag_events.c.repository_id == repo_id, tag_events.c.digest == reference))
    conn.execute(delete(manifest_blobs).where(manifest_blobs.c.manifest_id == manifest_id))
    conn.execute(delete(manifest_children).where(manifest_children.c.manifest_id == manifest_id))
    conn.execute(delete(manifests).where(manifests.c.id == manifest_id))
    entries: list[Change | None] = [streams.tag_changed(repo, t, DELETED) for t in tag_names]
    if tag_names:
        entries.append(streams.stream_changed(repo))
    if conn.execute(_ANY_HOLDER, {"digest": reference}).first() is None:
        entries.append(Change(streams.IMAGES, None, reference, DELETED, {"name": reference}))
    deleted = [events.Event(events.DELETE, repo, media_type, reference)]
    deleted += [events.Event(events.DELETE, repo, tag=t) for t in tag_names]
    streams.record_and_stamp(db, conn, repo_id, entries, deleted)
    return True


async def delete_manifest(reg: Registry, repo: str, reference: str) -> None:
    """By digest: the manifest and every tag pointing at it. By tag: only the tag."""
    if not reg.config.storage.delete_enabled:
        raise Unsupported("deletes are disabled on this registry")
    if not await reg.db.write(_delete, reg.db, repo, reference):
        raise ManifestUnknown(detail={"reference": reference})
    await reg.cache.changed(repo)
