"""The ImagePruner spec: defaults, validation (Go durations, cron schedules, field types),
merge patches, and the prune options a spec gives. Pure functions, no database."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from registry import cron
from registry.errors import ResourceInvalid
from registry.kube.values import check_json, check_singleton, type_name
from registry.pruning.plan import PruneOptions
from registry.units import format_go_duration, parse_duration_ns

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
    """The ImagePruner object fails validation: every problem found, each a Status cause
    naming its field (as the Kubernetes API server reports them); the message lists them."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None, problems: list[tuple[str, str]] = ()):
        field = (detail or {}).get("field")
        if field and not problems:
            problems = [(field, message)]
        causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in problems]
        if problems:
            message = "; ".join(f"{f}: {m}" for f, m in problems)
        super().__init__(message, kind="ImagePruner", group=GROUP, name=NAME, causes=causes or None)


class Problems:
    """Collects (field, message) pairs so that one answer names every invalid field."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise Invalid("", problems=self.items)


def validate_schedule(schedule: Any) -> str:
    """A Kubernetes CronJob schedule; "" means the default (OpenShift's daily run)."""
    return cron.validate_schedule(schedule, DEFAULT_SCHEDULE)


# -- spec ---------------------------------------------------------------------------------------


def _bool(value: Any, field: str, problems: Problems, default: bool) -> bool:
    if not isinstance(value, bool):
        problems.add(field, f"must be a boolean, not {type_name(value)}")
        return default
    return value


def _count(value: Any, field: str, problems: Problems, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(field, f"must be an integer, not {type_name(value)}")
    elif value < 0:
        problems.add(field, f"must not be negative ({value})")
    elif value > 2**31 - 1:
        problems.add(field, f"must be at most {2**31 - 1}")
    else:
        return value
    return default


def _object(value: Any, field: str, problems: Problems) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.add(field, f"must be an object, not {type_name(value)}")
        return {}
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


def normalize_spec(raw: Any, where: str = "spec", problems: Problems | None = None) -> dict[str, Any]:
    """Validate a spec and fill in the defaults. Omitted (or null) fields take the API's
    defaults, as on a Kubernetes PUT; raises Invalid naming every invalid field (or adds
    them to `problems`, for a caller that validates more)."""
    own = problems is None
    problems = problems if problems is not None else Problems()
    raw = _object({} if raw is None else raw, where, problems)
    for key in sorted(str(k) for k in raw if k not in SPEC_FIELDS):
        problems.add(f"{where}.{key}", f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    given = {k: v for k, v in raw.items() if v is not None and k in SPEC_FIELDS}

    def f(name: str) -> str:
        return f"{where}.{name}"

    spec: dict[str, Any] = {}
    try:
        spec["schedule"] = validate_schedule(given.get("schedule", ""))
    except ValueError as e:
        problems.add(f("schedule"), str(e))
        spec["schedule"] = DEFAULT_SCHEDULE
    spec["suspend"] = _bool(given.get("suspend", False), f("suspend"), problems, False)
    spec["keepTagRevisions"] = _count(given.get("keepTagRevisions", 3), f("keepTagRevisions"), problems, 3)
    if "keepYoungerThan" in given:  # deprecated: nanoseconds
        spec["keepYoungerThan"] = _count_ns(given["keepYoungerThan"], f("keepYoungerThan"), problems)
    if "keepYoungerThanDuration" in given:
        value = given["keepYoungerThanDuration"]
        try:
            if not isinstance(value, str):
                raise ValueError(f"must be a duration string such as 60m or 2d, not {type_name(value)}")
            spec["keepYoungerThanDuration"] = format_go_duration(parse_duration_ns(value))
        except ValueError as e:
            problems.add(f("keepYoungerThanDuration"), str(e))
    elif "keepYoungerThan" not in spec:
        spec["keepYoungerThanDuration"] = format_go_duration(DEFAULT_KEEP_YOUNGER_THAN)
    for name in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        spec[name] = _count(given.get(name, 3), f(name), problems, 3)
    spec["ignoreInvalidImageReferences"] = _bool(
        given.get("ignoreInvalidImageReferences", False), f("ignoreInvalidImageReferences"), problems, False
    )
    spec["pruneRegistry"] = _bool(given.get("pruneRegistry", True), f("pruneRegistry"), problems, True)
    level = given.get("logLevel") or "Normal"
    if level not in LOG_LEVELS:
        problems.add(f("logLevel"), f"must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    spec["logLevel"] = level
    for name in ("resources", "affinity", "nodeSelector"):
        if name in given:
            spec[name] = copy.deepcopy(_object(given[name], f(name), problems))
    for key, value in spec.get("nodeSelector", {}).items():
        if not isinstance(value, str):
            problems.add(f(f"nodeSelector.{key}"), "must be a string")
    if "tolerations" in given:
        tolerations = given["tolerations"]
        if not isinstance(tolerations, list):
            problems.add(f("tolerations"), f"must be an array, not {type_name(tolerations)}")
        else:
            for i, item in enumerate(tolerations):
                _object(item, f(f"tolerations[{i}]"), problems)
            spec["tolerations"] = copy.deepcopy(tolerations)
    check_json(spec, where, problems.add)
    if own:
        problems.raise_if_any()
    return spec


def _count_ns(value: Any, field: str, problems: Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(field, f"must be an integer (nanoseconds), not {type_name(value)}")
    elif value < 0:
        problems.add(field, f"must not be negative ({value})")
    elif value > 2**63 - 1:
        problems.add(field, "out of range")
    else:
        return value
    return 0


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


def metadata_from_object(body: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations of an ImagePruner object (checked by spec_from_object)."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    return dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})


def spec_from_object(body: Any) -> dict[str, Any]:
    """The normalised spec of a whole ImagePruner object (PUT, `okura pruner apply`). `status`
    and metadata other than the name, labels and annotations are ignored, as the API server
    ignores them."""
    if not isinstance(body, dict):
        raise Invalid(f"the body must be an ImagePruner object, not {type_name(body)}")
    problems = Problems()
    check_singleton(body, API_VERSION, KIND, NAME, problems.add)
    spec = normalize_spec(body.get("spec"), problems=problems)
    problems.raise_if_any()
    return spec


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
        return parse_duration_ns(spec["keepYoungerThanDuration"]) / 10**9
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
