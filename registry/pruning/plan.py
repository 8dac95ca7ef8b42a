"""What a prune run deletes, decided from one snapshot of the metadata (pure logic).

The rules are `oc adm prune images`'s, applied to Okura's tables:
- per tag, the newest `keep_tag_revisions` history items stay, and so does every item
  younger than the cutoff; the rest of the history goes;
- a manifest stays when a tag points at it, a kept history item names it, it was pushed
  after the cutoff, or it is reachable from a kept manifest (index children, the subject
  of a kept referrer, and the referrers of a kept subject); manifests that never had a
  history (pushed by digest) also stay for the grace period, since an index or a tag may
  be about to name them;
- with `prune_registry`, a repository's blob link goes when no manifest left in that
  repository references the blob, and a blob goes when no manifest anywhere references it
  and no repository links it; links and blobs that an upload or mount made pending stay
  for the grace period.
The collector (gc.py) re-checks every deletion against the live database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


class InvalidReferences(Exception):
    """History items name manifests that do not exist, and they may not be ignored."""


@dataclass(frozen=True)
class PruneOptions:
    keep_tag_revisions: int = 3
    keep_younger_than: float = 3600.0  # seconds
    prune_registry: bool = True  # False: metadata only, storage untouched (OpenShift's Removed)
    ignore_invalid_refs: bool = True
    confirm: bool = False  # False: a dry run that only reports
    grace_period: float = 3600.0  # for pending uploads and orphaned storage files
    # Told of each phase as the run goes ("deleting 7,462 manifests"); `okura prune images` prints it.
    progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TagEvent:
    id: int
    repo_id: int
    tag: str
    digest: str
    created: datetime


@dataclass(frozen=True)
class Manifest:
    id: int
    repo_id: int
    digest: str
    pushed: datetime  # the last push, or creation
    subject: str | None
    children: tuple[str, ...]
    blobs: tuple[str, ...]


@dataclass(frozen=True)
class Link:
    repo_id: int
    digest: str
    pending_since: datetime | None


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    pending_since: datetime | None
    deleting: bool


@dataclass
class Snapshot:
    repositories: dict[int, str]
    events: list[TagEvent]
    tags: dict[tuple[int, str], str]  # (repo, tag) -> digest it points at
    manifests: list[Manifest]
    links: list[Link] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)


@dataclass
class Plan:
    events: list[TagEvent]  # history items to delete
    # Manifests to delete, in an order where nothing left references an earlier one:
    # indexes before their children, referrers before their subjects.
    manifests: list[tuple[Manifest, datetime]]  # with the cutoff its re-check uses
    links: list[Link]
    blobs: list[Blob]
    invalid: list[TagEvent]  # history items naming manifests that do not exist

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def _pending(since: datetime | None, grace_cutoff: datetime) -> bool:
    return since is not None and since >= grace_cutoff


def make_plan(
    snap: Snapshot,
    *,
    keep_tag_revisions: int,
    cutoff: datetime,
    grace_cutoff: datetime,
    prune_registry: bool,
    ignore_invalid_refs: bool,
) -> Plan:
    by_key = {(m.repo_id, m.digest): m for m in snap.manifests}

    # 1. Tag history.
    history: dict[tuple[int, str], list[TagEvent]] = defaultdict(list)
    for event in snap.events:
        history[(event.repo_id, event.tag)].append(event)
    kept_events: list[TagEvent] = []
    pruned_events: list[TagEvent] = []
    for items in history.values():
        items.sort(key=lambda e: (e.created, e.id), reverse=True)  # newest first, as OpenShift
        for position, event in enumerate(items):
            if position < keep_tag_revisions or event.created >= cutoff:
                kept_events.append(event)
            else:
                pruned_events.append(event)
    invalid = [e for e in snap.events if (e.repo_id, e.digest) not in by_key]
    if invalid and not ignore_invalid_refs:
        first = invalid[0]
        raise InvalidReferences(
            f"{len(invalid)} tag history item(s) name missing images, e.g. "
            f"{snap.repositories.get(first.repo_id, first.repo_id)}:{first.tag} -> {first.digest}; no changes made"
        )

    # 2. Manifests: what is kept, by reachability from the roots.
    referrers: dict[tuple[int, str], list[Manifest]] = defaultdict(list)
    for m in snap.manifests:
        if m.subject:
            referrers[(m.repo_id, m.subject)].append(m)

    def reachable(seeds: set[tuple[int, str]]) -> set[tuple[int, str]]:
        seen: set[tuple[int, str]] = set()
        stack = [k for k in seeds if k in by_key]
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            m = by_key[key]
            nexts = [(m.repo_id, c) for c in m.children] + [(r.repo_id, r.digest) for r in referrers[key]]
            if m.subject:
                nexts.append((m.repo_id, m.subject))
            stack.extend(k for k in nexts if k in by_key and k not in seen)
        return seen

    ever_tagged = {(e.repo_id, e.digest) for e in snap.events}
    roots = {(e.repo_id, e.digest) for e in kept_events}
    roots |= {(repo_id, digest) for (repo_id, _), digest in snap.tags.items()}
    roots |= {k for k, m in by_key.items() if m.pushed >= cutoff}
    released = reachable({(e.repo_id, e.digest) for e in pruned_events})
    # Never tagged and not released by this run: perhaps an index or tag is on its way.
    roots |= {k for k, m in by_key.items() if k not in ever_tagged and k not in released and m.pushed >= grace_cutoff}
    kept = reachable(roots)
    doomed = {k: m for k, m in by_key.items() if k not in kept}

    # Order: a manifest comes after every doomed manifest that references it.
    dependents: dict[tuple[int, str], int] = {k: 0 for k in doomed}
    for m in doomed.values():
        for target in (*m.children, *([m.subject] if m.subject else [])):
            key = (m.repo_id, target)
            if key in dependents:
                dependents[key] += 1
    ready = sorted((k for k, n in dependents.items() if n == 0), key=lambda k: doomed[k].id)
    ordered: list[tuple[Manifest, datetime]] = []
    while ready:
        key = ready.pop()
        m = doomed[key]
        manifest_cutoff = cutoff if key in released or key in ever_tagged else min(cutoff, grace_cutoff)
        ordered.append((m, manifest_cutoff))
        for target in (*m.children, *([m.subject] if m.subject else [])):
            tkey = (m.repo_id, target)
            if tkey in dependents:
                dependents[tkey] -= 1
                if dependents[tkey] == 0:
                    ready.append(tkey)

    if not prune_registry:
        return Plan(pruned_events, ordered, [], [], invalid)

    # 3. Repository links and blobs nothing left references.
    remaining = [m for k, m in by_key.items() if k not in doomed]
    used_in_repo = {(m.repo_id, d) for m in remaining for d in m.blobs}
    used_anywhere = {d for m in remaining for d in m.blobs}
    links = [
        link
        for link in snap.links
        if (link.repo_id, link.digest) not in used_in_repo and not _pending(link.pending_since, grace_cutoff)
    ]
    doomed_links = {(link.repo_id, link.digest) for link in links}
    still_linked = {link.digest for link in snap.links if (link.repo_id, link.digest) not in doomed_links}
    blobs = [
        b
        for b in snap.blobs
        if not b.deleting
        and b.digest not in used_anywhere
        and b.digest not in still_linked
        and not _pending(b.pending_since, grace_cutoff)
    ]
    return Plan(pruned_events, ordered, links, blobs, invalid)
