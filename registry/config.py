"""Configuration: defaults, then a YAML file, then `OKURA_<SECTION>_<KEY>` environment
variables, then command-line flags. Every key is documented in config.example.yaml."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and why."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "KI": 1024,
    "MI": 1024**2,
    "GI": 1024**3,
    "TI": 1024**4,
}


class Duration(float):
    """Seconds; written as 90, "90s", "15m", "168h", "7d"."""


class ByteSize(int):
    """Bytes; written as 4194304, "4MiB", "64MB"."""


def parse_duration(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return Duration(value)
    m = _DURATION_RE.fullmatch(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 90s, 15m, 168h or 7d")
    return Duration(float(m.group(1)) * _DURATION_UNITS[m.group(2)])


def parse_size(value: Any) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError("expected a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return ByteSize(value)
    m = _SIZE_RE.fullmatch(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size such as 4194304, 4MiB or 64MB")
    unit = (m.group(2) or "").upper().rstrip("B")
    return ByteSize(int(m.group(1)) * _SIZE_UNITS[unit])


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


@dataclass
class HTTPConfig:
    addr: str = "0.0.0.0:5000"
    workers: int = 1
    # Public base URL used in absolute links (token realm); empty: derived from the request.
    base_url: str = ""


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "logfmt"
    access_log: bool = True


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


@dataclass
class UploadsConfig:
    purge_enabled: bool = True
    purge_age: Duration = Duration(7 * 86400)
    purge_interval: Duration = Duration(3600)
    chunk_buffer: ByteSize = ByteSize(4 << 20)


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

    # derived values -----------------------------------------------------------------------
    @property
    def storage_root(self) -> str:
        return self.storage.filesystem.root or os.path.join(self.data_dir, "blobs")

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{os.path.join(self.data_dir, 'okura.db')}"

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.http.addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(typ: Any, value: Any, where: str) -> Any:
    try:
        if typ is bool:
            return parse_bool(value)
        if typ is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if typ is Duration:
            return parse_duration(value)
        if typ is ByteSize:
            return parse_size(value)
        if typ is str:
            if isinstance(value, dict | list):
                raise ValueError("expected a string")
            return "" if value is None else str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    raise ConfigError(f"{where}: unsupported type")


def _apply(obj: Any, data: dict[str, Any], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if is_dataclass(current):
            _apply(current, value or {}, path)
        else:
            setattr(obj, key, _coerce(hints[key], value, path))


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
    internal = {"OKURA_CONFIG", "OKURA_CONFIG_JSON"}
    return sorted(k for k in environ if k.startswith("OKURA_") and k not in known and k not in internal)


def _validate(cfg: Config) -> None:
    if cfg.storage.driver not in ("filesystem", "s3"):
        raise ConfigError(f"storage.driver: unknown driver {cfg.storage.driver!r} (known: filesystem, s3)")
    if cfg.storage.driver == "s3":
        _validate_s3(cfg.storage.s3)
    if cfg.log.format not in ("logfmt", "json"):
        raise ConfigError(f"log.format: must be logfmt or json, not {cfg.log.format!r}")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "warn", "error"):
        raise ConfigError(f"log.level: must be debug, info, warning or error, not {cfg.log.level!r}")
    try:
        _host, port = cfg.listen
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"http.addr: {cfg.http.addr!r} is not HOST:PORT") from None
    if cfg.http.workers < 1:
        raise ConfigError("http.workers: must be at least 1")
    url = cfg.database_url
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgresql+asyncpg://"))):
        raise ConfigError(f"database.url: must start with sqlite:/// or postgresql://, not {url.split(':')[0]!r}")
    if cfg.manifests.max_size < 1024:
        raise ConfigError("manifests.max_size: must be at least 1KiB")
    if cfg.auth.signing_key_file and not os.path.isfile(cfg.auth.signing_key_file):
        raise ConfigError(f"auth.signing_key_file: {cfg.auth.signing_key_file} does not exist")
    if cfg.auth.token_ttl < 10:
        raise ConfigError("auth.token_ttl: must be at least 10s")
    if cfg.uploads.chunk_buffer < 64 * 1024:
        raise ConfigError("uploads.chunk_buffer: must be at least 64KiB")
    _validate_pruner(cfg.pruner)


def _validate_pruner(p: PrunerConfig) -> None:
    from registry.pruning.spec import validate_schedule

    try:
        validate_schedule(p.schedule)
    except ValueError as e:
        raise ConfigError(f"pruner.schedule: {e}") from None
    for name in ("keep_tag_revisions", "successful_jobs_history_limit", "failed_jobs_history_limit"):
        if getattr(p, name) < 0:
            raise ConfigError(f"pruner.{name}: must not be negative")
    if p.check_interval < 0.01:
        raise ConfigError("pruner.check_interval: must be at least 10ms")


def _validate_s3(s3: S3Config) -> None:
    if not s3.bucket:
        raise ConfigError("storage.s3.bucket: required when storage.driver is s3")
    if not 5 << 20 <= s3.part_size <= 5 << 30:
        raise ConfigError("storage.s3.part_size: must be between 5MiB and 5GiB (S3's part size limits)")
    if s3.concurrency < 1:
        raise ConfigError("storage.s3.concurrency: must be at least 1")
    if bool(s3.access_key) != bool(s3.secret_key):
        raise ConfigError("storage.s3.access_key: set both access_key and secret_key, or neither")
    if not 1 <= s3.redirect_expiry <= 7 * 86400:
        raise ConfigError("storage.s3.redirect_expiry: must be between 1s and 7d (presigned URL limits)")
    if s3.endpoint_url and not s3.endpoint_url.startswith(("http://", "https://")):
        raise ConfigError(f"storage.s3.endpoint_url: must start with http:// or https://, not {s3.endpoint_url!r}")


def load_config(
    path: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the effective configuration. Raises ConfigError with a precise message."""
    environ = dict(os.environ if environ is None else environ)
    cfg = Config()
    if path:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        _apply(cfg, data, "")
    _apply(cfg, _env_overrides(cfg, "OKURA", environ), "")
    if overrides:
        _apply(cfg, overrides, "")
    _validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _apply(cfg, data, "")
    _validate(cfg)
    return cfg
