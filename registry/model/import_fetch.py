"""Fetching what an import asks for (registry/model/imports.py writes it): the upstream client
with the namespace's pull secrets and the SSRF guard, manifests and indexes (Legacy mode keeps one
platform, PreserveOriginal the index and its images), image configs, a repository's tags in
OpenShift's priority order, and every upstream failure as the Status OpenShift's importer gives
it. Nothing here writes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from registry.errors import ManifestInvalid
from registry.imports import lazy_module
from registry.imports.guard import HostGuard
from registry.imports.keyring import DockerConfigError, Keyring, parse_docker_config
from registry.model import secrets
from registry.model.context import Registry
from registry.model.manifest_format import INDEX_TYPES, parse_manifest
from registry.model.streams import TagReference

if TYPE_CHECKING:
    from registry.imports import upstream as up
else:
    up = lazy_module("registry.imports.upstream")  # httpx only once something is fetched

log = logging.getLogger("okura.imports")

CLUSTER_NAMESPACE = "openshift"  # its pull secrets serve every namespace
EXCLUDE_SECRET = "openshift.io/image.excludeSecret"
PREFER_ARCH = "importer.image.openshift.io/prefer-arch"
PREFER_OS = "importer.image.openshift.io/prefer-os"
CONFIG_MAX_BYTES = 4 << 20  # image configs are a few KiB
MAX_CHILDREN = 64  # manifests of one index imported whole (PreserveOriginal)
MAX_TAGS_LISTED = 10_000


# -- what is asked ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSource:
    """One image to import (spec.images[]): `to` is the tag it becomes, or None to only look."""

    from_name: str
    to: str | None
    insecure: bool = False
    scheduled: bool = False
    import_mode: str | None = None  # None: the tag's, else the configured default
    reference_policy: str | None = None  # None: the tag's, else Source


@dataclass(frozen=True)
class RepositorySource:
    """A whole upstream repository (spec.repository): its tags, up to the configured limit."""

    from_name: str
    insecure: bool = False
    scheduled: bool = False
    import_mode: str | None = None
    reference_policy: str | None = None


# -- what is answered ------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedImage:
    digest: str
    media_type: str
    content: bytes
    upstream: str  # host/repository the blobs come from
    insecure: bool
    config: dict[str, Any] | None = None  # the parsed config blob
    config_blob: tuple[str, bytes] | None = None  # (digest, bytes) to store
    children: tuple[FetchedImage, ...] = ()  # an index imported whole

    @property
    def reference(self) -> str:
        return f"{self.upstream}@{self.digest}"


@dataclass(frozen=True)
class ImageOutcome:
    source: ImportSource
    status: str  # Success or Failure
    reason: str = ""
    message: str = ""
    code: int = 200
    image: FetchedImage | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"


@dataclass(frozen=True)
class RepositoryOutcome:
    status: str
    reason: str = ""
    message: str = ""
    code: int = 200
    images: tuple[ImageOutcome, ...] = ()
    additional_tags: tuple[str, ...] = ()


def failure(source: ImportSource, reason: str, message: str, code: int) -> ImageOutcome:
    return ImageOutcome(source, "Failure", reason, message, code)


def _failure_of(source: ImportSource, error: Exception) -> ImageOutcome:
    """An upstream error as OpenShift's importer reports it (reason, message, HTTP code)."""
    message = str(error)
    if isinstance(error, up.UpstreamUnauthorized):
        return failure(source, "Unauthorized", message, 401)
    if isinstance(error, up.UpstreamNotFound):
        return failure(source, "NotFound", message, 404)
    if isinstance(error, up.UpstreamRefused):
        return failure(source, "Forbidden", message, 403)
    if isinstance(error, up.SchemaOneRefused):
        return failure(source, "BadRequest", message, 400)
    if isinstance(error, up.ManifestTooLarge):
        return failure(source, "RequestEntityTooLarge", message, 413)
    if isinstance(error, up.UpstreamUnavailable):
        return failure(source, "ServiceUnavailable", message, 503)
    return failure(source, "InternalError", message, 500)


