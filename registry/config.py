"""Configuration: defaults, then a YAML file, then `OKURA_<SECTION>_<KEY>` environment
variables, then command-line flags. Every key is documented in config.example.yaml."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import yaml

from registry.cron import validate_schedule
from registry.units import ByteSize, Duration, parse_bool, parse_duration, parse_int, parse_size

__all__ = ["ByteSize", "Config", "ConfigError", "Duration", "load_config", "parse_bool", "parse_duration"]


class ConfigError(ValueError):
    """The configuration is invalid. `problems` lists every one, each naming its key and
    where the value came from (file, environment variable or flag)."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass
class TLSConfig:
    # PEM files: the certificate chain and its key (both, or neither for plain HTTP).
    certificate: str = ""
    key: str = ""
    # PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).
    client_ca: str = ""


@dataclass
class HTTPConfig:
    addr: str = "0.0.0.0:5000"
    workers: int = 1
    # Public base URL used in absolute links (token realm); empty: derived from the request.
    base_url: str = ""
    # The URL clients outside the cluster use (a route, an ingress); image streams show it
    # as status.publicDockerImageRepository. Empty: there is none.
    public_url: str = ""
    # A request's line and headers: at most this many bytes and headers (431 beyond), and
    # complete within header_timeout of the connection opening or of the request's first byte.
    max_header_bytes: ByteSize = ByteSize(64 << 10)
    max_headers: int = 100
    header_timeout: Duration = Duration(10)
    # Idle keep-alive connections are closed after this long.
    keepalive_timeout: Duration = Duration(30)
    # A request body that receives nothing this long (while the server is reading it) ends
    # the request: 408 if it was not answered yet, then the connection closes.
    body_idle_timeout: Duration = Duration(60)
    # Open connections per process; more are answered 503 UNAVAILABLE and closed (0: no limit).
    max_connections: int = 1000
    # After SIGTERM: not ready at once, still serving new connections for shutdown_delay (load
    # balancers notice), then open requests get up to drain_timeout before being cut.
    shutdown_delay: Duration = Duration(5)
    drain_timeout: Duration = Duration(25)
    tls: TLSConfig = field(default_factory=TLSConfig)
    # This server's name in `okura get pods` and the pod API, stable across restarts (its
    # restart count follows the name). Empty: the host name and a short hash of the data
    # directory and address.
    instance_name: str = ""
    # The host (an IP address or a name) other replicas and `okura logs` reach this server at,
    # when it listens on a wildcard address. Empty: the machine's host name. In Kubernetes,
    # set it to the pod IP (OKURA_HTTP_ADVERTISE_HOST from status.podIP): pod host names do
    # not resolve.
    advertise_host: str = ""

    @property
    def public_host(self) -> str:
        """public_url's HOST[:PORT], or "" when none is configured."""
        return urlsplit(self.public_url).netloc if self.public_url else ""


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "logfmt"
    access_log: bool = True
    audit: bool = False  # one line per blob, manifest and tag call: subject, action, repository, outcome
    # The last this many lines are kept in memory for the pod log API (`kubectl logs`, `okura logs`).
    ring_lines: int = 10000


@dataclass
class FilesystemConfig:
    root: str = ""  # default: <data_dir>/blobs


@dataclass
class S3Config:
    bucket: str = ""
    region: str = "us-east-1"
    endpoint_url: str = ""  # empty: AWS's endpoint for the region
    access_key: str = ""  # empty (with secret_key): the standard AWS credential chain
    secret_key: str = ""
    path_style: bool = True
    root_prefix: str = ""
    part_size: ByteSize = ByteSize(16 << 20)
    concurrency: int = 16  # boto3 calls in flight per worker process
    redirect: bool = True  # blob GET/HEAD answer 307 to a presigned URL
    redirect_expiry: Duration = Duration(20 * 60)
    # Bounded waits: a stuck S3 becomes 503 UNAVAILABLE instead of a hung request.
    connect_timeout: Duration = Duration(5)  # per attempt
    read_timeout: Duration = Duration(30)  # per socket read (also ends a stalled body)
    max_attempts: int = 3  # attempts per call, the first included
    call_timeout: Duration = Duration(60)  # one whole call, retries included


