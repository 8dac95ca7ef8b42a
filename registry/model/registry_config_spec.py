"""The registry's Config resource (`configs.imageregistry.operator.openshift.io/cluster`): the
spec's defaults and validation, the settings a spec puts in effect, and the status conditions.
Pure functions, no database (registry_config.py stores the resource)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from registry.errors import ResourceInvalid
from registry.kube.meta import timestamp
from registry.kube.values import check_json, check_singleton, type_name, with_transitions
from registry.units import format_go_duration, parse_duration_ns

if TYPE_CHECKING:
    from registry.config import Config

GROUP = "imageregistry.operator.openshift.io"
API_VERSION = f"{GROUP}/v1"
KIND = "Config"
NAME = "cluster"
PLURAL = "configs"
NAMESPACE = "openshift-image-registry"  # where OpenShift runs the registry's pods

MANAGED, UNMANAGED, REMOVED = "Managed", "Unmanaged", "Removed"
MANAGEMENT_STATES = (MANAGED, UNMANAGED, REMOVED)
LOG_LEVELS = ("Normal", "Debug", "Trace", "TraceAll")
ROLLOUT_STRATEGIES = ("RollingUpdate", "Recreate")
MAX_INT32 = 2**31 - 1

# Kept as given, with no effect here: where and how OpenShift places the registry's pods.
_KEPT = (
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "proxy",
    "unsupportedConfigOverrides",
    "observedConfig",
    "httpSecret",
    "logging",
)
SPEC_FIELDS = (
    "managementState",
    "logLevel",
    "operatorLogLevel",
    "readOnly",
    "disableRedirect",
    "requests",
    "defaultRoute",
    "routes",
    "replicas",
    "rolloutStrategy",
    "storage",
    *_KEPT,
)


class Invalid(ResourceInvalid):
    """The Config object fails validation: a Status cause per invalid field."""

    def __init__(self, problems: list[tuple[str, str]]):
        causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in problems]
        message = "; ".join(f"{f}: {m}" for f, m in problems)
        super().__init__(message, kind=KIND, group=GROUP, name=NAME, causes=causes)


# -- what a spec puts in effect -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestLimits:
    """OpenShift's registry request limits: at most `max_running` requests at once (0: no
    limit), up to `max_in_queue` more waiting at most `max_wait_in_queue` seconds."""

    max_running: int = 0
    max_in_queue: int = 0
    max_wait_in_queue: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.max_running > 0


@dataclass(frozen=True)
class Effective:
    """The settings every replica runs with, derived from the applied spec."""

    generation: int = 0
    management_state: str = MANAGED
    read_only: bool = False
    log_level: str = "Normal"
    disable_redirect: bool = False
    read: RequestLimits = RequestLimits()
    write: RequestLimits = RequestLimits()
    public_host: str = ""  # HOST[:PORT] of the public route, "" for none

    @property
    def removed(self) -> bool:
        return self.management_state == REMOVED


def effective(applied: dict[str, Any], generation: int, config: Config) -> Effective:
    requests = applied.get("requests") or {}
    return Effective(
        generation=generation,
        management_state=applied.get("managementState", MANAGED),
        read_only=bool(applied.get("readOnly")),
        log_level=applied.get("logLevel", "Normal"),
        disable_redirect=bool(applied.get("disableRedirect")),
        read=_limits(requests.get("read") or {}),
        write=_limits(requests.get("write") or {}),
        public_host=public_host(applied, config),
    )


def _limits(raw: dict[str, Any]) -> RequestLimits:
    wait = raw.get("maxWaitInQueue") or "0s"
    return RequestLimits(
        int(raw.get("maxRunning") or 0), int(raw.get("maxInQueue") or 0), parse_duration_ns(wait) / 10**9
    )


def public_host(spec: dict[str, Any], config: Config) -> str:
    """The first route's hostname; else, with defaultRoute, the host of http.public_url (or,
    without one, the registry's own address); else none."""
    for route in spec.get("routes") or []:
        if route.get("hostname"):
            return str(route["hostname"])
    if spec.get("defaultRoute"):
        return config.http.public_host or config.http.addr.replace("0.0.0.0", "localhost")
    return ""


def python_log_level(level: str, configured: str) -> str:
    """The Python log level for a spec's logLevel: Normal keeps the config file's level."""
    return configured if level == "Normal" else "debug"


# -- the spec -------------------------------------------------------------------------------------


