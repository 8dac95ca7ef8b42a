"""The ImagePruner resource (`imagepruners.imageregistry.operator.openshift.io/cluster`) in
the database: its spec (validated by spec.py), status conditions and the run history.

One row named "cluster" in `image_pruners`, shared by all replicas and created lazily from
the `pruner` config section. Its spec is stored normalised (defaults filled in, durations in
Go's canonical form), so two spellings of one spec compare equal and `metadata.generation`
moves only when the spec really changes. Status is reconciled in the same transaction as
every change, as OpenShift's operator would do a moment later.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from registry import metrics
from registry.cron import next_fire, previous_fire
from registry.errors import ResourceConflict
from registry.kube.meta import new_uid
from registry.kube.values import singleton_metadata, with_transitions
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import image_pruners, prune_runs
from registry.model import changes
from registry.model.changes import ADDED, MODIFIED, Change
from registry.pruning.images import human_bytes
from registry.pruning.spec import (
    API_VERSION,
    KIND,
    NAME,
    Invalid,
    initial_spec,
    merge_patch,
    metadata_from_object,
    spec_from_object,
    type_name,
)

RESOURCE_PLURAL = "imagepruners"
GROUP = API_VERSION.split("/")[0]

if TYPE_CHECKING:
    from registry.model.context import Registry

log = logging.getLogger("okura.pruner")


# OpenShift's CronJob: a due time missed by more than this is not run late.
STARTING_DEADLINE = timedelta(seconds=3600)

INTERRUPTED = "interrupted: the process running it stopped before it finished"


# -- status -------------------------------------------------------------------------------------


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with seconds, as Kubernetes writes metav1.Time."""
    return as_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


def conditions(
    spec: dict[str, Any], last_run: dict[str, Any] | None, previous: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """OpenShift's pruner conditions; lastTransitionTime moves only when a status flips."""
    if spec["suspend"]:
        scheduled = ("False", "Suspended", "The pruner job has been suspended")
    else:
        scheduled = ("True", "Scheduled", "The pruner job has been scheduled")
    if last_run and last_run.get("outcome") == "failed":
        failed = ("True", last_run.get("reason") or "PruneFailed", last_run.get("message") or "the prune run failed")
    else:
        failed = ("False", "Complete", "Pruner completed successfully")
    wanted = {
        "Available": ("True", "AsExpected", "Pruner is scheduled in the registry"),
        "Scheduled": scheduled,
        "Failed": failed,
    }
    return with_transitions(wanted, previous, timestamp(now))


def _reconciled(status: dict[str, Any], spec: dict[str, Any], generation: int, now: datetime) -> dict[str, Any]:
    status = dict(status)
    status["observedGeneration"] = generation
    status["conditions"] = conditions(spec, status.get("lastRun"), status.get("conditions") or [], now)
    return status


def due_time(
    spec: dict[str, Any], status: dict[str, Any], created_at: datetime, now: datetime
) -> tuple[datetime | None, bool]:
    """The most recent scheduled time not run yet, and whether it was missed by more than the
    starting deadline (then it is not run late). (None, False) when nothing is due."""
    base = parse_timestamp(status.get("lastScheduleTime")) or as_utc(created_at)
    due = previous_fire(spec["schedule"], now)
    if due is None or due <= base:
        return None, False
    return due, now - due > STARTING_DEADLINE


# -- the stored resource -------------------------------------------------------------------------


@dataclass
class PrunerState:
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    uid: str = ""
    resource_version: int = 1
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @property
    def suspended(self) -> bool:
        return bool(self.spec["suspend"])


@dataclass
class RunRecord:
    id: int
    trigger: str  # scheduled | manual
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running | succeeded | failed
    message: str | None
    counts: dict[str, int] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "outcome": self.outcome,
            "startTime": timestamp(self.started_at),
            "completionTime": timestamp(self.finished_at) if self.finished_at else None,
            "message": self.message,
            "counts": self.counts,
        }


def _state(row: Any) -> PrunerState:
    return PrunerState(
        generation=row.generation,
        spec=dict(row.spec),
        status=dict(row.status),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        uid=row.uid or "",
        resource_version=row.resource_version,
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
    )


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        trigger=row.trigger,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        outcome=row.outcome,
        message=row.message,
        counts=dict(row.counts) if row.counts else None,
    )


def _select_row(conn: Connection, lock: bool = False) -> Any:
    query = select(image_pruners).where(image_pruners.c.name == NAME)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).first()