@dataclass
class StorageConfig:
    driver: str = "filesystem"
    filesystem: FilesystemConfig = field(default_factory=FilesystemConfig)
    s3: S3Config = field(default_factory=S3Config)
    delete_enabled: bool = True


@dataclass
class DatabaseConfig:
    url: str = ""  # default: sqlite:///<data_dir>/okura.db
    pool_size: int = 10
    echo: bool = False
    # `okura serve` keeps trying to reach the database this long before giving up (a server
    # may start before its database does), logging each attempt.
    wait_at_start: Duration = Duration(60)
    # PostgreSQL: opening a connection, one statement (server side; 0: the server's default),
    # waiting for a free pooled connection, and one whole call as Okura sees it (0: none).
    # SQLite: statement_timeout bounds its lock wait.
    connect_timeout: Duration = Duration(10)
    statement_timeout: Duration = Duration(30)
    pool_timeout: Duration = Duration(10)
    call_timeout: Duration = Duration(60)


@dataclass
class UploadsConfig:
    purge_enabled: bool = True
    purge_age: Duration = Duration(7 * 86400)
    purge_interval: Duration = Duration(3600)
    chunk_buffer: ByteSize = ByteSize(4 << 20)
    # The largest body of one PATCH (or closing PUT), 413 beyond; 0: no limit. docker and
    # containerd send a whole layer as one PATCH, so a limit is also the largest layer they push.
    max_chunk_size: ByteSize = ByteSize(0)


@dataclass
class ManifestsConfig:
    max_size: ByteSize = ByteSize(4 << 20)


@dataclass
class CacheConfig:
    # In-process cache of immutable manifest bytes and repository links, invalidated
    # across workers through a shared generation counter.
    max_bytes: ByteSize = ByteSize(64 << 20)
    # Whole blobs up to blob_max_size kept in memory (per worker, blob_bytes in all) when
    # storage is remote (S3): configs and small layers that many clients pull.
    blob_bytes: ByteSize = ByteSize(64 << 20)
    blob_max_size: ByteSize = ByteSize(1 << 20)


@dataclass
class PaginationConfig:
    catalog_max_entries: int = 1000
    tags_max_entries: int = 10000


@dataclass
class AuthConfig:
    enabled: bool = False
    # Token endpoint URL advertised in challenges; empty: <request scheme://host>/openshift/token.
    realm: str = ""
    service: str = "okura-registry"
    issuer: str = "okura"
    token_ttl: Duration = Duration(300)
    # PEM file with an EC P-256 private key to sign bearer tokens; empty: keys are
    # generated and kept in the database (rotate with `okura auth rotate-key`).
    signing_key_file: str = ""
    # Password attempts, counted per client address and per account across all workers and
    # replicas (tokens cannot be guessed and are never limited): after `slow_after` failures
    # within failure_window each failed answer is delayed; at `max_failures` passwords from
    # that client, and for that account, get 429 for `lockout`. The window is long so that
    # paced guessing (one try a minute) is caught too.
    slow_after: int = 5
    max_failures: int = 20
    failure_window: Duration = Duration(15 * 60)
    lockout: Duration = Duration(300)


@dataclass
class ChangesConfig:
    # How long the change log keeps changes: watches may resume (and notifications catch up)
    # from a resourceVersion this recent; older ones get 410 Expired.
    retention: Duration = Duration(24 * 3600)


@dataclass
class SecretsConfig:
    # The key that seals pull secrets at rest (32 random bytes, base64), kept out of the
    # database; empty: <data_dir>/secrets.key, created on first use. Replicas share one file.
    key_file: str = ""


@dataclass(frozen=True)
class AllowedRegistry:
    """One entry of imports.allowed_registries (OpenShift's allowedRegistriesForImport): a
    host[:port] pattern where `*` stands for one DNS label, and whether that registry may be
    reached over plain HTTP or unverified TLS."""

    domain_name: str
    insecure: bool = False


class AllowedRegistries(tuple[AllowedRegistry, ...]):
    """The list, as a type of its own so the loader knows how to read it."""