# -- credentials and the upstream client -------------------------------------------------------


async def keyring_for(reg: Registry, namespace: str) -> Keyring:
    """The namespace's pull secrets, then those of the `openshift` namespace, then the
    configured auth file (the install pull secret). A secret that cannot be read is skipped
    with a warning naming it (never its content)."""
    sources: list[tuple[str, Any]] = []
    for ns in dict.fromkeys([namespace, CLUSTER_NAMESPACE]):
        for secret in await secrets.list_secrets(reg, ns, reveal=True):
            if (secret.annotations or {}).get(EXCLUDE_SECRET) == "true":
                continue
            key = secrets.DATA_KEYS.get(secret.type)
            payload = (secret.data or {}).get(key or "")
            if payload is None:
                continue
            try:
                sources.append((f"secret {ns}/{secret.name}", parse_docker_config(payload, secret.type)))
            except DockerConfigError as e:
                log.warning("pull secret skipped", extra={"secret": f"{ns}/{secret.name}", "error": str(e)})
    path = reg.config.imports.auth_file
    if path:
        try:
            with open(path, "rb") as f:
                sources.append((f"auth file {path}", parse_docker_config(f.read(), secrets.DOCKERCONFIGJSON)))
        except (OSError, DockerConfigError) as e:
            log.warning("imports.auth_file skipped", extra={"path": path, "error": str(e)})
    return Keyring(sources)


def guard_of(reg: Registry) -> HostGuard:
    guard = getattr(reg, "_import_guard", None)
    if guard is None:
        guard = HostGuard(reg.config.imports.allowed_registries)
        reg._import_guard = guard  # type: ignore[attr-defined]  # one per process: it caches lookups
    return guard


def upstream_client(reg: Registry, keyring: Keyring, ref: up.ImageRef, insecure: bool) -> up.Upstream:
    config = reg.config.imports
    guard = guard_of(reg)
    return up.Upstream(
        ref.registry,
        keyring.lookup(ref.name),
        allow_host=guard.for_registry(ref.registry),
        insecure=insecure or guard.insecure_allowed(ref.registry),
        ca_bundle=config.ca_bundle or None,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_manifest_bytes=reg.config.manifests.max_size,
    )


# -- fetching ------------------------------------------------------------------------------------


class _Clients:
    """One upstream client per registry and security mode for the whole request: connections
    and tokens are shared by every tag fetched from the same place."""

    def __init__(self, reg: Registry, keyring: Keyring) -> None:
        self.reg = reg
        self.keyring = keyring
        self._open: dict[tuple[str, str, bool], up.Upstream] = {}

    async def get(self, ref: up.ImageRef, insecure: bool) -> up.Upstream:
        key = (ref.registry, ref.repository, insecure)
        client = self._open.get(key)
        if client is None:
            client = upstream_client(self.reg, self.keyring, ref, insecure)
            await client.__aenter__()
            self._open[key] = client
        return client

    async def close(self) -> None:
        for client in self._open.values():
            await client.__aexit__(None, None, None)
        self._open.clear()


def imports_from(tag: TagReference | None, source: ImportSource) -> bool:
    """Whether a spec tag already imports from this source: its own flags and mode hold then
    (a tag given a new source starts from the defaults)."""
    return tag is not None and tag.from_kind == "DockerImage" and tag.from_name == source.from_name


def _platform_key(entry: dict[str, Any]) -> tuple[str, str]:
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    return str(platform.get("os", "")), str(platform.get("architecture", ""))


