"""The ImagePruner resource (`imagepruners.imageregistry.operator.openshift.io/cluster`):
spec defaults and validation, merge patches, status conditions and the run history.

One row named "cluster" in `image_pruners`, shared by all replicas and created lazily from
the `pruner` config section. Its spec is stored normalised (defaults filled in, durations in
Go's canonical form), so two spellings of one spec compare equal and `metadata.generation`
moves only when the spec really changes. Status is reconciled in the same transaction as
every change, as OpenShift's operator would do a moment later.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from registry import metrics
from registry.errors import Invalid
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import image_pruners, prune_runs
from registry.pruning.images import PruneOptions, human_bytes

if TYPE_CHECKING:
    from registry.config import PrunerConfig
    from registry.model.context import Registry

log = logging.getLogger("okura.pruner")

GROUP = "imageregistry.operator.openshift.io"
API_VERSION = f"{GROUP}/v1"
KIND = "ImagePruner"
NAME = "cluster"
RESOURCE = f"imagepruner.{GROUP}/{NAME}"

DEFAULT_SCHEDULE = "0 0 * * *"
DEFAULT_KEEP_YOUNGER_THAN = 60 * 60 * 10**9  # ns
LOG_LEVELS = ("Normal", "Debug", "Trace", "TraceAll")
# OpenShift's CronJob: a due time missed by more than this is not run late.
STARTING_DEADLINE = timedelta(seconds=3600)

INTERRUPTED = "interrupted: the process running it stopped before it finished"


# -- Go durations (metav1.Duration) -------------------------------------------------------------

_GO_UNITS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign
    "\u03bcs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_PART = re.compile(r"(\d*\.?\d*)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration ("60m", "1h30m", "90s", "1.5h", "0"): nanoseconds.
    Negative durations are refused (nothing here means anything negative)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration string")
    s = text.strip()
    if s.startswith("-"):
        raise ValueError(f"{text!r} is negative")
    s = s.removeprefix("+")
    if s == "0":
        return 0
    if not s:
        raise ValueError("empty duration")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"{text!r} is not a duration such as 60m, 1h30m or 90s (units h, m, s, ms, us, ns)")
        total += Fraction(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return int(total)


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's Duration.String(): 3600s -> "1h0m0s", 90s -> "1m30s", 0 -> "0s"."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u < 10**9:
        if u < 10**3:
            return f"{sign}{u}ns"
        if u < 10**6:
            return f"{sign}{_fraction(u, 10**3)}\u00b5s"
        return f"{sign}{_fraction(u, 10**6)}ms"
    seconds = _fraction(u % (60 * 10**9), 10**9) + "s"
    minutes = u // (60 * 10**9)
    if not minutes:
        return sign + seconds
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{hours}h{minutes}m{seconds}"


# -- cron ---------------------------------------------------------------------------------------

_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def validate_schedule(schedule: str) -> str:
    """A Kubernetes CronJob schedule: five fields, or one of @yearly, @monthly, @weekly,
    @daily, @midnight, @hourly; "" means the default. Returns the schedule to store."""
    from croniter import CroniterBadDateError, croniter

    if not isinstance(schedule, str):
        raise ValueError(f"must be a string, not {_type_name(schedule)}")
    text = " ".join(schedule.split())
    if not text:
        return DEFAULT_SCHEDULE
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ValueError(f"{schedule!r}: unknown descriptor (known: {', '.join(_DESCRIPTORS)})")
    elif len(text.split(" ")) != 5:
        raise ValueError(f"{schedule!r} is not a cron schedule: expected 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(text):
        raise ValueError(f"{schedule!r} is not a valid cron schedule")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{schedule!r} never fires") from None
    return text


def _cron(schedule: str, start: datetime) -> Any:
    from croniter import croniter

    return croniter(schedule, start)


def previous_fire(schedule: str, now: datetime) -> datetime | None:
    """The latest time <= now the schedule fires at (UTC)."""
    from croniter import CroniterBadDateError

    try:
        return as_utc(_cron(schedule, now + timedelta(microseconds=1)).get_prev(datetime))
    except CroniterBadDateError:
        return None


def next_fire(schedule: str, after: datetime) -> datetime | None:
    from croniter import CroniterBadDateError

    try:
        return as_utc(_cron(schedule, after).get_next(datetime))
    except CroniterBadDateError:
        return None


# -- spec ---------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{field}: must be a boolean, not {_type_name(value)}", detail={"field": field})
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{field}: must be an integer, not {_type_name(value)}", detail={"field": field})
    if value < 0:
        raise Invalid(f"{field}: must not be negative ({value})", detail={"field": field})
    if value > 2**31 - 1:
        raise Invalid(f"{field}: must be at most {2**31 - 1}", detail={"field": field})
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{field}: must be an object, not {_type_name(value)}", detail={"field": field})
    return value


# Fields OpenShift uses to place the pruner's pod: kept as given, no effect here.
_PLACEMENT = ("resources", "affinity", "nodeSelector", "tolerations")
SPEC_FIELDS = (
    "schedule",
    "suspend",
    "keepTagRevisions",
    "keepYoungerThan",
    "keepYoungerThanDuration",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "ignoreInvalidImageReferences",
    "pruneRegistry",
    "logLevel",
    *_PLACEMENT,
)


def normalize_spec(raw: Any, where: str = "spec") -> dict[str, Any]:
    """Validate a spec and fill in the defaults. Omitted (or null) fields take the API's
    defaults, as on a Kubernetes PUT; raises Invalid naming the field."""
    if raw is None:
        raw = {}
    raw = _object(raw, where)
    unknown = sorted(str(k) for k in raw if k not in SPEC_FIELDS)
    if unknown:
        field = f"{where}.{unknown[0]}"
        raise Invalid(f"{field}: unknown field (known: {', '.join(SPEC_FIELDS)})", detail={"field": field})
    given = {k: v for k, v in raw.items() if v is not None}

    def f(name: str) -> str:
        return f"{where}.{name}"

    spec: dict[str, Any] = {}
    try:
        spec["schedule"] = validate_schedule(given.get("schedule", ""))
    except ValueError as e:
        raise Invalid(f"{f('schedule')}: {e}", detail={"field": f("schedule")}) from None
    spec["suspend"] = _bool(given.get("suspend", False), f("suspend"))
    spec["keepTagRevisions"] = _count(given.get("keepTagRevisions", 3), f("keepTagRevisions"))
    if "keepYoungerThan" in given:  # deprecated: nanoseconds
        spec["keepYoungerThan"] = _count_ns(given["keepYoungerThan"], f("keepYoungerThan"))
    if "keepYoungerThanDuration" in given:
        value = given["keepYoungerThanDuration"]
        if not isinstance(value, str):
            raise Invalid(
                f"{f('keepYoungerThanDuration')}: must be a duration string such as 60m, not {_type_name(value)}",
                detail={"field": f("keepYoungerThanDuration")},
            )
        try:
            spec["keepYoungerThanDuration"] = format_go_duration(parse_go_duration(value))
        except ValueError as e:
            raise Invalid(
                f"{f('keepYoungerThanDuration')}: {e}", detail={"field": f("keepYoungerThanDuration")}
            ) from None
    elif "keepYoungerThan" not in spec:
        spec["keepYoungerThanDuration"] = format_go_duration(DEFAULT_KEEP_YOUNGER_THAN)
    spec["successfulJobsHistoryLimit"] = _count(
        given.get("successfulJobsHistoryLimit", 3), f("successfulJobsHistoryLimit")
    )
    spec["failedJobsHistoryLimit"] = _count(given.get("failedJobsHistoryLimit", 3), f("failedJobsHistoryLimit"))
    spec["ignoreInvalidImageReferences"] = _bool(
        given.get("ignoreInvalidImageReferences", False), f("ignoreInvalidImageReferences")
    )
    spec["pruneRegistry"] = _bool(given.get("pruneRegistry", True), f("pruneRegistry"))
    level = given.get("logLevel") or "Normal"
    if level not in LOG_LEVELS:
        raise Invalid(
            f"{f('logLevel')}: must be one of {', '.join(LOG_LEVELS)}, not {level!r}", detail={"field": f("logLevel")}
        )
    spec["logLevel"] = level
    for name in ("resources", "affinity", "nodeSelector"):
        if name in given:
            spec[name] = copy.deepcopy(_object(given[name], f(name)))
    for key, value in spec.get("nodeSelector", {}).items():
        if not isinstance(value, str):
            raise Invalid(f"{f('nodeSelector')}.{key}: must be a string", detail={"field": f(f"nodeSelector.{key}")})
    if "tolerations" in given:
        tolerations = given["tolerations"]
        if not isinstance(tolerations, list):
            raise Invalid(
                f"{f('tolerations')}: must be an array, not {_type_name(tolerations)}",
                detail={"field": f("tolerations")},
            )
        for i, item in enumerate(tolerations):
            _object(item, f(f"tolerations[{i}]"))
        spec["tolerations"] = copy.deepcopy(tolerations)
    _check_json(spec, where)
    return spec


def _count_ns(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{field}: must be an integer (nanoseconds), not {_type_name(value)}", detail={"field": field})
    if value < 0:
        raise Invalid(f"{field}: must not be negative ({value})", detail={"field": field})
    if value > 2**63 - 1:
        raise Invalid(f"{field}: out of range", detail={"field": field})
    return value


def _check_json(value: Any, where: str) -> None:
    """The placement fields are stored as JSON: YAML timestamps or binary values are refused."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise Invalid(f"{where}: keys must be strings, not {k!r}", detail={"field": where})
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise Invalid(f"{where}: unsupported value of type {type(value).__name__}", detail={"field": where})