def parse_allowed_registries(value: Any) -> AllowedRegistries:
    """A YAML list whose items are `host[:port]` strings or mappings {domain_name, insecure};
    from the environment, the same list as YAML/JSON, or comma-separated hosts."""
    if isinstance(value, str):
        text = value.strip()
        value = yaml.safe_load(text) if text.startswith("[") else [h.strip() for h in text.split(",") if h.strip()]
    if value is None:
        return AllowedRegistries()
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of host patterns")
    entries = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"domain_name": item}
        if not isinstance(item, dict):
            raise ValueError(f"item {i}: must be a host pattern or a mapping with domain_name and insecure")
        name = item.get("domain_name", item.get("domainName"))
        unknown = set(item) - {"domain_name", "domainName", "insecure"}
        if unknown:
            raise ValueError(f"item {i}: unknown key {sorted(unknown)[0]!r} (known: domain_name, insecure)")
        if not isinstance(name, str) or not _PATTERN_RE.fullmatch(name):
            raise ValueError(f"item {i}: {name!r} is not a host[:port] pattern such as quay.io or *.example.com:5000")
        entries.append(AllowedRegistry(name.lower(), parse_bool(item.get("insecure", False))))
    return AllowedRegistries(entries)


_LABEL = r"(?:\*|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_PATTERN_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::\d{{1,5}})?")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _host_without_port(value: str) -> bool:
    """A host name or an IP address (IPv6 with or without brackets), no port."""
    try:
        ipaddress.ip_address(value[1:-1] if value.startswith("[") and value.endswith("]") else value)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(value))


_INSTANCE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass
class ImportsConfig:
    # Where imports and pull-through may go (OpenShift's allowedRegistriesForImport): host[:port]
    # patterns, `*` for one DNS label, each optionally `insecure`. Empty: every registry except
    # link-local and cloud metadata addresses.
    allowed_registries: AllowedRegistries = field(default_factory=AllowedRegistries)
    # Tags with importPolicy.scheduled are re-imported this often, at most max_per_minute
    # imports a minute across all replicas (one replica runs them, under a lease).
    scheduled_interval: Duration = Duration(15 * 60)
    max_per_minute: int = 60
    # A whole-repository import takes at most this many tags (the rest are reported).
    max_tags_per_repository: int = 50
    # Legacy import mode picks this platform out of a manifest list (tag annotations
    # importer.image.openshift.io/prefer-os and prefer-arch override it).
    default_platform: str = "linux/amd64"
    default_import_mode: str = "Legacy"
    # PEM CAs trusted besides the system ones, for imports and pull-through.
    ca_bundle: str = ""
    # A docker config.json / podman auth.json used after the namespace's pull secrets (the
    # cluster's install pull secret).
    auth_file: str = ""
    connect_timeout: Duration = Duration(10)
    read_timeout: Duration = Duration(30)
    # Whether this process runs the import controller (tags whose generation rose, and
    # scheduled tags); it still runs under a lease on one replica at a time.
    controller: bool = True