def effective_storage(config: Config) -> dict[str, Any]:
    """spec.storage as the operator shows it, for the storage the config file sets up. Okura
    never creates or deletes it, so it is not managed."""
    if config.storage.driver == "s3":
        s3 = config.storage.s3
        shown: dict[str, Any] = {"bucket": s3.bucket, "region": s3.region}
        if s3.endpoint_url:
            shown["regionEndpoint"] = s3.endpoint_url
        if s3.root_prefix:
            shown["rootDirectory"] = s3.root_prefix
        shown["virtualHostedStyle"] = not s3.path_style
        return {"managementState": UNMANAGED, "s3": shown}
    return {"managementState": UNMANAGED, "filesystem": {"path": config.storage_root}}


def initial_spec(config: Config) -> dict[str, Any]:
    """The spec a new resource gets from the config file."""
    redirect_off = config.storage.driver == "s3" and not config.storage.s3.redirect
    return normalize_spec(
        {
            "managementState": MANAGED,
            "logLevel": "Debug" if config.log.level.lower() == "debug" else "Normal",
            "readOnly": False,
            "disableRedirect": redirect_off,
            "defaultRoute": bool(config.http.public_url),
            "replicas": 1,
        },
        config,
    )


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))


def _bool(given: dict[str, Any], name: str, default: bool, problems: _Problems) -> bool:
    value = given.get(name, default)
    if not isinstance(value, bool):
        problems.add(f"spec.{name}", f"must be a boolean, not {type_name(value)}")
        return default
    return value


