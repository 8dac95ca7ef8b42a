"""Manifests and the tags that point at them, with each tag's history."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
from registry.model.context import Registry
from registry.model.manifest_format import ParsedManifest, parse_manifest
from registry.model.repositories import ensure_repository, repository_id_in
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
_TAG_TARGET = select(tags.c.manifest_id).where(
    tags.c.repository_id == bindparam("repo_id"), tags.c.name == bindparam("tag")
)
_INSERT_TAG_EVENT = tag_events.insert()
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
    """Record a verified manifest and point the tag at it. Returns True when a tag changed."""
    now = utcnow()
    db.gc_shared(conn)
    repo_id = ensure_repository(db, conn, repo)
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
    conn.execute(
        db.upsert(manifests, ("repository_id", "digest"), ("last_pushed_at",)),
        {
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
        },
    )
    manifest_id = conn.execute(_MANIFEST_ID, {"repo_id": repo_id, "digest": digest}).scalar_one()
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
    if tag is None:
        return False
    current = conn.execute(_TAG_TARGET, {"repo_id": repo_id, "tag": tag}).scalar()
    if current == manifest_id:
        return False
    conn.execute(
        db.upsert(tags, ("repository_id", "name"), ("manifest_id", "updated_at")),
        {"repository_id": repo_id, "name": tag, "manifest_id": manifest_id, "updated_at": now},
    )
    conn.execute(
        _INSERT_TAG_EVENT,
        {"repository_id": repo_id, "tag": tag, "digest": digest, "created_at": now, "pushed_by": pushed_by},
    )
    return True


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


def _delete(conn: Connection, repo: str, reference: str) -> bool:
    repo_id = repository_id_in(conn, repo)
    if repo_id is None:
        return False
    if not is_digest(reference):
        if not conn.execute(_DELETE_TAG, {"repo_id": repo_id, "tag": reference}).rowcount:
            return False
        conn.execute(_DELETE_TAG_HISTORY, {"repo_id": repo_id, "tag": reference})
        return True
    manifest_id = conn.execute(_MANIFEST_ID, {"repo_id": repo_id, "digest": reference}).scalar()
    if manifest_id is None:
        return False
    conn.execute(delete(tags).where(tags.c.manifest_id == manifest_id))
    conn.execute(delete(tag_events).where(tag_events.c.repository_id == repo_id, tag_events.c.digest == reference))
    conn.execute(delete(manifest_blobs).where(manifest_blobs.c.manifest_id == manifest_id))
    conn.execute(delete(manifest_children).where(manifest_children.c.manifest_id == manifest_id))
    conn.execute(delete(manifests).where(manifests.c.id == manifest_id))
    return True


async def delete_manifest(reg: Registry, repo: str, reference: str) -> None:
    """By digest: the manifest and every tag pointing at it. By tag: only the tag."""
    if not reg.config.storage.delete_enabled:
        raise Unsupported("deletes are disabled on this registry")
    if not await reg.db.write(_delete, repo, reference):
        raise ManifestUnknown(detail={"reference": reference})
    await reg.cache.changed(repo)