@dataclass(frozen=True)
class EndpointConfig:
    """One webhook endpoint of notifications.endpoints (distribution's keys, plus Okura's)."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    backoff: float = 1.0  # the first retry's wait; doubled per failure, with jitter
    max_backoff: float = 10.0  # a receiver back up gets its backlog within this long
    ignore_media_types: tuple[str, ...] = ()
    ignore_actions: tuple[str, ...] = ()
    pulls: bool = False  # deliver pull events (when notifications.pull_events records them)
    format: str = "distribution"  # or cloudevents
    secret: str = ""  # HMAC-SHA256 key: signs every body (X-Okura-Signature)
    max_batch_events: int = 100
    max_batch_bytes: int = 1 << 20
    disabled: bool = False


class Endpoints(tuple[EndpointConfig, ...]):
    """notifications.endpoints, as a type of its own so the loader knows how to read it."""


ENDPOINT_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NOTIFICATION_ACTIONS = ("push", "pull", "mount", "delete")


def parse_endpoints(value: Any) -> Endpoints:
    """A YAML list of mappings (name, url, headers, timeout, backoff, max_backoff, ignore:
    {mediatypes, actions}, pulls, format, secret, ...); from the environment, the list as
    YAML/JSON. Every problem names the item and its field."""
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip() else []
    if value is None:
        return Endpoints()
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of endpoints")
    found: list[EndpointConfig] = []
    for i, item in enumerate(value):
        if isinstance(item, EndpointConfig):
            found.append(item)
            continue
        found.append(_endpoint(i, item))
    names = [e.name for e in found]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ValueError(f"two endpoints are named {duplicate!r}")
    return Endpoints(found)


def _endpoint(i: int, item: Any) -> EndpointConfig:
    where = f"[{i}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be a mapping with name and url")
    known = set(EndpointConfig.__dataclass_fields__) | {"ignore", "ignoredmediatypes", "threshold"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    name = item.get("name")
    if not isinstance(name, str) or not ENDPOINT_NAME_RE.fullmatch(name):
        raise ValueError(f"{where}.name: {name!r} must be a DNS label (lowercase letters, digits, '-')")
    url = item.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}.url: {url!r} is not an http:// or https:// URL")
    headers = item.get("headers") or {}
    if isinstance(headers, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in headers):
        headers = {k: [v for k2, v in headers if k2 == k] for k, _ in headers}  # the to_dict() form
    if not isinstance(headers, dict):
        raise ValueError(f"{where}.headers: must be a mapping of header names to values")
    pairs: list[tuple[str, str]] = []
    for key, values in headers.items():
        for v in values if isinstance(values, list) else [values]:  # distribution: name: [values]
            pairs.append((str(key), str(v)))
    ignore = item.get("ignore") or {}
    if not isinstance(ignore, dict):
        raise ValueError(f"{where}.ignore: must be a mapping with mediatypes and actions")
    media_types = [*(item.get("ignoredmediatypes") or []), *(item.get("ignore_media_types") or [])]
    media_types += list(ignore.get("mediatypes") or ignore.get("media_types") or [])
    actions = [*(ignore.get("actions") or []), *(item.get("ignore_actions") or [])]
    bad = [a for a in actions if a not in NOTIFICATION_ACTIONS]
    if bad:
        raise ValueError(f"{where}.ignore.actions: {bad[0]!r} is not one of {', '.join(NOTIFICATION_ACTIONS)}")
    fmt = item.get("format", "distribution")
    if fmt not in ("distribution", "cloudevents"):
        raise ValueError(f"{where}.format: must be distribution or cloudevents, not {fmt!r}")
    try:
        numbers = {
            "timeout": parse_duration(item.get("timeout", "5s")),
            "backoff": parse_duration(item.get("backoff", "1s")),
            "max_backoff": parse_duration(item.get("max_backoff", "10s")),
            "max_batch_events": parse_int(item.get("max_batch_events", 100)),
            "max_batch_bytes": parse_size(item.get("max_batch_bytes", "1MiB")),
        }
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if numbers["timeout"] <= 0 or numbers["backoff"] <= 0 or numbers["max_backoff"] < numbers["backoff"]:
        raise ValueError(f"{where}: timeout and backoff must be positive, max_backoff at least backoff")
    if numbers["max_batch_events"] < 1 or numbers["max_batch_bytes"] < 1024:
        raise ValueError(f"{where}: max_batch_events must be at least 1, max_batch_bytes at least 1KiB")
    return EndpointConfig(
        name=name,
        url=url,
        headers=tuple(pairs),
        ignore_media_types=tuple(str(m) for m in media_types),
        ignore_actions=tuple(actions),
        pulls=parse_bool(item.get("pulls", False)),
        format=fmt,
        secret=str(item.get("secret") or ""),
        disabled=parse_bool(item.get("disabled", False)),
        **numbers,  # type: ignore[arg-type]
    )


@dataclass
class NotificationsConfig:
    # Webhook endpoints (distribution's notifications.endpoints); more can be added live through
    # the API (notificationendpoints).
    endpoints: Endpoints = field(default_factory=Endpoints)
    # The event log keeps events this long, but never drops what an enabled endpoint has not
    # received yet, unless that endpoint is more than max_backlog events behind.
    retention: Duration = Duration(7 * 86400)
    max_backlog: int = 1_000_000
    # Pull events are off: a pull storm would flood the log. On, a pull of a manifest is
    # recorded at most once per repository, digest and pull_event_interval per process.
    pull_events: bool = False
    pull_event_interval: Duration = Duration(60)


@dataclass
class PrunerConfig:
    # The initial spec of the ImagePruner resource (OpenShift's defaults). Once the
    # resource exists in the database it rules: change it with `okura pruner apply`.
    schedule: str = "0 0 * * *"
    suspend: bool = False
    keep_tag_revisions: int = 3
    keep_younger_than: Duration = Duration(3600)
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3
    ignore_invalid_image_references: bool = True
    prune_registry: bool = True
    # Online GC: blobs uploaded or mounted but not yet referenced by a manifest, and
    # blob files in storage with no metadata (left by a crash), are kept this long.
    grace_period: Duration = Duration(3600)
    # How often each replica reads the resource to see whether a scheduled run is due.
    check_interval: Duration = Duration(30)


@dataclass
class InstancesConfig:
    """Each server registers itself in the database (`okura get pods`)."""

    heartbeat_interval: Duration = Duration(10)  # also how often it checks its database and storage
    heartbeat_timeout: Duration = Duration(30)  # silent this long: Unknown, and the registry is Degraded
    retention: Duration = Duration(3600)  # entries of stopped or lost servers are removed after this
    config_poll_interval: Duration = Duration(2)  # how soon a Config change reaches this process


@dataclass
class Config:
    data_dir: str = "./data"
    http: HTTPConfig = field(default_factory=HTTPConfig)
    log: LogConfig = field(default_factory=LogConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    manifests: ManifestsConfig = field(default_factory=ManifestsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    pagination: PaginationConfig = field(default_factory=PaginationConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    changes: ChangesConfig = field(default_factory=ChangesConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    imports: ImportsConfig = field(default_factory=ImportsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    instances: InstancesConfig = field(default_factory=InstancesConfig)

    # derived values -----------------------------------------------------------------------
    @property
    def storage_root(self) -> str:
        return self.storage.filesystem.root or os.path.join(self.data_dir, "blobs")

    @property
    def secrets_key_file(self) -> str:
        return self.secrets.key_file or os.path.join(self.data_dir, "secrets.key")

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{os.path.join(self.data_dir, 'okura.db')}"

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.http.addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(typ: Any, value: Any) -> Any:
    if typ is bool:
        return parse_bool(value)
    if typ is int:
        return parse_int(value)
    if typ is Duration:
        return parse_duration(value)
    if typ is ByteSize:
        return parse_size(value)
    if typ is AllowedRegistries:
        return parse_allowed_registries(value)
    if typ is Endpoints:
        return parse_endpoints(value)
    if typ is str:
        if isinstance(value, dict | list):
            raise ValueError(f"must be a string, not a {'mapping' if isinstance(value, dict) else 'list'}")
        return "" if value is None else str(value)
    raise ValueError("unsupported type")


class _Problems:
    """Every problem found, each as `<key> (<where the value came from>): <what is wrong>`."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str, source: str = "") -> None:
        self.items.append(f"{key}{f' ({source})' if source else ''}: {message}")