def choose_platform(index: dict[str, Any], prefer_os: str, prefer_arch: str, default: str) -> str | None:
    """The child Legacy mode keeps (OpenShift's order): the tag's preferred os/arch, the
    configured default platform, linux/amd64, then the first image that has a platform."""
    entries = [m for m in index.get("manifests", []) if isinstance(m, dict) and isinstance(m.get("digest"), str)]
    default_os, _, default_arch = default.partition("/")
    wanted = [(prefer_os or default_os, prefer_arch or default_arch), (default_os, default_arch), ("linux", "amd64")]
    for want in wanted:
        for entry in entries:
            if _platform_key(entry) == want:
                return str(entry["digest"])
    for entry in entries:
        if _platform_key(entry) not in (("", ""), ("unknown", "unknown")):
            return str(entry["digest"])
    return str(entries[0]["digest"]) if entries else None


async def _config_of(client: up.Upstream, ref: up.ImageRef, config_digest: str | None) -> tuple[Any, Any]:
    if not config_digest:
        return None, None
    data = bytearray()
    async with client.blob(ref.repository, config_digest) as blob:
        if blob.size is not None and blob.size > CONFIG_MAX_BYTES:
            raise up.UpstreamError(blob.shown, f"the image config is {blob.size} bytes; at most {CONFIG_MAX_BYTES}")
        async for chunk in blob:
            data += chunk
            if len(data) > CONFIG_MAX_BYTES:
                raise up.UpstreamError(blob.shown, f"the image config is over {CONFIG_MAX_BYTES} bytes")
    try:
        parsed = json.loads(bytes(data))
    except ValueError:
        parsed = None
    return (parsed if isinstance(parsed, dict) else None), (config_digest, bytes(data))


async def _fetch_one(
    client: up.Upstream, ref: up.ImageRef, insecure: bool, keep_index: bool, tag: TagReference | None, reg: Registry
) -> FetchedImage:
    """The image `ref` names, verified: one image manifest (an index reduced to the child
    Legacy mode picks) or, with `keep_index`, the index and its images."""
    fetched = await client.manifest(ref)
    image = await _image_of(client, ref, fetched, insecure)
    if fetched.media_type not in INDEX_TYPES:
        return image
    document = json.loads(fetched.content)
    if not keep_index:
        annotations = dict(tag.annotations or {}) if tag else {}
        child = choose_platform(
            document,
            annotations.get(PREFER_OS, ""),
            annotations.get(PREFER_ARCH, ""),
            reg.config.imports.default_platform,
        )
        if child is None:
            raise up.UpstreamError(f"{ref}", "the manifest list names no images")
        return await _fetch_one(client, replace(ref, digest=child), insecure, False, tag, reg)
    children = [m["digest"] for m in document.get("manifests", []) if isinstance(m, dict) and "digest" in m]
    if len(children) > MAX_CHILDREN:
        raise up.UpstreamError(f"{ref}", f"the index names {len(children)} manifests; at most {MAX_CHILDREN} import")
    kept = []
    for digest in children:
        child_ref = replace(ref, digest=digest)
        child_manifest = await client.manifest(child_ref)
        if child_manifest.media_type in INDEX_TYPES:
            raise up.UpstreamError(f"{child_ref}", "nested indexes are not imported")
        kept.append(await _image_of(client, child_ref, child_manifest, insecure))
    return replace(image, children=tuple(kept))


async def _image_of(client: up.Upstream, ref: up.ImageRef, fetched: up.FetchedManifest, insecure: bool) -> FetchedImage:
    try:
        parsed = parse_manifest(fetched.content, fetched.media_type)
    except ManifestInvalid as e:
        raise up.UpstreamError(f"{replace(ref, digest=fetched.digest)}", f"invalid manifest: {e.message}") from None
    config, blob = (None, None)
    if fetched.media_type not in INDEX_TYPES:
        config, blob = await _config_of(client, ref, parsed.config_digest)
    return FetchedImage(
        fetched.digest, fetched.media_type, fetched.content, ref.name, insecure, config=config, config_blob=blob
    )