def _ensure(conn: Connection, reg: Registry) -> Any:
    """The row, locked; created from the config when missing (replicas racing to create it
    all end up reading the one that won)."""
    row = _select_row(conn, lock=True)
    if row is not None:
        return row
    now = utcnow()
    spec = initial_spec(reg.config.pruner)
    inserted = conn.execute(
        reg.db.insert_ignore(image_pruners, "name"),
        {
            "name": NAME,
            "generation": 1,
            "spec": spec,
            "status": _reconciled({}, spec, 1, now),
            "created_at": now,
            "updated_at": now,
            "uid": new_uid(),
        },
    ).rowcount
    if inserted:  # not when a replica racing us created it first
        _stamp(conn, reg, ADDED)
    return _select_row(conn, lock=True)


def _stamp(conn: Connection, reg: Registry, type_: str) -> None:
    """Record the change in the change log; the resource takes its id as resourceVersion.
    (Its transactions end here: the change log must be their last write.)"""
    (change_id,) = changes.record(reg.db, conn, [Change(RESOURCE_PLURAL, None, NAME, type_)])
    conn.execute(update(image_pruners).where(image_pruners.c.name == NAME).values(resource_version=change_id))


def _publish(state: PrunerState) -> PrunerState:
    metrics.pruner_install_status.set(1 if state.suspended else 2)
    return state


async def get_pruner(reg: Registry) -> PrunerState:
    """The resource, created from the config on first use."""
    row = await reg.db.read(_select_row)
    if row is None:
        row = await reg.db.write(_ensure, reg)
    return _publish(_state(row))


def _trim(conn: Connection, spec: dict[str, Any]) -> None:
    for outcome, limit in (
        ("succeeded", spec["successfulJobsHistoryLimit"]),
        ("failed", spec["failedJobsHistoryLimit"]),
    ):
        old = (
            conn.execute(
                select(prune_runs.c.id)
                .where(prune_runs.c.outcome == outcome)
                .order_by(prune_runs.c.started_at.desc(), prune_runs.c.id.desc())
                .offset(limit)
            )
            .scalars()
            .all()
        )
        if old:
            conn.execute(delete(prune_runs).where(prune_runs.c.id.in_(old)))


async def set_spec(
    reg: Registry,
    spec: dict[str, Any],
    expect_generation: int | None = None,
    metadata: tuple[dict[str, str], dict[str, str]] | None = None,
    expect_version: int | None = None,
) -> tuple[PrunerState | None, bool]:
    """Store a normalised spec (and, given, the labels and annotations); True when anything
    changed (the generation moves with the spec). With `expect_generation`, only if the
    generation is still that (else (None, False)); with `expect_version`, only if the
    resourceVersion is (else 409 Conflict)."""

    def write(conn: Connection) -> tuple[Any, bool]:
        row = _ensure(conn, reg)
        if expect_generation is not None and row.generation != expect_generation:
            return None, False
        if expect_version is not None and row.resource_version != expect_version:
            raise ResourceConflict(
                f'Operation cannot be fulfilled on imagepruners.{GROUP} "{NAME}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                kind="imagepruners",
                group=GROUP,
                name=NAME,
            )
        labels, annotations = (
            metadata if metadata is not None else (dict(row.labels or {}), dict(row.annotations or {}))
        )
        meta_changed = (labels, annotations) != (dict(row.labels or {}), dict(row.annotations or {}))
        if dict(row.spec) == spec and not meta_changed:
            return row, False
        now = utcnow()
        generation = row.generation + 1 if dict(row.spec) != spec else row.generation
        conn.execute(
            update(image_pruners)
            .where(image_pruners.c.name == NAME)
            .values(
                generation=generation,
                spec=spec,
                status=_reconciled(dict(row.status), spec, generation, now),
                updated_at=now,
                labels=labels or None,
                annotations=annotations or None,
            )
        )
        _trim(conn, spec)
        _stamp(conn, reg, MODIFIED)
        return _select_row(conn), True

    row, changed = await reg.db.write(write)
    if row is None:
        return None, False
    return _publish(_state(row)), changed


async def apply_object(
    reg: Registry, body: Any, expect_version: int | None = None, keep_metadata: bool = False
) -> tuple[PrunerState, bool]:
    """Replace the spec, labels and annotations with those of a whole object (PUT, `okura
    pruner apply`; `keep_metadata`: the spec only)."""
    spec = spec_from_object(body)
    metadata = None if keep_metadata else metadata_from_object(body)
    state, changed = await set_spec(reg, spec, metadata=metadata, expect_version=expect_version)
    assert state is not None
    return state, changed