def _apply(obj: Any, data: Any, where: str, source: Any, problems: _Problems) -> None:
    """Set the keys of `data` on the config section `obj`; `source(key)` says where a value
    came from. Problems are collected, never raised: a user sees all of them at once."""
    if not isinstance(data, dict):
        problems.add(where or "config", f"expected a mapping, got {type(data).__name__}", source(where))
        return
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            problems.add(path, f"unknown key (known: {', '.join(sorted(names))})", source(path))
            continue
        current = getattr(obj, key)
        if is_dataclass(current):
            _apply(current, value or {}, path, source, problems)
            continue
        try:
            setattr(obj, key, _coerce(hints[key], value))
        except (TypeError, ValueError) as e:
            problems.add(path, str(e), source(path))


def env_name(path: str) -> str:
    return "OKURA_" + path.upper().replace(".", "_")


def _env_overrides(obj: Any, prefix: str, environ: dict[str, str]) -> dict[str, Any]:
    """Map OKURA_SECTION_KEY variables onto the config tree, walking the known keys so that
    keys containing underscores (purge_age) resolve unambiguously."""
    result: dict[str, Any] = {}
    for f in fields(obj):
        name = f"{prefix}_{f.name.upper()}"
        value = getattr(obj, f.name)
        if is_dataclass(value):
            nested = _env_overrides(value, name, environ)
            if nested:
                result[f.name] = nested
        elif name in environ:
            result[f.name] = environ[name]
    return result