def _int(value: Any, field: str, problems: _Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(field, f"must be an integer, not {type_name(value)}")
        return 0
    if value < 0:
        problems.add(field, f"must be greater than or equal to 0, not {value}")
        return 0
    if value > MAX_INT32:
        problems.add(field, f"must be at most {MAX_INT32}")
        return 0
    return value


def _request_limits(raw: Any, field: str, problems: _Problems) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add(field, f"must be an object, not {type_name(raw)}")
        return {"maxRunning": 0, "maxInQueue": 0, "maxWaitInQueue": "0s"}
    for key in sorted(str(k) for k in raw if k not in ("maxRunning", "maxInQueue", "maxWaitInQueue")):
        problems.add(f"{field}.{key}", "unknown field (known: maxRunning, maxInQueue, maxWaitInQueue)")
    wait = raw.get("maxWaitInQueue")
    if wait is None or wait == "":
        wait_text = "0s"
    else:
        try:
            if not isinstance(wait, str):
                raise ValueError(f"must be a duration such as 30s or 2m, not {type_name(wait)}")
            wait_text = format_go_duration(parse_duration_ns(wait))
        except ValueError as e:
            problems.add(f"{field}.maxWaitInQueue", str(e))
            wait_text = "0s"
    return {
        "maxRunning": _int(raw.get("maxRunning") or 0, f"{field}.maxRunning", problems),
        "maxInQueue": _int(raw.get("maxInQueue") or 0, f"{field}.maxInQueue", problems),
        "maxWaitInQueue": wait_text,
    }


def _routes(raw: Any, problems: _Problems) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("spec.routes", f"must be an array, not {type_name(raw)}")
        return []
    routes: list[dict[str, str]] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        field = f"spec.routes[{i}]"
        if not isinstance(item, dict):
            problems.add(field, f"must be an object, not {type_name(item)}")
            continue
        for key in sorted(str(k) for k in item if k not in ("name", "hostname", "secretName")):
            problems.add(f"{field}.{key}", "unknown field (known: name, hostname, secretName)")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            problems.add(f"{field}.name", "required: a non-empty string")
            continue
        if name in names:
            problems.add(f"{field}.name", f"duplicate route name {name!r}")  # the operator's VerificationFailed
        names.add(name)
        route = {"name": name}
        hostname = item.get("hostname")
        if hostname is not None:
            if not isinstance(hostname, str) or not _valid_host(hostname):
                problems.add(f"{field}.hostname", f"must be a host name with an optional port, not {hostname!r}")
            else:
                route["hostname"] = hostname
        secret = item.get("secretName")
        if secret is not None:
            if not isinstance(secret, str):
                problems.add(f"{field}.secretName", f"must be a string, not {type_name(secret)}")
            else:
                route["secretName"] = secret
        routes.append(route)
    return routes


def _valid_host(value: str) -> bool:
    if not value or len(value) > 253 or any(c in value for c in "/?#@ \t"):
        return False
    try:
        parsed = urlsplit(f"//{value}")
        _ = parsed.port
    except ValueError:
        return False
    return bool(parsed.hostname)


def _storage(raw: Any, config: Config, problems: _Problems) -> dict[str, Any]:
    """The effective storage; a different one is refused (it comes from the config file)."""
    actual = effective_storage(config)
    if raw is None or raw == {}:
        return actual
    if not isinstance(raw, dict) or not _agrees(raw, actual):
        where = (
            "storage.driver and storage.s3.* (OKURA_STORAGE_* variables)"
            if config.storage.driver == "s3"
            else "storage.driver and storage.filesystem.root (OKURA_STORAGE_* variables, --data-dir)"
        )
        kind = "s3" if config.storage.driver == "s3" else "filesystem"
        problems.add(
            "spec.storage",
            f"the storage is set in the config file ({where}) and cannot be changed through this resource; "
            f"it is {kind} {_describe(actual)}",
        )
    return actual


def _agrees(given: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Every field given equals the effective storage's (a `get -o yaml` round trip does)."""
    for key, value in given.items():
        if key == "managementState":
            if value not in (MANAGED, UNMANAGED, "", None):
                return False
            continue
        if key not in actual:
            return False
        if isinstance(value, dict) and isinstance(actual[key], dict):
            if not _agrees(value, actual[key]):
                return False
        elif value != actual[key]:
            return False
    return True


def _describe(storage: dict[str, Any]) -> str:
    if "s3" in storage:
        s3 = storage["s3"]
        endpoint = f" at {s3['regionEndpoint']}" if s3.get("regionEndpoint") else ""
        return f"bucket {s3['bucket']!r} in {s3['region']}{endpoint}"
    return f"at {storage['filesystem']['path']}"


def normalize_spec(raw: Any, config: Config, problems: _Problems | None = None) -> dict[str, Any]:
    """Validate a spec and fill in the defaults (omitted fields take them, as on a Kubernetes
    PUT). Raises Invalid naming every invalid field."""
    own = problems is None
    problems = problems if problems is not None else _Problems()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add("spec", f"must be an object, not {type_name(raw)}")
        raw = {}
    for key in sorted(str(k) for k in raw if k not in SPEC_FIELDS):
        problems.add(f"spec.{key}", "unknown field")
    given = {k: v for k, v in raw.items() if v is not None and k in SPEC_FIELDS}
    spec: dict[str, Any] = {}
    state = given.get("managementState") or MANAGED
    if state not in MANAGEMENT_STATES:
        problems.add("spec.managementState", f"must be one of {', '.join(MANAGEMENT_STATES)}, not {state!r}")
        state = MANAGED
    spec["managementState"] = state
    for name in ("logLevel", "operatorLogLevel"):
        level = given.get(name) or "Normal"
        if level not in LOG_LEVELS:
            problems.add(f"spec.{name}", f"must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
            level = "Normal"
        spec[name] = level
    spec["readOnly"] = _bool(given, "readOnly", False, problems)
    spec["disableRedirect"] = _bool(given, "disableRedirect", False, problems)
    requests = given.get("requests") or {}
    if not isinstance(requests, dict):
        problems.add("spec.requests", f"must be an object, not {type_name(requests)}")
        requests = {}
    for key in sorted(str(k) for k in requests if k not in ("read", "write")):
        problems.add(f"spec.requests.{key}", "unknown field (known: read, write)")
    spec["requests"] = {
        "read": _request_limits(requests.get("read"), "spec.requests.read", problems),
        "write": _request_limits(requests.get("write"), "spec.requests.write", problems),
    }
    spec["defaultRoute"] = _bool(given, "defaultRoute", False, problems)
    routes = _routes(given.get("routes"), problems)
    if routes:
        spec["routes"] = routes
    spec["replicas"] = _int(given.get("replicas", 1), "spec.replicas", problems)
    strategy = given.get("rolloutStrategy") or "RollingUpdate"
    if strategy not in ROLLOUT_STRATEGIES:
        problems.add("spec.rolloutStrategy", f"must be one of {', '.join(ROLLOUT_STRATEGIES)}, not {strategy!r}")
        strategy = "RollingUpdate"
    spec["rolloutStrategy"] = strategy
    spec["storage"] = _storage(given.get("storage"), config, problems)
    for name in _KEPT:
        if name in given:
            check_json(given[name], f"spec.{name}", problems.add)
            spec[name] = copy.deepcopy(given[name])
    if own and problems.items:
        raise Invalid(problems.items)
    return spec


def spec_from_object(body: Any, config: Config) -> dict[str, Any]:
    """The normalised spec of a whole Config object (PUT, `okura config apply`); status is
    ignored, as the API server ignores it on the main resource."""
    if not isinstance(body, dict):
        raise Invalid([("", f"the body must be a Config object, not {type_name(body)}")])
    problems = _Problems()
    check_singleton(body, API_VERSION, KIND, NAME, problems.add)
    spec = normalize_spec(body.get("spec"), config, problems)
    if problems.items:
        raise Invalid(problems.items)
    return spec


def metadata_from_object(body: Any) -> tuple[dict[str, str], dict[str, str]]:
    metadata = body.get("metadata") if isinstance(body, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    return dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})


def next_applied(spec: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """What takes effect after a spec change: the spec itself, unless it is Unmanaged (then
    nothing changes, as the operator stops reconciling)."""
    if spec["managementState"] == UNMANAGED:
        return applied
    return copy.deepcopy(spec)


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaView:
    """One registered server process, as the status needs it."""

    name: str
    ready: bool
    lost: bool  # no heartbeat within the timeout
    not_ready_reason: str | None
    storage_error: str | None  # "Reason: message" of its last storage check, None when it passed
    last_heartbeat: datetime


def _storage_condition(replicas: list[ReplicaView], storage: dict[str, Any]) -> tuple[str, str, str]:
    live = [r for r in replicas if not r.lost]
    if not live:
        return "Unknown", "NoReplicas", "No replica has checked the storage"
    failing = [r for r in live if r.storage_error]
    if not failing:
        if "s3" in storage:
            return "True", "S3BucketExists", f"S3 Bucket Exists: {storage['s3']['bucket']}"
        return "True", "DirectoryExists", f"Storage directory exists: {storage['filesystem']['path']}"
    reason, _, message = (failing[0].storage_error or "").partition(": ")
    return "False", reason or "StorageError", message or reason


def conditions(
    spec: dict[str, Any],
    replicas: list[ReplicaView],
    previous: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The operator's conditions (Available, Progressing, Degraded, Removed, StorageExists);
    lastTransitionTime moves only when a condition's status flips."""
    state = spec["managementState"]
    ready = sum(1 for r in replicas if r.ready and not r.lost)
    wanted_replicas = spec.get("replicas", 1)
    lost = [r for r in replicas if r.lost]
    not_ready = [r for r in replicas if not r.lost and not r.ready]
    wanted: dict[str, tuple[str, str, str]] = {}
    if state == UNMANAGED:
        wanted["Available"] = ("True", "Unmanaged", "The registry configuration is set to unmanaged mode")
        wanted["Progressing"] = ("False", "Unmanaged", "The registry configuration is set to unmanaged mode")
        wanted["Degraded"] = ("False", "Unmanaged", "The registry configuration is set to unmanaged mode")
    elif state == REMOVED:
        wanted["Available"] = ("True", "Removed", "The registry is removed")
        wanted["Progressing"] = ("False", "Removed", "All registry resources are removed")
        wanted["Degraded"] = ("False", "Removed", "The registry is removed")
    else:
        if ready == 0:
            wanted["Available"] = ("False", "NoReplicasAvailable", "The deployment does not have available replicas")
        elif ready < wanted_replicas:
            wanted["Available"] = ("True", "MinimumAvailability", "The registry has minimum availability")
        else:
            wanted["Available"] = ("True", "Ready", "The registry is ready")
        if ready < wanted_replicas:
            wanted["Progressing"] = (
                "True",
                "DeploymentNotCompleted",
                f"The deployment has not completed: {ready} of {wanted_replicas} replicas are ready",
            )
        else:
            wanted["Progressing"] = ("False", "Ready", "The registry is ready")
        if lost:
            names = ", ".join(f"{r.name} (last heartbeat {timestamp(r.last_heartbeat)})" for r in lost)
            wanted["Degraded"] = ("True", "ReplicaLost", f"Replicas stopped reporting: {names}")
        elif not_ready:
            names = ", ".join(f"{r.name}: {r.not_ready_reason or 'not ready'}" for r in not_ready)
            wanted["Degraded"] = ("True", "ReplicaNotReady", f"Replicas are not ready: {names}")
        elif ready == 0:
            wanted["Degraded"] = ("True", "Unavailable", "The deployment does not have available replicas")
        else:
            wanted["Degraded"] = ("False", "AsExpected", "")
    wanted["Removed"] = (
        ("True", "Removed", "The registry is removed") if state == REMOVED else ("False", "AsExpected", "")
    )
    wanted["StorageExists"] = _storage_condition(replicas, spec["storage"])
    return with_transitions(wanted, previous, timestamp(now))