def editable_object(state: PrunerState) -> dict[str, Any]:
    """What a patch applies to: the object without status."""
    metadata: dict[str, Any] = {"name": NAME, "resourceVersion": str(state.resource_version)}
    if state.labels:
        metadata["labels"] = dict(state.labels)
    if state.annotations:
        metadata["annotations"] = dict(state.annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": copy.deepcopy(state.spec)}


async def patch_object(reg: Registry, patch: Any) -> tuple[PrunerState, bool]:
    """Apply a patch to the object (PATCH): a JSON merge patch (RFC 7386), or a function of
    the editable object. When another writer changes the object in between, the patch is
    applied again to the new one, unless it names a resourceVersion (then 409)."""
    if callable(patch):
        apply = patch
    elif isinstance(patch, dict):

        def apply(obj: dict[str, Any]) -> Any:
            return merge_patch(obj, patch)

    else:
        raise Invalid(f"a merge patch must be a JSON object, not {type_name(patch)}")
    for _ in range(10):
        current = await get_pruner(reg)
        patched = apply(editable_object(current))
        spec = spec_from_object(patched)
        named = _named_version(patched)
        if named is not None and named != current.resource_version:
            state, changed = await set_spec(reg, spec, metadata=metadata_from_object(patched), expect_version=named)
            assert state is not None
            return state, changed
        try:
            state, changed = await set_spec(
                reg, spec, metadata=metadata_from_object(patched), expect_version=current.resource_version
            )
        except ResourceConflict:
            continue
        assert state is not None
        return state, changed
    raise Invalid("the ImagePruner kept changing while patching it; try again")


def _named_version(obj: Any) -> int | None:
    version = ((obj.get("metadata") or {}) if isinstance(obj, dict) else {}).get("resourceVersion")
    return int(version) if isinstance(version, str) and version.isdigit() and len(version) < 19 else None


async def set_suspend(reg: Registry, suspend: bool) -> tuple[PrunerState, bool]:
    return await patch_object(reg, {"spec": {"suspend": suspend}})


# -- runs ---------------------------------------------------------------------------------------


async def list_runs(reg: Registry) -> list[RunRecord]:
    """The run history, newest first."""

    def read(conn: Connection) -> list[Any]:
        return conn.execute(
            select(prune_runs).order_by(prune_runs.c.started_at.desc(), prune_runs.c.id.desc())
        ).fetchall()

    return [_run(r) for r in await reg.db.read(read)]


def _begin_run(conn: Connection, trigger: str, now: datetime) -> int:
    """Record a run as started. Call only while holding the run lease: any run still marked
    running then belongs to a process that died holding it."""
    conn.execute(
        update(prune_runs)
        .where(prune_runs.c.outcome == "running")
        .values(outcome="failed", finished_at=now, message=INTERRUPTED)
    )
    result = conn.execute(insert(prune_runs).values(trigger=trigger, dry_run=False, started_at=now, outcome="running"))
    return int(result.inserted_primary_key[0])


async def begin_manual_run(reg: Registry) -> tuple[int, PrunerState]:
    """Record an on-demand run (`okura prune images --confirm`) as started."""

    def write(conn: Connection) -> tuple[int, Any]:
        row = _ensure(conn, reg)
        return _begin_run(conn, "manual", utcnow()), row

    run_id, row = await reg.db.write(write)
    return run_id, _state(row)


async def claim_scheduled_run(reg: Registry, now: datetime) -> tuple[int, PrunerState] | None:
    """If a scheduled time is due at `now` (and the pruner is not suspended), mark it taken in
    status.lastScheduleTime and record a run as started, in one transaction; None otherwise."""

    def write(conn: Connection) -> tuple[int, Any] | None:
        row = _ensure(conn, reg)
        state = _state(row)
        if state.suspended:
            return None
        due, too_late = due_time(state.spec, state.status, state.created_at, now)
        if due is None or too_late:
            return None
        status = dict(state.status)
        status["lastScheduleTime"] = timestamp(due)
        conn.execute(
            update(image_pruners).where(image_pruners.c.name == NAME).values(status=status, updated_at=utcnow())
        )
        run_id = _begin_run(conn, "scheduled", utcnow())
        _stamp(conn, reg, MODIFIED)
        return run_id, _select_row(conn)

    claimed = await reg.db.write(write)
    if claimed is None:
        return None
    return claimed[0], _state(claimed[1])


async def record_missed(reg: Registry, due: datetime) -> bool:
    """Note a scheduled time that was missed by more than the starting deadline; True the first
    time it is noted."""

    def write(conn: Connection) -> bool:
        row = _ensure(conn, reg)
        status = dict(row.status)
        if status.get("lastMissedScheduleTime") == timestamp(due):
            return False
        status["lastMissedScheduleTime"] = timestamp(due)
        conn.execute(update(image_pruners).where(image_pruners.c.name == NAME).values(status=status))
        _stamp(conn, reg, MODIFIED)
        return True

    first = await reg.db.write(write)
    if first:
        log.warning(
            "image pruner: the run scheduled for %s was missed by more than %ds; not running it late",
            timestamp(due),
            STARTING_DEADLINE.total_seconds(),
        )
    return first


async def finish_run(
    reg: Registry,
    run_id: int,
    outcome: str,
    message: str | None,
    counts: dict[str, int] | None,
    reason: str | None = None,
) -> RunRecord:
    """Record how a run ended, update status (lastRun, conditions) and trim the history."""

    def write(conn: Connection) -> Any:
        now = utcnow()
        # Not if the run was meanwhile marked interrupted by a process that took the lease over.
        done = conn.execute(
            update(prune_runs)
            .where(prune_runs.c.id == run_id, prune_runs.c.outcome == "running")
            .values(outcome=outcome, finished_at=now, message=message, counts=counts)
        ).rowcount
        run = conn.execute(select(prune_runs).where(prune_runs.c.id == run_id)).first()
        row = _ensure(conn, reg)
        if done and run is not None:
            status = dict(row.status)
            last = {
                "id": run_id,
                "trigger": run.trigger,
                "outcome": outcome,
                "startTime": timestamp(as_utc(run.started_at)),
                "completionTime": timestamp(now),
                "message": message,
            }
            if outcome == "failed":
                last["reason"] = reason or "PruneFailed"
            else:
                status["lastSuccessfulTime"] = timestamp(now)
            status["lastRun"] = last
            status = _reconciled(status, dict(row.spec), row.generation, now)
            conn.execute(
                update(image_pruners).where(image_pruners.c.name == NAME).values(status=status, updated_at=now)
            )
            _trim(conn, dict(row.spec))
            _stamp(conn, reg, MODIFIED)
        return run

    run = await reg.db.write(write)
    if run is None:  # removed meanwhile by another process's history trimming
        return RunRecord(run_id, "", utcnow(), utcnow(), outcome, message, counts)
    return _run(run)


# -- the object as the API shows it ---------------------------------------------------------------


def render(state: PrunerState, runs: list[RunRecord], now: datetime | None = None) -> dict[str, Any]:
    """The full Kubernetes-style object: spec with every default, status with conditions,
    the schedule and the run history (newest first)."""
    now = now or utcnow()
    status: dict[str, Any] = {
        "observedGeneration": state.status.get("observedGeneration", state.generation),
        "conditions": state.status.get("conditions") or conditions(state.spec, None, [], now),
    }
    for key in ("lastScheduleTime", "lastSuccessfulTime", "lastMissedScheduleTime"):
        if state.status.get(key):
            status[key] = state.status[key]
    if not state.suspended:
        due, too_late = due_time(state.spec, state.status, state.created_at, now)
        upcoming = due if due is not None and not too_late else next_fire(state.spec["schedule"], now)
        if upcoming is not None:
            status["nextScheduleTime"] = timestamp(upcoming)
    if state.status.get("lastRun"):
        status["lastRun"] = state.status["lastRun"]
    status["runs"] = [r.as_json() for r in runs]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": singleton_metadata(
            NAME,
            state.uid,
            state.resource_version,
            state.generation,
            timestamp(state.created_at),
            state.labels,
            state.annotations,
        ),
        "spec": copy.deepcopy(state.spec),
        "status": status,
    }


async def current_object(reg: Registry) -> dict[str, Any]:
    state = await get_pruner(reg)
    return render(state, await list_runs(reg))


# -- reports --------------------------------------------------------------------------------------


def summary(counts: dict[str, int], dry_run: bool) -> str:
    """One line as `oc adm prune images` prints it, e.g. "Deleted 4 image stream tag item(s),
    3 manifest(s), 5 repository blob link(s), 6 blob(s) (12.3 MiB)"."""
    parts = [
        f"{counts.get('tagRevisions', 0)} image stream tag item(s)",
        f"{counts.get('manifests', 0)} manifest(s)",
        f"{counts.get('repositoryBlobs', 0)} repository blob link(s)",
        f"{counts.get('blobs', 0)} blob(s)",
    ]
    if counts.get("orphans"):
        parts.append(f"{counts['orphans']} orphaned storage file(s)")
    verb = "Would delete" if dry_run else "Deleted"
    return f"{verb} {', '.join(parts)} ({human_bytes(counts.get('bytesFreed', 0))})"