def unknown_env_keys(environ: dict[str, str]) -> list[str]:
    known = set()

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}_{f.name.upper()}"
            if is_dataclass(value):
                walk(value, name)
            else:
                known.add(name)

    walk(Config(), "OKURA")
    internal = {"OKURA_CONFIG", "OKURA_CONFIG_JSON", "OKURA_TEST_CLOCK_FILE"}
    return sorted(k for k in environ if k.startswith("OKURA_") and k not in known and k not in internal)


DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://", "postgresql+asyncpg://")


def _validate(cfg: Config, problems: _Problems, source: Any) -> None:
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.add(key, message, source(key))

    check(
        cfg.storage.driver in ("filesystem", "s3"),
        "storage.driver",
        f"unknown driver {cfg.storage.driver!r} (known: filesystem, s3)",
    )
    if cfg.storage.driver == "s3":
        _validate_s3(cfg.storage.s3, check)
    check(cfg.log.format in ("logfmt", "json"), "log.format", f"must be logfmt or json, not {cfg.log.format!r}")
    check(
        cfg.log.level.lower() in ("debug", "info", "warning", "warn", "error"),
        "log.level",
        f"must be debug, info, warning or error, not {cfg.log.level!r}",
    )
    _, _, port = cfg.http.addr.rpartition(":")
    check(
        len(port) <= 5 and port.isdigit() and 0 < int(port) < 65536,
        "http.addr",
        f"{cfg.http.addr!r} is not HOST:PORT (such as 0.0.0.0:5000)",
    )
    check(cfg.http.workers >= 1, "http.workers", f"must be at least 1, not {cfg.http.workers}")
    check(cfg.http.max_header_bytes >= 4096, "http.max_header_bytes", "must be at least 4KiB")
    check(cfg.http.max_headers >= 16, "http.max_headers", "must be at least 16")
    check(0.1 <= cfg.http.header_timeout <= 3600, "http.header_timeout", "must be between 100ms and 1h")
    check(1 <= cfg.http.keepalive_timeout <= 3600, "http.keepalive_timeout", "must be between 1s and 1h")
    check(1 <= cfg.http.body_idle_timeout <= 3600, "http.body_idle_timeout", "must be between 1s and 1h")
    check(cfg.http.max_connections >= 0, "http.max_connections", "must not be negative (0: no limit)")
    check(0 <= cfg.http.shutdown_delay <= 300, "http.shutdown_delay", "must be between 0 and 5m")
    check(1 <= cfg.http.drain_timeout <= 3600, "http.drain_timeout", "must be between 1s and 1h")
    check(
        not cfg.http.instance_name or bool(_INSTANCE_NAME.fullmatch(cfg.http.instance_name)),
        "http.instance_name",
        "must be a DNS label: lower-case letters, digits and '-', at most 63, starting and ending alphanumeric",
    )
    check(
        not cfg.http.advertise_host or _host_without_port(cfg.http.advertise_host),
        "http.advertise_host",
        "must be a host name or an IP address, without a port",
    )
    check(
        0.2 <= cfg.instances.heartbeat_interval <= 300, "instances.heartbeat_interval", "must be between 200ms and 5m"
    )
    check(
        cfg.instances.heartbeat_timeout >= 2 * cfg.instances.heartbeat_interval,
        "instances.heartbeat_timeout",
        "must be at least twice instances.heartbeat_interval",
    )
    check(
        cfg.instances.retention >= cfg.instances.heartbeat_timeout,
        "instances.retention",
        "must be at least instances.heartbeat_timeout",
    )
    check(
        0.1 <= cfg.instances.config_poll_interval <= 60,
        "instances.config_poll_interval",
        "must be between 100ms and 1m",
    )
    check(
        not cfg.http.base_url or cfg.http.base_url.startswith(("http://", "https://")),
        "http.base_url",
        f"must start with http:// or https://, not {cfg.http.base_url!r}",
    )
    check(
        not cfg.http.public_url
        or (cfg.http.public_url.startswith(("http://", "https://")) and bool(urlsplit(cfg.http.public_url).netloc)),
        "http.public_url",
        f"must be an http:// or https:// URL, not {cfg.http.public_url!r}",
    )
    check(cfg.changes.retention >= 60, "changes.retention", "must be at least 1m")
    tls = cfg.http.tls
    check(bool(tls.certificate) == bool(tls.key), "http.tls", "set both certificate and key, or neither")
    check(not tls.client_ca or bool(tls.certificate), "http.tls.client_ca", "needs http.tls.certificate and key")
    url = cfg.database_url
    check(
        url.startswith(DATABASE_SCHEMES),
        "database.url",
        f"must start with sqlite:/// or postgresql://, not {url.split(':')[0]!r}",
    )
    check(cfg.database.pool_size >= 1, "database.pool_size", "must be at least 1")
    _validate_database_timeouts(cfg.database, check)
    check(cfg.manifests.max_size >= 1024, "manifests.max_size", "must be at least 1KiB")
    check(
        not cfg.auth.signing_key_file or os.path.isfile(cfg.auth.signing_key_file),
        "auth.signing_key_file",
        f"{cfg.auth.signing_key_file} does not exist",
    )
    check(cfg.auth.token_ttl >= 10, "auth.token_ttl", "must be at least 10s")
    check(cfg.uploads.chunk_buffer >= 64 * 1024, "uploads.chunk_buffer", "must be at least 64KiB")
    check(cfg.uploads.max_chunk_size >= 0, "uploads.max_chunk_size", "must not be negative (0: no limit)")
    check(cfg.uploads.purge_interval >= 0.01, "uploads.purge_interval", "must be at least 10ms")
    for name in ("catalog_max_entries", "tags_max_entries"):
        check(getattr(cfg.pagination, name) >= 1, f"pagination.{name}", "must be at least 1")
    _validate_pruner(cfg.pruner, check)
    _validate_imports(cfg.imports, check)
    check(cfg.notifications.retention >= 60, "notifications.retention", "must be at least 1m")
    check(cfg.notifications.max_backlog >= 1, "notifications.max_backlog", "must be at least 1")


