"""Running the pruner on its schedule, inside the server (OpenShift runs it as a CronJob with
`concurrencyPolicy: Forbid` and `startingDeadlineSeconds: 3600`).

Every replica ticks every `pruner.check_interval` and reads the resource. When a scheduled
time is due, the replica takes the "image-pruner" lease in the database, claims the due time
(status.lastScheduleTime, in one transaction with the run's history row) and prunes while
renewing the lease. The lease is also what an on-demand `okura prune images --confirm` takes,
so there are never two runs at once; a run whose process died leaves the lease to expire
(after LEASE_TTL), and whoever takes it next marks that run failed (interrupted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from registry import metrics
from registry.errors import Unavailable
from registry.metadata import leases
from registry.metadata.db import utcnow
from registry.model.context import Registry
from registry.periodic import every
from registry.pruning import resource, spec
from registry.pruning.images import PruneReport
from registry.pruning.plan import PruneOptions
from registry.pruning.resource import RunRecord

log = logging.getLogger("okura.pruner")

LEASE = "image-pruner"
LEASE_TTL = 90.0  # seconds; renewed every third of it while a run lasts

STOPPED = "interrupted: the process running it was stopped (shutdown or interrupt)"

PruneFn = Callable[[Registry, PruneOptions], Awaitable[PruneReport]]


class LeaseLost(Exception):
    """The run lease could not be renewed; the run was stopped so that it never overlaps
    with a run another process starts after taking the lease."""


def default_prune() -> PruneFn:
    from registry.pruning import images

    return images.prune_images  # type: ignore[attr-defined]


def holder_for(reg: Registry) -> str:
    """This process's lease holder name, distinct per Registry (tests run two "replicas" in
    one process)."""
    return f"{leases.HOLDER}:{id(reg):x}"


async def acquire(reg: Registry, holder: str, ttl: float = LEASE_TTL) -> bool:
    return await leases.acquire(reg.db, LEASE, ttl=ttl, holder=holder)


async def release(reg: Registry, holder: str) -> None:
    try:
        await leases.release(reg.db, LEASE, holder=holder)
    except Unavailable as e:  # it expires on its own
        log.warning("image pruner: could not release the lease: %s", e.message)


async def _holding_lease(reg: Registry, work: Awaitable[PruneReport], holder: str, ttl: float) -> PruneReport:
    """Await `work` while renewing the lease; cancel it if the lease is lost."""
    task = asyncio.ensure_future(work)
    last_renewed = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=ttl / 3)
            if done:
                return task.result()
            try:
                held = await acquire(reg, holder, ttl)
                if held:
                    last_renewed = time.monotonic()
            except Unavailable as e:
                log.warning("image pruner: could not renew the lease: %s", e.message)
                held = time.monotonic() - last_renewed < ttl * 2 / 3
            if not held:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise LeaseLost("the run lease was lost (database unreachable or taken over); run stopped")
    finally:
        if not task.done():  # we were cancelled (shutdown)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def execute_run(
    reg: Registry,
    run_id: int,
    options: PruneOptions,
    *,
    holder: str,
    prune: PruneFn | None = None,
    lease_ttl: float = LEASE_TTL,
) -> tuple[RunRecord, PruneReport | None]:
    """Run a recorded (confirmed) prune while holding the lease, record how it ended, count it
    in the metrics. Failures are recorded, not raised (cancellation is recorded and re-raised)."""
    started = time.perf_counter()
    report: PruneReport | None = None
    reason: str | None = None
    try:
        fn = prune or default_prune()
        report = await _holding_lease(reg, fn(reg, options), holder, lease_ttl)
        outcome, message = "succeeded", resource.summary(report.counts(), dry_run=False)
    except asyncio.CancelledError:
        await resource.finish_run(reg, run_id, "failed", STOPPED, None, "Interrupted")
        metrics.pruner_runs.labels("failed").inc()
        raise
    except LeaseLost as e:
        outcome, message, reason = "failed", str(e), "LeaseLost"
    except Exception as e:
        log.exception("image pruner: run %d failed", run_id)
        outcome, message = "failed", (getattr(e, "message", None) or str(e) or type(e).__name__)
        report = getattr(e, "report", None)  # PruneFailed: what went before the failure
    elapsed = time.perf_counter() - started
    record = await resource.finish_run(
        reg, run_id, outcome, message, report.counts() if report else None, reason=reason
    )
    metrics.pruner_runs.labels(outcome).inc()
    metrics.pruner_run_duration.observe(elapsed)
    if report is not None:
        for kind, count in (
            ("tag_revisions", report.tag_revisions),
            ("manifests", report.manifests),
            ("repository_blobs", report.repository_blobs),
            ("blobs", report.blobs),
            ("orphans", report.orphans),
        ):
            metrics.pruner_deleted.labels(kind).inc(count)
        metrics.pruner_freed_bytes.inc(report.bytes_freed)
    log.info("image pruner: run %d (%s) %s in %.1fs: %s", run_id, record.trigger or "?", outcome, elapsed, message)
    return record, report


async def tick(
    reg: Registry,
    now: datetime | None = None,
    *,
    prune: PruneFn | None = None,
    holder: str | None = None,
    lease_ttl: float = LEASE_TTL,
) -> RunRecord | None:
    """One look at the schedule: if a scheduled time is due at `now` and was not run yet, run
    the pruner (confirmed, with the spec's options) and return the finished run's record.
    None when nothing was due, the pruner is suspended, the due time was missed by more than
    the starting deadline, or another process holds the run lease."""
    now = now or utcnow()
    state = await resource.get_pruner(reg)
    if state.suspended:
        return None
    due, too_late = resource.due_time(state.spec, state.status, state.created_at, now)
    if due is None:
        return None
    if too_late:
        if state.status.get("lastMissedScheduleTime") != resource.timestamp(due):
            await resource.record_missed(reg, due)
        return None
    holder = holder or holder_for(reg)
    if not await acquire(reg, holder, lease_ttl):
        return None  # a run is in progress elsewhere (Forbid)
    try:
        claimed = await resource.claim_scheduled_run(reg, now)
        if claimed is None:  # run by another replica meanwhile, or the spec changed
            return None
        run_id, state = claimed
        options = spec.prune_options(state.spec, reg.config.pruner.grace_period, confirm=True)
        record, _ = await execute_run(reg, run_id, options, holder=holder, prune=prune, lease_ttl=lease_ttl)
        return record
    finally:
        await release(reg, holder)


async def run_forever(reg: Registry, interval: float | None = None, prune: PruneFn | None = None) -> None:
    """The scheduler loop the server runs (a background job of the runtime)."""
    await every(
        interval or reg.config.pruner.check_interval, "image pruner schedule check", lambda: tick(reg, prune=prune)
    )