async def _fetch(reg: Registry, clients: _Clients, source: ImportSource, tag: TagReference | None) -> ImageOutcome:
    try:
        ref = up.ImageRef.parse(source.from_name)
    except ValueError as e:
        return failure(source, "Invalid", str(e), 422)
    # The tag's own mode holds only while it imports from the same source (as _spec_tag_for writes it).
    mode = source.import_mode or (tag.import_mode if tag is not None and imports_from(tag, source) else None)
    mode = mode or reg.config.imports.default_import_mode
    try:
        client = await clients.get(ref, source.insecure)
        image = await _fetch_one(client, ref, source.insecure, mode == "PreserveOriginal", tag, reg)
    except up.UpstreamError as e:
        return _failure_of(source, e)
    return ImageOutcome(source, "Success", image=image)


_SEMVER_MINOR = re.compile(r"v?(\d+)\.(\d+)")
_SEMVER_FULL = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?")


def prioritize_tags(tags: Sequence[str]) -> list[str]:
    """OpenShift's order for a repository import: latest, then X.Y versions (newest first),
    then full versions (newest first), then the rest alphabetically."""

    def key(tag: str) -> tuple[Any, ...]:
        if tag == "latest":
            return (0,)
        m = _SEMVER_MINOR.fullmatch(tag)
        if m:
            return (1, -int(m.group(1)), -int(m.group(2)), tag)
        m = _SEMVER_FULL.fullmatch(tag)
        if m:
            return (2, -int(m.group(1)), -int(m.group(2)), -int(m.group(3)), tag)
        return (3, tag)

    return sorted(dict.fromkeys(t or "latest" for t in tags), key=key)


async def _fetch_repository(
    reg: Registry, clients: _Clients, source: RepositorySource, spec: dict[str, TagReference]
) -> RepositoryOutcome:
    try:
        ref = up.ImageRef.parse(source.from_name)
        if "@" in source.from_name or ref.tag != up.DEFAULT_TAG or source.from_name.endswith(":latest"):
            raise ValueError(f"{source.from_name!r}: name a repository, without a tag or digest")
    except ValueError as e:
        return RepositoryOutcome("Failure", "Invalid", str(e), 422)
    try:
        client = await clients.get(ref, source.insecure)
        listed = await client.tags(ref.repository, MAX_TAGS_LISTED)
    except up.UpstreamError as e:
        failed = _failure_of(ImportSource(source.from_name, None), e)
        return RepositoryOutcome("Failure", failed.reason, failed.message, failed.code)
    ordered = prioritize_tags(listed)
    limit = reg.config.imports.max_tags_per_repository
    outcomes = []
    for tag in ordered[:limit]:
        one = ImportSource(
            f"{ref.name}:{tag}", tag, source.insecure, source.scheduled, source.import_mode, source.reference_policy
        )
        outcomes.append(await _fetch(reg, clients, one, spec.get(tag)))
    failed = sum(1 for o in outcomes if not o.succeeded)
    if failed:
        message = (
            "one of the images from this repository failed to import"
            if failed == 1
            else f"{failed} of the images from this repository failed to import"
        )
        return RepositoryOutcome("Failure", "ImportFailed", message, 422, tuple(outcomes), tuple(ordered[limit:]))
    return RepositoryOutcome("Success", images=tuple(outcomes), additional_tags=tuple(ordered[limit:]))


async def fetch_all(
    reg: Registry,
    namespace: str,
    images: Sequence[ImportSource],
    repository: RepositorySource | None,
    spec: dict[str, TagReference],
) -> tuple[tuple[ImageOutcome, ...], RepositoryOutcome | None]:
    """Every image asked for and the repository's tags, with one client per upstream for the
    whole request; `spec` is the stream's spec tags (their annotations and import modes)."""
    clients = _Clients(reg, await keyring_for(reg, namespace))
    try:
        found = tuple([await _fetch(reg, clients, s, spec.get(s.to or "")) for s in images])
        listed = await _fetch_repository(reg, clients, repository, spec) if repository else None
    finally:
        await clients.close()
    return found, listed