def _validate_imports(i: ImportsConfig, check: Any) -> None:
    check(i.scheduled_interval >= 1, "imports.scheduled_interval", "must be at least 1s")
    check(i.max_per_minute >= 0, "imports.max_per_minute", "must not be negative (0: no limit)")
    check(i.max_tags_per_repository >= 1, "imports.max_tags_per_repository", "must be at least 1")
    os_, _, arch = i.default_platform.partition("/")
    check(bool(os_) and bool(arch), "imports.default_platform", f"must be OS/ARCH, not {i.default_platform!r}")
    check(
        i.default_import_mode in ("Legacy", "PreserveOriginal"),
        "imports.default_import_mode",
        f"must be Legacy or PreserveOriginal, not {i.default_import_mode!r}",
    )
    for name in ("ca_bundle", "auth_file"):
        path = getattr(i, name)
        check(not path or os.path.isfile(path), f"imports.{name}", f"{path} does not exist")
    check(i.connect_timeout > 0 and i.read_timeout > 0, "imports.read_timeout", "timeouts must be positive")


def _validate_pruner(p: PrunerConfig, check: Any) -> None:
    try:
        validate_schedule(p.schedule, "0 0 * * *")
    except ValueError as e:
        check(False, "pruner.schedule", str(e))
    for name in ("keep_tag_revisions", "successful_jobs_history_limit", "failed_jobs_history_limit"):
        check(getattr(p, name) >= 0, f"pruner.{name}", "must not be negative")
    check(p.check_interval >= 0.01, "pruner.check_interval", "must be at least 10ms")