def initial_spec(cfg: PrunerConfig) -> dict[str, Any]:
    """The spec a new resource gets: the `pruner` config section."""
    return normalize_spec(
        {
            "schedule": cfg.schedule,
            "suspend": cfg.suspend,
            "keepTagRevisions": cfg.keep_tag_revisions,
            "keepYoungerThanDuration": format_go_duration(round(cfg.keep_younger_than * 10**9)),
            "successfulJobsHistoryLimit": cfg.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cfg.failed_jobs_history_limit,
            "ignoreInvalidImageReferences": cfg.ignore_invalid_image_references,
            "pruneRegistry": cfg.prune_registry,
        }
    )


_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


def spec_from_object(body: Any) -> dict[str, Any]:
    """The normalised spec of a whole ImagePruner object (PUT, `okura pruner apply`). `status`
    and metadata other than the name are ignored, as the API server ignores them."""
    if not isinstance(body, dict):
        raise Invalid(f"the body must be an ImagePruner object, not {_type_name(body)}")
    unknown = sorted(str(k) for k in body if k not in _TOP_LEVEL)
    if unknown:
        raise Invalid(f"{unknown[0]}: unknown field (known: {', '.join(_TOP_LEVEL)})", detail={"field": unknown[0]})
    if body.get("apiVersion") not in (None, API_VERSION):
        raise Invalid(f"apiVersion: must be {API_VERSION}, not {body['apiVersion']!r}", detail={"field": "apiVersion"})
    if body.get("kind") not in (None, KIND):
        raise Invalid(f"kind: must be {KIND}, not {body['kind']!r}", detail={"field": "kind"})
    metadata = body.get("metadata")
    if metadata is not None:
        _object(metadata, "metadata")
        if metadata.get("name") not in (None, NAME):
            raise Invalid(
                f"metadata.name: the only ImagePruner is named {NAME!r}, not {metadata['name']!r}",
                detail={"field": "metadata.name"},
            )
    return normalize_spec(body.get("spec"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def keep_younger_than_seconds(spec: dict[str, Any]) -> float:
    """keepYoungerThanDuration wins over the deprecated keepYoungerThan (as in OpenShift)."""
    if spec.get("keepYoungerThanDuration") is not None:
        return parse_go_duration(spec["keepYoungerThanDuration"]) / 10**9
    if spec.get("keepYoungerThan") is not None:
        return spec["keepYoungerThan"] / 10**9
    return DEFAULT_KEEP_YOUNGER_THAN / 10**9


def prune_options(spec: dict[str, Any], grace_period: float, confirm: bool = True) -> PruneOptions:
    return PruneOptions(
        keep_tag_revisions=spec["keepTagRevisions"],
        keep_younger_than=keep_younger_than_seconds(spec),
        prune_registry=spec["pruneRegistry"],
        ignore_invalid_refs=spec["ignoreInvalidImageReferences"],
        confirm=confirm,
        grace_period=grace_period,
    )


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
    old = {c.get("type"): c for c in previous}
    result = []
    for type_, (status, reason, message) in wanted.items():
        before = old.get(type_)
        since = before["lastTransitionTime"] if before and before.get("status") == status else timestamp(now)
        result.append(
            {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
        )
    return result


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
    conn.execute(
        reg.db.insert_ignore(image_pruners, "name"),
        {
            "name": NAME,
            "generation": 1,
            "spec": spec,
            "status": _reconciled({}, spec, 1, now),
            "created_at": now,
            "updated_at": now,
        },
    )
    return _select_row(conn, lock=True)


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
    reg: Registry, spec: dict[str, Any], expect_generation: int | None = None
) -> tuple[PrunerState | None, bool]:
    """Store a normalised spec; True when it changed (then the generation moved). With
    `expect_generation`, only if the generation is still that (else (None, False))."""

    def write(conn: Connection) -> tuple[Any, bool]:
        row = _ensure(conn, reg)
        if expect_generation is not None and row.generation != expect_generation:
            return None, False
        if dict(row.spec) == spec:
            return row, False
        now = utcnow()
        generation = row.generation + 1
        conn.execute(
            update(image_pruners)
            .where(image_pruners.c.name == NAME)
            .values(
                generation=generation,
                spec=spec,
                status=_reconciled(dict(row.status), spec, generation, now),
                updated_at=now,
            )
        )
        _trim(conn, spec)
        return _select_row(conn), True

    row, changed = await reg.db.write(write)
    if row is None:
        return None, False
    return _publish(_state(row)), changed


async def apply_object(reg: Registry, body: Any) -> tuple[PrunerState, bool]:
    """Replace the spec with that of a whole object (PUT, `okura pruner apply`)."""
    state, changed = await set_spec(reg, spec_from_object(body))
    assert state is not None
    return state, changed


def editable_object(state: PrunerState) -> dict[str, Any]:
    """What a merge patch applies to: the object without status."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME},
        "spec": copy.deepcopy(state.spec),
    }


async def patch_object(reg: Registry, patch: Any) -> tuple[PrunerState, bool]:
    """Apply a JSON merge patch (RFC 7386) to the object (PATCH). When another writer changes
    the spec in between, the patch is applied again to the new spec."""
    if not isinstance(patch, dict):
        raise Invalid(f"a merge patch must be a JSON object, not {_type_name(patch)}")
    for _ in range(10):
        current = await get_pruner(reg)
        spec = spec_from_object(merge_patch(editable_object(current), patch))
        state, changed = await set_spec(reg, spec, expect_generation=current.generation)
        if state is not None:
            return state, changed
    raise Invalid("the ImagePruner kept changing while patching it; try again")


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
        return _begin_run(conn, "scheduled", utcnow()), _select_row(conn)

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
        "metadata": {
            "name": NAME,
            "generation": state.generation,
            "creationTimestamp": timestamp(state.created_at),
        },
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
