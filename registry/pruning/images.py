"""`oc adm prune images` for Okura: prune tag history, then manifests, repository blob
links and blobs nothing references, while the registry keeps serving pushes."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, text

from registry import clock
from registry.metadata.db import as_utc
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
from registry.model import registry_config
from registry.model.context import Registry
from registry.pruning import gc
from registry.pruning.plan import (
    Blob,
    InvalidReferences,
    Link,
    Manifest,
    Plan,
    PruneOptions,
    Snapshot,
    TagEvent,
    make_plan,
)

log = logging.getLogger("okura.pruner")


@dataclass
class PruneReport:
    """What a run deleted (or, in a dry run, would delete)."""

    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    tag_revisions: int = 0
    manifests: int = 0
    repository_blobs: int = 0  # links removed from repositories
    blobs: int = 0
    bytes_freed: int = 0
    orphans: int = 0  # storage files with no metadata
    # Human-readable lines naming each deleted object, for `okura prune images`.
    details: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "tagRevisions": self.tag_revisions,
            "manifests": self.manifests,
            "repositoryBlobs": self.repository_blobs,
            "blobs": self.blobs,
            "bytesFreed": self.bytes_freed,
            "orphans": self.orphans,
        }


class PruneFailed(Exception):
    """The run could not go on; what it deleted before stays deleted, and is reported."""

    def __init__(self, message: str, report: PruneReport):
        super().__init__(message)
        self.report = report


# -- the snapshot --------------------------------------------------------------------------------


def _load_snapshot(conn: Connection, with_storage: bool) -> Snapshot:
    if conn.dialect.name == "postgresql":
        # One consistent view across the queries below (SQLite's read transaction is one).
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        conn.execute(text("SET LOCAL statement_timeout = 0"))  # full-table reads: no statement timeout
    repos = {r.id: r.name for r in conn.execute(select(repositories.c.id, repositories.c.name))}
    events = [
        TagEvent(r.id, r.repository_id, r.tag, r.digest, as_utc(r.created_at))
        for r in conn.execute(
            select(
                tag_events.c.id,
                tag_events.c.repository_id,
                tag_events.c.tag,
                tag_events.c.digest,
                tag_events.c.created_at,
            )
        )
    ]
    current = {
        (r.repository_id, r.name): r.digest
        for r in conn.execute(
            select(tags.c.repository_id, tags.c.name, manifests.c.digest).join(
                manifests, manifests.c.id == tags.c.manifest_id
            )
        )
    }
    children: dict[int, list[str]] = defaultdict(list)
    for r in conn.execute(select(manifest_children.c.manifest_id, manifest_children.c.child_digest)):
        children[r.manifest_id].append(r.child_digest)
    refs: dict[int, list[str]] = defaultdict(list)
    for r in conn.execute(select(manifest_blobs.c.manifest_id, manifest_blobs.c.digest)):
        refs[r.manifest_id].append(r.digest)
    found = [
        Manifest(
            r.id,
            r.repository_id,
            r.digest,
            as_utc(r.last_pushed_at or r.created_at),
            r.subject_digest,
            tuple(children.get(r.id, ())),
            tuple(refs.get(r.id, ())),
        )
        for r in conn.execute(
            select(
                manifests.c.id,
                manifests.c.repository_id,
                manifests.c.digest,
                manifests.c.created_at,
                manifests.c.last_pushed_at,
                manifests.c.subject_digest,
            )
        )
    ]
    snap = Snapshot(repos, events, current, found)
    if with_storage:
        snap.links = [
            Link(r.repository_id, r.digest, r.pending_since and as_utc(r.pending_since))
            for r in conn.execute(
                select(repository_blobs.c.repository_id, repository_blobs.c.digest, repository_blobs.c.pending_since)
            )
        ]
        snap.blobs = [
            Blob(r.digest, r.size, r.pending_since and as_utc(r.pending_since), r.deleting_since is not None)
            for r in conn.execute(select(blobs.c.digest, blobs.c.size, blobs.c.pending_since, blobs.c.deleting_since))
        ]
    return snap


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- the run -------------------------------------------------------------------------------------


async def prune_images(reg: Registry, options: PruneOptions) -> PruneReport:
    """Prune as `oc adm prune images` does (see plan.py for the rules). A dry run only
    reports. Raises PruneFailed, carrying the partial report, when a step fails.

    While the registry is Removed (its Config's managementState), only metadata is pruned and
    storage is left untouched, whatever the options say (pruneRegistry can only narrow this)."""
    await registry_config.refresh(reg)
    removed = options.prune_registry and reg.settings.current.removed
    if removed:
        options = replace(options, prune_registry=False)
    now = clock.now()
    report = PruneReport(dry_run=not options.confirm, started_at=now)
    cutoff = now - timedelta(seconds=options.keep_younger_than)
    grace_cutoff = now - timedelta(seconds=options.grace_period)
    say = _Progress(options.progress)
    if removed:
        note = "The registry is Removed (Config managementState): pruning metadata only, storage is left untouched"
        log.info(note)
        if options.progress is not None:
            options.progress(note)
    try:
        say("Reading image metadata")
        snap = await reg.db.read(_load_snapshot, options.prune_registry, bounded=False)  # full-table reads
        say.done(
            f"{len(snap.repositories):,} repositories, {len(snap.manifests):,} manifests, "
            f"{len(snap.events):,} tag revisions, {len(snap.blobs):,} blobs"
        )
        plan = make_plan(
            snap,
            keep_tag_revisions=options.keep_tag_revisions,
            cutoff=cutoff,
            grace_cutoff=grace_cutoff,
            prune_registry=options.prune_registry,
            ignore_invalid_refs=options.ignore_invalid_refs,
        )
    except InvalidReferences as e:
        report.finished_at = clock.now()
        raise PruneFailed(str(e), report) from e
    name = snap.repositories.get
    try:
        if report.dry_run:
            await _report_plan(reg, plan, name, options, grace_cutoff, report)
        else:
            await _apply_plan(reg, plan, name, options, grace_cutoff, report, say)
    except Exception as e:
        report.finished_at = clock.now()
        raise PruneFailed(f"{type(e).__name__}: {e}", report) from e
    report.finished_at = clock.now()
    return report


def _record(
    report: PruneReport,
    name: Callable[[int], str | None],
    events: Sequence[TagEvent] = (),
    manifests: Sequence[Manifest] = (),
    links: Sequence[Link] = (),
    blobs: Sequence[Blob] = (),
    orphans: Sequence[tuple[str, int]] = (),
) -> None:
    """Count what went (or would go) and name each object in the report's details."""
    report.tag_revisions += len(events)
    report.manifests += len(manifests)
    report.repository_blobs += len(links)
    report.blobs += len(blobs)
    report.orphans += len(orphans)
    for e in events:
        report.details.append(f"tag revision {name(e.repo_id)}:{e.tag} {e.digest} ({e.created:%Y-%m-%dT%H:%M:%SZ})")
    report.details += [f"manifest {name(m.repo_id)}@{m.digest}" for m in manifests]
    report.details += [f"blob link {name(link.repo_id)} {link.digest}" for link in links]
    report.details += [f"blob {b.digest} ({human_bytes(b.size)})" for b in blobs]
    report.details += [f"orphaned blob {digest} ({human_bytes(size)})" for digest, size in orphans]


async def _report_plan(
    reg: Registry,
    plan: Plan,
    name: Callable[[int], str | None],
    options: PruneOptions,
    grace_cutoff: datetime,
    report: PruneReport,
) -> None:
    """A dry run: what the plan would delete, nothing changed."""
    orphans = await gc.find_orphans(reg, grace_cutoff) if options.prune_registry else []
    _record(report, name, plan.events, [m for m, _ in plan.manifests], plan.links, plan.blobs, orphans)
    report.bytes_freed = plan.bytes + sum(size for _, size in orphans)


async def _apply_plan(
    reg: Registry,
    plan: Plan,
    name: Callable[[int], str | None],
    options: PruneOptions,
    grace_cutoff: datetime,
    report: PruneReport,
    say: _Progress,
) -> None:
    """Delete in the order the issue gives: history, manifests, links, blobs, orphans.
    Each step re-checks against the live database (gc.py); the report counts what went."""
    say(f"Deleting {len(plan.events):,} tag revisions")
    _record(report, name, events=await gc.delete_events(reg, plan.events))
    say.done(f"{report.tag_revisions:,} deleted")
    say(f"Deleting {len(plan.manifests):,} manifests")
    gone = await gc.delete_manifests(reg, plan.manifests)
    _record(report, name, manifests=gone)
    say.done(f"{len(gone):,} deleted")
    changed = {m.repo_id for m in gone}
    try:
        if options.prune_registry:
            say(f"Unlinking {len(plan.links):,} blobs from repositories")
            unlinked = await gc.delete_links(reg, plan.links, grace_cutoff)
            _record(report, name, links=unlinked)
            say.done(f"{len(unlinked):,} unlinked")
            changed |= {link.repo_id for link in unlinked}
    finally:
        # Cached manifests and links of these repositories retire here and on every replica.
        for repo_id in changed:
            repo = name(repo_id)
            if repo is not None:
                await reg.cache.changed(repo)
    if not options.prune_registry:
        return
    await gc.finish_stale_claims(reg)
    say(f"Deleting {len(plan.blobs):,} blobs ({human_bytes(plan.bytes)})")
    deleted, freed = await gc.delete_blobs(reg, plan.blobs, grace_cutoff)
    _record(report, name, blobs=deleted)
    say.done(f"{len(deleted):,} deleted, {human_bytes(freed)} freed")
    say("Deleting storage files no metadata records")
    orphans, orphan_bytes = await gc.delete_orphans(reg, await gc.find_orphans(reg, grace_cutoff))
    _record(report, name, orphans=orphans)
    say.done(f"{len(orphans):,} deleted")
    report.bytes_freed = freed + orphan_bytes


class _Progress:
    """Phases of a run, each reported when it starts and when it ends (with its duration)."""

    def __init__(self, sink: Callable[[str], None] | None):
        self.sink = sink
        self.started = 0.0

    def __call__(self, phase: str) -> None:
        self.started = time.monotonic()
        if self.sink is not None:
            self.sink(f"{phase}...")

    def done(self, outcome: str) -> None:
        if self.sink is not None:
            self.sink(f"  {outcome} ({time.monotonic() - self.started:.1f}s)")