def _validate_database_timeouts(d: DatabaseConfig, check: Any) -> None:
    check(0.1 <= d.connect_timeout <= 600, "database.connect_timeout", "must be between 100ms and 10m")
    # Below a second, ordinary statements under load would fail.
    check(
        d.statement_timeout == 0 or d.statement_timeout >= 1,
        "database.statement_timeout",
        "must be at least 1s, or 0 (the server's default)",
    )
    check(0.1 <= d.pool_timeout <= 600, "database.pool_timeout", "must be between 100ms and 10m")
    check(d.call_timeout == 0 or d.call_timeout >= 1, "database.call_timeout", "must be at least 1s, or 0 (none)")


def _validate_s3_timeouts(s3: S3Config, check: Any) -> None:
    check(0.1 <= s3.connect_timeout <= 600, "storage.s3.connect_timeout", "must be between 100ms and 10m")
    check(0.1 <= s3.read_timeout <= 3600, "storage.s3.read_timeout", "must be between 100ms and 1h")
    check(1 <= s3.max_attempts <= 20, "storage.s3.max_attempts", "must be between 1 and 20")
    # The overall bound must leave room for one whole attempt, or a slow but healthy S3
    # could never answer.
    check(
        s3.connect_timeout + s3.read_timeout <= s3.call_timeout <= 86400,
        "storage.s3.call_timeout",
        "must be at least storage.s3.connect_timeout + read_timeout, and at most 1d",
    )


def _validate_s3(s3: S3Config, check: Any) -> None:
    check(bool(s3.bucket), "storage.s3.bucket", "required when storage.driver is s3")
    check(
        5 << 20 <= s3.part_size <= 5 << 30,
        "storage.s3.part_size",
        "must be between 5MiB and 5GiB (S3's part size limits)",
    )
    check(s3.concurrency >= 1, "storage.s3.concurrency", "must be at least 1")
    check(
        bool(s3.access_key) == bool(s3.secret_key),
        "storage.s3.access_key",
        "set both access_key and secret_key, or neither",
    )
    check(
        1 <= s3.redirect_expiry <= 7 * 86400,
        "storage.s3.redirect_expiry",
        "must be between 1s and 7d (presigned URL limits)",
    )
    check(
        not s3.endpoint_url or s3.endpoint_url.startswith(("http://", "https://")),
        "storage.s3.endpoint_url",
        f"must start with http:// or https://, not {s3.endpoint_url!r}",
    )
    _validate_s3_timeouts(s3, check)


def load_config(
    path: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the effective configuration: defaults, the file, OKURA_* variables, then
    `overrides` (flags). Raises ConfigError listing every problem."""
    environ = dict(os.environ if environ is None else environ)
    cfg = Config()
    problems = _Problems()
    origin: dict[str, str] = {}  # key -> where its value came from

    def source(key: str) -> str:
        return origin.get(key, "")

    def remember(data: Any, prefix: str, label: Any) -> None:
        if isinstance(data, dict):
            for k, v in data.items():
                key = f"{prefix}.{k}" if prefix else str(k)
                origin[key] = label(key)
                remember(v, key, label)

    if path:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror}") from None
        except (yaml.YAMLError, ValueError, RecursionError) as e:
            raise ConfigError(f"{path}: invalid YAML: {str(e)[:300]}") from None
        remember(data, "", lambda key: path)
        _apply(cfg, data, "", source, problems)
    env = _env_overrides(cfg, "OKURA", environ)
    remember(env, "", env_name)
    _apply(cfg, env, "", source, problems)
    if overrides:
        remember(overrides, "", lambda key: "command line")
        _apply(cfg, overrides, "", source, problems)
    _validate(cfg, problems, source)
    if problems.items:
        raise ConfigError(problems.items)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    problems = _Problems()
    _apply(cfg, data, "", lambda key: "", problems)
    _validate(cfg, problems, lambda key: "")
    if problems.items:
        raise ConfigError(problems.items)
    return cfg
