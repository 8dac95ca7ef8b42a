"""Online garbage collection: delete what a plan names while pushes go on.

Order against writers. Every write transaction that makes something depend on a blob or
a manifest (upload commit, mount, manifest push) holds the GC lock shared; each delete
transaction here holds it exclusively and re-checks, inside that transaction, that
nothing references the object any more (SQLite's single writer gives the same order).
So a manifest pushed during a run either committed before the re-check, which then sees
it, or waits until the delete committed, and then finds its blob link gone and fails
cleanly instead of pointing at nothing.

Blobs leave in three steps: claim the row (deleting_since), delete from storage, drop the
row. A claimed blob is invisible; an upload of it waits for the row to go and then stores
it afresh (model/blobs.py: reserve_blob), so a push racing a delete rewrites the blob.
Storage is touched only after the metadata says the blob is gone.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, or_, select, update

from registry.metadata.db import as_utc, utcnow
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
from registry.model import changes, events
from registry.model.blobs import STALE_CLAIM, finish_claim
from registry.model.changes import DELETED, Change
from registry.model.context import Registry
from registry.model.streams import IMAGES, stream_changed
from registry.pruning.plan import Blob, Link, Manifest, TagEvent

PRUNER_ACTOR = "system:image-pruner"  # who the pruner's delete events name

BATCH = 500  # objects per delete transaction: short exclusive holds, few round trips
STORAGE_CONCURRENCY = 8

T = TypeVar("T")


def chunks(items: list[T], size: int = BATCH) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- tag history -----------------------------------------------------------------------------


async def delete_events(reg: Registry, events: list[TagEvent]) -> list[TagEvent]:
    """History items are deleted by id: items a push adds meanwhile are never among them.
    Returns the items deleted (one a tag deletion took meanwhile is not)."""
    deleted: list[TagEvent] = []
    for batch in chunks(events):
        by_id = {e.id: e for e in batch}

        def run(conn: Connection, ids: list[int]) -> list[int]:
            reg.db.gc_exclusive(conn)
            stmt = (
                delete(tag_events)
                .where(tag_events.c.id.in_(ids))
                .returning(tag_events.c.id, tag_events.c.repository_id)
            )
            gone = conn.execute(stmt).all()
            _streams_changed(reg, conn, {r.repository_id for r in gone})
            return [r.id for r in gone]

        deleted += [by_id[i] for i in await reg.db.write(run, list(by_id))]
    return deleted


def _streams_changed(reg: Registry, conn: Connection, repo_ids: set[int]) -> None:
    """History items went: the streams changed (their resourceVersions move, watchers hear)."""
    if not repo_ids:
        return
    names = dict(
        conn.execute(select(repositories.c.id, repositories.c.name).where(repositories.c.id.in_(repo_ids))).all()
    )
    entries = [stream_changed(names[i]) for i in sorted(repo_ids) if i in names]
    ids = changes.record(reg.db, conn, [e for e in entries if e is not None])
    stamped = [i for i in sorted(repo_ids) if i in names and stream_changed(names[i]) is not None]
    for repo_id, change_id in zip(stamped, ids, strict=True):
        conn.execute(update(repositories).where(repositories.c.id == repo_id).values(resource_version=change_id))


# -- manifests -------------------------------------------------------------------------------

_parent = manifests.alias("parent")
_referrer = manifests.alias("referrer")
_STILL_UNREFERENCED = (
    select(manifests.c.id, func.coalesce(manifests.c.last_pushed_at, manifests.c.created_at).label("pushed"))
    .where(manifests.c.id.in_(bindparam("ids", expanding=True)))
    .where(~exists().where(tags.c.manifest_id == manifests.c.id))
    .where(
        ~exists().where(
            tag_events.c.repository_id == manifests.c.repository_id, tag_events.c.digest == manifests.c.digest
        )
    )
    .where(
        ~exists()
        .select_from(manifest_children.join(_parent, _parent.c.id == manifest_children.c.manifest_id))
        .where(
            manifest_children.c.child_digest == manifests.c.digest,
            _parent.c.repository_id == manifests.c.repository_id,
        )
    )
    .where(
        ~exists().where(
            _referrer.c.repository_id == manifests.c.repository_id, _referrer.c.subject_digest == manifests.c.digest
        )
    )
)


async def delete_manifests(reg: Registry, ordered: list[tuple[Manifest, datetime]]) -> list[Manifest]:
    """Delete manifests in plan order. Each batch re-checks that no tag, history item,
    index or referrer names them and that nobody pushed them again since the cutoff."""
    # A batch must not hold a manifest together with one that references it (the re-check
    # of the later would still see the earlier), so go level by level: indexes and
    # referrers first, then what they name.
    level: dict[tuple[int, str], int] = {}
    for m, _ in ordered:  # plan order: every referencing manifest comes first
        here = level.setdefault((m.repo_id, m.digest), 0)
        for target in (*m.children, *([m.subject] if m.subject else [])):
            key = (m.repo_id, target)
            level[key] = max(level.get(key, 0), here + 1)
    levels: dict[int, list[tuple[Manifest, datetime]]] = defaultdict(list)
    for item in ordered:
        levels[level[(item[0].repo_id, item[0].digest)]].append(item)
    deleted: list[Manifest] = []
    for depth in sorted(levels):
        deleted += await _delete_manifest_level(reg, levels[depth])
    return deleted


async def _delete_manifest_level(reg: Registry, items: list[tuple[Manifest, datetime]]) -> list[Manifest]:
    deleted: list[Manifest] = []
    for batch in chunks(items):

        def run(conn: Connection, batch: list[tuple[Manifest, datetime]] = batch) -> list[Manifest]:
            reg.db.gc_exclusive(conn)
            by_id = {m.id: (m, cutoff) for m, cutoff in batch}
            rows = conn.execute(_STILL_UNREFERENCED, {"ids": list(by_id)}).all()
            gone = [by_id[r.id][0] for r in rows if as_utc(r.pushed) < by_id[r.id][1]]
            ids = [m.id for m in gone]
            if ids:
                pruned = [
                    events.Event(events.DELETE, r.name, r.media_type, r.digest, actor=PRUNER_ACTOR)
                    for r in conn.execute(
                        select(repositories.c.name, manifests.c.media_type, manifests.c.digest)
                        .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
                        .where(manifests.c.id.in_(ids))
                    )
                ]
                conn.execute(delete(manifest_blobs).where(manifest_blobs.c.manifest_id.in_(ids)))
                conn.execute(delete(manifest_children).where(manifest_children.c.manifest_id.in_(ids)))
                conn.execute(delete(manifests).where(manifests.c.id.in_(ids)))
                digests = sorted({m.digest for m in gone})
                still = set(conn.execute(select(manifests.c.digest).where(manifests.c.digest.in_(digests))).scalars())
                images = [Change(IMAGES, None, d, DELETED, {"name": d}) for d in digests if d not in still]
                events.append(reg.db, conn, pruned)
                changes.record(reg.db, conn, images)
            return gone

        deleted += await reg.db.write(run)
    return deleted


# -- repository blob links -------------------------------------------------------------------

_in_repo = manifests.alias("in_repo")


async def delete_links(reg: Registry, links: list[Link], grace_cutoff: datetime) -> list[Link]:
    """Unlink blobs from repositories where no manifest references them any more."""
    by_repo: dict[int, list[str]] = defaultdict(list)
    for link in links:
        by_repo[link.repo_id].append(link.digest)
    deleted: list[Link] = []
    jobs = [(repo_id, batch) for repo_id, digests in by_repo.items() for batch in chunks(digests)]
    for group in chunks(jobs, 50):

        def run(conn: Connection, group: list[tuple[int, list[str]]] = group) -> list[Link]:
            reg.db.gc_exclusive(conn)
            gone: list[Link] = []
            for repo_id, digests in group:
                stmt = (
                    delete(repository_blobs)
                    .where(repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest.in_(digests))
                    .where(
                        or_(repository_blobs.c.pending_since.is_(None), repository_blobs.c.pending_since < grace_cutoff)
                    )
                    .where(
                        ~exists()
                        .select_from(manifest_blobs.join(_in_repo, _in_repo.c.id == manifest_blobs.c.manifest_id))
                        .where(
                            manifest_blobs.c.digest == repository_blobs.c.digest, _in_repo.c.repository_id == repo_id
                        )
                    )
                    .returning(repository_blobs.c.digest)
                )
                gone += [Link(repo_id, d, None) for d in conn.execute(stmt).scalars()]
            return gone

        deleted += await reg.db.write(run)
    return deleted


# -- blobs -----------------------------------------------------------------------------------


def _unreferenced(grace_cutoff: datetime) -> Any:
    return and_(
        blobs.c.deleting_since.is_(None),
        or_(blobs.c.pending_since.is_(None), blobs.c.pending_since < grace_cutoff),
        ~exists().where(manifest_blobs.c.digest == blobs.c.digest),
        ~exists().where(repository_blobs.c.digest == blobs.c.digest),
    )


async def _delete_from_storage(reg: Registry, digests: Iterable[str]) -> dict[str, bool]:
    """Delete blobs from storage, a few at a time; digest -> whether the file was there."""
    limit = asyncio.Semaphore(STORAGE_CONCURRENCY)

    async def one(digest: str) -> tuple[str, bool]:
        async with limit:
            return digest, await reg.storage.delete(digest)

    return dict(await asyncio.gather(*(one(d) for d in digests)))


async def delete_blobs(reg: Registry, candidates: list[Blob], grace_cutoff: datetime) -> tuple[list[Blob], int]:
    """Claim, delete from storage, drop the rows. Returns the blobs deleted and the bytes
    that left storage."""
    deleted: list[Blob] = []
    freed = 0
    for batch in chunks([b.digest for b in candidates]):
        now = utcnow()

        def claim(conn: Connection, batch: list[str] = batch, now: datetime = now) -> list[Any]:
            reg.db.gc_exclusive(conn)
            stmt = (
                update(blobs)
                .where(blobs.c.digest.in_(batch), _unreferenced(grace_cutoff))
                .values(deleting_since=now)
                .returning(blobs.c.digest, blobs.c.size)
            )
            return conn.execute(stmt).all()

        claimed = await reg.db.write(claim)
        if not claimed:
            continue
        present = await _delete_from_storage(reg, [r.digest for r in claimed])
        done = [r.digest for r in claimed]

        def drop(conn: Connection, done: list[str] = done, now: datetime = now) -> None:
            conn.execute(delete(blobs).where(blobs.c.digest.in_(done), blobs.c.deleting_since == now))

        await reg.db.write(drop)
        for r in claimed:
            deleted.append(Blob(r.digest, r.size, None, False))
            if present.get(r.digest):
                freed += r.size
    return deleted, freed


async def finish_stale_claims(reg: Registry) -> int:
    """Claims a collector left when it died between claiming and dropping."""
    horizon = utcnow() - STALE_CLAIM

    def stale(conn: Connection) -> list[Any]:
        return conn.execute(
            select(blobs.c.digest, blobs.c.deleting_since).where(blobs.c.deleting_since < horizon)
        ).all()

    rows = await reg.db.read(stale)
    for row in rows:
        await finish_claim(reg, row.digest, row.deleting_since)
    return len(rows)


# -- storage with no metadata ----------------------------------------------------------------


async def find_orphans(reg: Registry, grace_cutoff: datetime) -> list[tuple[str, int]]:
    """Blob files older than the grace period that no metadata row records (left by a
    crash between storage and database)."""
    cutoff = grace_cutoff.timestamp()
    old = [(info.digest, info.size) async for info in reg.storage.list_blobs() if info.modified < cutoff]
    orphans: list[tuple[str, int]] = []
    for batch in chunks(old):
        digests = [d for d, _ in batch]

        def known(conn: Connection, digests: list[str] = digests) -> set[str]:
            return set(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests))).scalars())

        recorded = await reg.db.read(known)
        orphans += [(d, size) for d, size in batch if d not in recorded]
    return orphans


async def delete_orphans(reg: Registry, orphans: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], int]:
    """Claim each orphan with a row (an upload reserving it meanwhile wins), delete the
    file, drop the row. Returns the orphans deleted and the bytes freed."""
    deleted: list[tuple[str, int]] = []
    freed = 0
    sizes = dict(orphans)
    for batch in chunks(orphans):
        now = utcnow()

        def claim(conn: Connection, batch: list[tuple[str, int]] = batch, now: datetime = now) -> list[str]:
            reg.db.gc_exclusive(conn)
            won = []
            for digest, size in batch:
                inserted = conn.execute(
                    reg.db.insert_ignore(blobs, "digest"),
                    {"digest": digest, "size": size, "created_at": now, "deleting_since": now},
                ).rowcount
                if inserted:
                    won.append(digest)
            return won

        claimed = await reg.db.write(claim)
        if not claimed:
            continue
        present = await _delete_from_storage(reg, claimed)

        def drop(conn: Connection, claimed: list[str] = claimed, now: datetime = now) -> None:
            conn.execute(delete(blobs).where(blobs.c.digest.in_(claimed), blobs.c.deleting_since == now))

        await reg.db.write(drop)
        for digest in claimed:
            if present.get(digest):
                deleted.append((digest, sizes[digest]))
                freed += sizes[digest]
    return deleted, freed
