"""The ImagePruner spec: defaults, validation (Go durations, cron schedules, field types),
merge patches, and the prune options a spec gives. Pure functions, no database."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from registry.errors import ResourceInvalid
from registry.metadata.db import as_utc
from registry.pruning.images import PruneOptions

if TYPE_CHECKING:
    from registry.config import PrunerConfig

GROUP = "imageregistry.operator.openshift.io"
API_VERSION = f"{GROUP}/v1"
KIND = "ImagePruner"
NAME = "cluster"
RESOURCE = f"imagepruner.{GROUP}/{NAME}"

DEFAULT_SCHEDULE = "0 0 * * *"
DEFAULT_KEEP_YOUNGER_THAN = 60 * 60 * 10**9  # ns
LOG_LEVELS = ("Normal", "Debug", "Trace", "TraceAll")


class Invalid(ResourceInvalid):
    """The ImagePruner object fails validation; the message starts with the field, which is
    also the Status cause (as the Kubernetes API server reports it)."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None):
        field = (detail or {}).get("field")
        causes = [{"reason": "FieldValueInvalid", "message": message, "field": field}] if field else None
        super().__init__(message, kind="imagepruners", group=GROUP, name=NAME, causes=causes)


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
        raise ValueError(f"must be a string, not {type_name(schedule)}")
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


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{field}: must be a boolean, not {type_name(value)}", detail={"field": field})
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{field}: must be an integer, not {type_name(value)}", detail={"field": field})
    if value < 0:
        raise Invalid(f"{field}: must not be negative ({value})", detail={"field": field})
    if value > 2**31 - 1:
        raise Invalid(f"{field}: must be at most {2**31 - 1}", detail={"field": field})
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{field}: must be an object, not {type_name(value)}", detail={"field": field})
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
                f"{f('keepYoungerThanDuration')}: must be a duration string such as 60m, not {type_name(value)}",
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
                f"{f('tolerations')}: must be an array, not {type_name(tolerations)}",
                detail={"field": f("tolerations")},
            )
        for i, item in enumerate(tolerations):
            _object(item, f(f"tolerations[{i}]"))
        spec["tolerations"] = copy.deepcopy(tolerations)
    _check_json(spec, where)
    return spec


def _count_ns(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{field}: must be an integer (nanoseconds), not {type_name(value)}", detail={"field": field})
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
        raise Invalid(f"the body must be an ImagePruner object, not {type_name(body)}")
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
