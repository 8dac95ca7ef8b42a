"""Pull-secret credentials, and which of them apply to an image, decided as the kubelet decides it.

An image import authenticates to the remote registry with the pull secrets of its namespace, then with
the cluster-wide ones. Users write those secrets for `docker login`, `podman login` and the kubelet, so the
matching follows Kubernetes' credentialprovider (BasicDockerKeyring): a secret that lets a pod pull an
image lets an import pull it too, and a secret written for one registry is never offered to another.

Where this module is stricter than the kubelet, on purpose:
- a key's path covers an image only on path-segment boundaries: "quay.io/core" does not cover
  "quay.io/coreos/etcd" (a plain string prefix would hand one organisation's password to another);
- every spelling of Docker Hub (docker.io, index.docker.io, registry-1.docker.io, no host at all) is one
  host, in keys and in images alike, rather than a fallback consulted only when nothing else matched;
- an explicit "username" or "password" wins over the one decoded from "auth", which only fills gaps.

Nothing here does I/O: the caller reads the Secrets and hands over their decoded payloads.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
DOCKER_HUB = "index.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
API_VERSION_PREFIXES = ("/v1/", "/v2/")  # `docker login` writes "https://index.docker.io/v1/"
ENTRY_FIELDS = ("username", "password", "auth", "email", "identitytoken")
SHOWN_KEY_MAX = 200  # keys are not secret, but a key that is really pasted garbage should not flood a log


class DockerConfigError(ValueError):
    """A pull secret's payload cannot be used. The message names the entry and the fault, never a secret,
    because it ends up in import status conditions and logs that many more people read than the Secret."""


@dataclass(frozen=True)
class Credential:
    """What to log in to a registry with. The secret parts stay out of repr so logging one is safe."""

    username: str
    password: str = field(repr=False)
    identity_token: str = field(default="", repr=False)


# --- parsing Secret payloads -------------------------------------------------------------------------


def parse_docker_config(data: bytes | str, kind: str) -> dict[str, Credential]:
    """The credentials of a pull Secret's payload, by registry key as written (not yet normalised).

    `kind` is the Secret's type: "kubernetes.io/dockerconfigjson" (`{"auths": {key: entry}}`, also what
    podman's auth.json and docker's config.json hold) or the legacy "kubernetes.io/dockercfg" (`{key: entry}`).
    Keys are checked here, so a Secret with a key the keyring cannot use fails when it is read, not at lookup.
    """
    if kind not in (DOCKERCONFIGJSON, DOCKERCFG):
        raise DockerConfigError(f"unsupported secret type {kind!r}: expected {DOCKERCONFIGJSON!r} or {DOCKERCFG!r}")
    document = _load_object(data, kind)
    entries = _auths(document) if kind == DOCKERCONFIGJSON else _legacy_entries(document)
    credentials = {}
    for key, entry in entries.items():
        parse_key(key)
        credentials[key] = _credential(key, entry)
    return credentials


def _load_object(data: bytes | str, kind: str) -> dict[str, object]:
    """The payload's top-level JSON object. Errors say where, never quote the text: it holds passwords."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerConfigError(f"{kind} payload is not UTF-8 (bad byte at offset {e.start})") from None
    try:
        document = json.loads(data)
    except json.JSONDecodeError as e:
        raise DockerConfigError(f"{kind} payload is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(document, dict):
        raise DockerConfigError(f"{kind} payload must be a JSON object, not {_json_type(document)}")
    return document


def _auths(document: dict[str, object]) -> dict[str, object]:
    """The "auths" object of a dockerconfigjson; its absence usually means a legacy payload in the wrong type."""
    auths = document.get("auths")
    if auths is None:
        raise DockerConfigError(
            f'{DOCKERCONFIGJSON} payload has no "auths" object (a legacy .dockercfg belongs in type {DOCKERCFG!r})'
        )
    if not isinstance(auths, dict):
        raise DockerConfigError(f'{DOCKERCONFIGJSON} payload: "auths" must be an object, not {_json_type(auths)}')
    return auths


def _legacy_entries(document: dict[str, object]) -> dict[str, object]:
    """A legacy dockercfg is the entries themselves. One with "auths" is a dockerconfigjson in the wrong type:
    read as legacy it would silently yield a registry called "auths" and no credentials."""
    if isinstance(document.get("auths"), dict):
        raise DockerConfigError(
            f'{DOCKERCFG} payload has an "auths" object: it is a .dockerconfigjson, use type {DOCKERCONFIGJSON!r}'
        )
    return document


def _credential(key: str, entry: object) -> Credential:
    """One entry as a Credential: explicit username/password first, "auth" filling whichever is missing."""
    where = f"entry {_show(key)}"
    if not isinstance(entry, dict):
        raise DockerConfigError(f"{where} must be an object, not {_json_type(entry)}")
    fields = _string_fields(where, entry)
    username, password = fields.get("username", ""), fields.get("password", "")
    if fields.get("auth"):
        auth_username, auth_password = _decode_auth(where, fields["auth"])
        username = username or auth_username
        password = password or auth_password
    if not username and not fields.get("identitytoken"):  # a token alone is docker's OAuth form
        if fields.get("auth"):
            raise DockerConfigError(f'{where}: "auth" decodes to an empty username')
        raise DockerConfigError(f'{where} has neither "auth" nor "username" nor "identitytoken"')
    return Credential(username, password, identity_token=fields.get("identitytoken", ""))


def _string_fields(where: str, entry: dict[str, object]) -> dict[str, str]:
    """The entry's known fields; null counts as absent (docker writes it), any other non-string is an error."""
    fields = {}
    for name in ENTRY_FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DockerConfigError(f'{where}: field "{name}" must be a string, not {_json_type(value)}')
        fields[name] = value
    return fields


def _decode_auth(where: str, auth: str) -> tuple[str, str]:
    """base64("user:password") as (user, password). Split on the first ':' only, as docker does: usernames
    cannot hold one, passwords and tokens may."""
    try:
        decoded = base64.b64decode(auth.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise DockerConfigError(f'{where}: "auth" is not valid base64 ({e})') from None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise DockerConfigError(f'{where}: "auth" does not decode to UTF-8 text') from None
    username, colon, password = text.partition(":")
    if not colon:
        raise DockerConfigError(f'{where}: "auth" does not decode to "username:password" (no ":")')
    return username, password


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages: users wrote JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(key: str) -> str:
    return repr(key if len(key) <= SHOWN_KEY_MAX else key[:SHOWN_KEY_MAX] + "...")


# --- registry locations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A registry host, its port ("" when absent) and a repository path, normalised so that keys and images
    compare: lowercase host (DNS is case-insensitive), Docker Hub under one name, path as segments."""

    host: str
    port: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        hostport = f"{self.host}:{self.port}" if self.port else self.host
        return "/".join((hostport, *self.path))


def parse_key(key: str) -> Location:
    """A credential key ("https://quay.io/v1/", "quay.io/coreos", "*.example.com:5000") as a Location.

    The scheme goes (docker and the kubelet ignore it); a leading /v1/ or /v2/ is the registry API version
    `docker login` appended, not a repository path, so it goes too, as do empty segments and trailing slashes.
    """
    rest = key.strip()
    for scheme in ("https://", "http://"):
        if rest.lower().startswith(scheme):
            rest = rest[len(scheme) :]
            break
    hostport, _, path = rest.partition("/")
    path = "/" + path
    if path.startswith(API_VERSION_PREFIXES):
        path = path[len("/v1") :]
    try:
        host, port = _split_host_port(hostport)
    except ValueError as e:
        raise DockerConfigError(f"registry key {_show(key)}: {e}") from None
    return Location(_canonical_host(host, port), port, _segments(path))


def parse_image(image: str) -> Location:
    """Where an image lives ("quay.io/coreos/etcd", "busybox:1.36", "localhost:5000/app@sha256:...").

    A tag or digest is dropped: credentials are per repository. As in docker, the first component names a
    registry only if it has a '.' or ':' or is "localhost"; otherwise the image is on Docker Hub, where a
    single-component name is an official image under library/.
    """
    name = image.strip().partition("@")[0]
    head, slash, last = name.rpartition("/")
    name = head + slash + last.partition(":")[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        try:
            host, port = _split_host_port(first)
        except ValueError as e:
            raise ValueError(f"image {image!r}: {e}") from None
    else:
        host, port, rest = DOCKER_HUB, "", name
    host = _canonical_host(host, port)
    path = _segments(rest)
    if not path:
        raise ValueError(f"image {image!r} names no repository")
    if host == DOCKER_HUB and not port and len(path) == 1:
        path = ("library", *path)
    return Location(host, port, path)


def _split_host_port(hostport: str) -> tuple[str, str]:
    """host[:port], with [IPv6]:port. Ports are numbers: they take no wildcards, as in the kubelet."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 host")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after IPv6 host")
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise ValueError("no registry host")
    if port and not (port.isascii() and port.isdigit()):
        raise ValueError(f"port {port!r} is not a number")
    return host, port


def _canonical_host(host: str, port: str) -> str:
    host = host.lower()
    return DOCKER_HUB if not port and host in DOCKER_HUB_ALIASES else host


def _segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


def key_matches(key: Location, image: Location) -> bool:
    """Whether a credential stored under `key` applies to `image`.

    Same port (no port matches only no port); same number of host labels, each label a glob (so
    "*.example.com" covers "a.example.com" but not "a.b.example.com" nor "example.com"); and the key's path
    a prefix of the image's path, whole segments only.
    """
    if key.port != image.port:
        return False
    patterns, labels = key.host.split("."), image.host.split(".")
    if len(patterns) != len(labels):
        return False
    # equality first: an IPv6 literal such as "[::1]" would read as a character class
    pairs = zip(patterns, labels, strict=True)
    if not all(pattern == label or fnmatchcase(label, pattern) for pattern, label in pairs):
        return False
    return image.path[: len(key.path)] == key.path


# --- the keyring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    location: Location
    credential: Credential


class Keyring:
    """The credentials an import may use, from several pull secrets in order of precedence.

    Sources come namespace secrets first, then cluster-wide ones; within a source the most specific key comes
    first (reverse lexical order, so "quay.io/coreos" before "quay.io"). lookup() returns every credential that
    applies, in that order: the importer tries the first, and a caller may fall back to the next or to
    anonymous access, as the kubelet does.
    """

    def __init__(self, sources: Iterable[tuple[str, Mapping[str, Credential]]]) -> None:
        self._sources = tuple((name, _index(name, credentials)) for name, credentials in sources)

    def lookup(self, image: str) -> list[Credential]:
        """Every credential for `image`, best first; [] when none applies (pull anonymously)."""
        target = parse_image(image)
        return [
            entry.credential for _, entries in self._sources for entry in entries if key_matches(entry.location, target)
        ]

    def describe(self) -> str:
        """Source names and normalised keys in lookup order, for logs: no usernames, no secrets."""
        if not self._sources:
            return "(no pull secrets)"
        return "; ".join(
            f"{name}: {', '.join(str(entry.location) for entry in entries) or '(no entries)'}"
            for name, entries in self._sources
        )

    def __repr__(self) -> str:
        return f"Keyring({self.describe()})"


def _index(source: str, credentials: Mapping[str, Credential]) -> tuple[_Entry, ...]:
    """A source's entries, most specific key first. The sort is stable, so two keys that normalise alike
    ("docker.io", "https://index.docker.io/v1/") keep their given order."""
    entries = []
    for key, credential in credentials.items():
        try:
            entries.append(_Entry(parse_key(key), credential))
        except DockerConfigError as e:
            raise DockerConfigError(f"{source}: {e}") from None
    return tuple(sorted(entries, key=lambda entry: str(entry.location), reverse=True))
