"""`oc adm prune images` for Okura: prune tag history, then manifests, repository blob
links and blobs nothing references, while the registry keeps serving pushes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PruneOptions:
    keep_tag_revisions: int = 3
    keep_younger_than: float = 3600.0  # seconds
    prune_registry: bool = True  # False: metadata only, storage untouched (OpenShift's Removed)
    ignore_invalid_refs: bool = True
    confirm: bool = False  # False: a dry run that only reports
    grace_period: float = 3600.0  # for pending uploads and orphaned storage files


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
