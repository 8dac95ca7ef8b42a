"""A client for other registries: what an image import or a pull-through fetch reads from upstream.

One `Upstream` serves one import or pull-through request against one registry host. It owns an
httpx.AsyncClient, so connections, the negotiated scheme and bearer tokens are shared by every manifest,
tag list and blob of that request and dropped with it.

Behaviour follows OpenShift's importer where users depend on it (see the imports reference, sections 2.2
and 4): the first matching pull secret is used, a refused credential is retried once anonymously (public
images behind a wrong secret still import), and `insecure` means "TLS without verification, else plain
HTTP". Where the importer is lax, this client is strict on purpose:
- every host contacted (the registry, its token realm, every redirect target, a tag list's next page) is
  first put to the caller's `allow_host` guard (registry.imports.guard.HostGuard.check), so an import cannot
  be pointed at internal services;
- Authorization never leaves the registry's origin: a blob redirected to S3 or a CDN goes there bare;
- manifests are read up to a size limit and checked against the digest asked for and the one announced;
  blobs are hashed while they stream, and a mismatch fails the stream at its end;
- error messages are one line naming the upstream and the cause, and never quote a password, a token or a
  URL (pre-signed redirect URLs carry signatures in their query).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from registry.errors import RegistryError
from registry.imports.keyring import Credential
from registry.names import NAME_MAX, NAME_RE, TAG_RE, validate_digest

# The media types of registry.model.manifest_format (the tests check they agree). Not imported from there:
# registry.model imports registry.imports (the keyring), and importing it back would make a cycle.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SUPPORTED = (DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_LIST, OCI_INDEX)
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's /v2/ API actually answers
DEFAULT_TAG = "latest"

MANIFEST_ACCEPT = ", ".join(SUPPORTED)  # no schema 1: a registry that only has schema 1 says so in Content-Type
BLOB_CHUNK = 1024 * 1024  # big enough that per-chunk costs (a write, a send) vanish next to the bytes
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TAGS_PAGE = 100
TAGS_PAGE_MAX_BYTES = 4 * 1024 * 1024  # a page of tags, not a place to stream gigabytes into memory
TOKEN_MAX_BYTES = 64 * 1024  # real tokens are a few KiB
ERROR_BODY_MAX_BYTES = 4096  # enough for the OCI error envelope that explains a refusal
DEFAULT_TOKEN_SECONDS = 60  # the token spec's default when a realm omits expires_in
SHOWN_MAX = 200  # longest piece of upstream-provided text quoted in a message
USER_AGENT = "okura-import"

HOST_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])"
    r"(?::([0-9]+))?"
)
CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


# --- errors ------------------------------------------------------------------------------------------


class UpstreamError(Exception):
    """The upstream could not give what was asked. Raised as is for protocol violations (an unusable answer);
    the subclasses name the causes a caller reacts to differently. The message is one line, "<upstream>:
    <cause>", because it becomes an import condition and a log line; it never holds a secret."""

    def __init__(self, upstream: str, cause: str) -> None:
        self.upstream = upstream
        self.cause = _one_line(cause)
        super().__init__(f"{upstream}: {self.cause}")


class UpstreamUnavailable(UpstreamError):
    """Cannot connect, TLS failed, timed out, 5xx or 429: worth retrying later, nothing is wrong with the request."""


class UpstreamUnauthorized(UpstreamError):
    """The upstream refused us, with our credentials and anonymously: a pull secret is missing or wrong."""


class UpstreamNotFound(UpstreamError):
    """The repository, tag, manifest or blob does not exist upstream (HTTP 404)."""


class UpstreamRefused(UpstreamError):
    """We refused to contact a host: the caller's allow_host guard said no, and why. Nothing was sent to it."""


class DigestMismatch(UpstreamError):
    """The bytes do not hash to the digest asked for or announced: corrupt or tampered, never to be stored."""


class ManifestTooLarge(UpstreamError):
    """The manifest exceeds the size limit; reading stopped there."""


class SchemaOneRefused(UpstreamError):
    """The upstream has only a Docker schema 1 manifest, which Okura does not store."""


class _CredentialsRefused(Exception):
    """Internal: the token realm refused our credential; the caller retries anonymously."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shown(text: str) -> str:
    """Upstream-provided text, cut short: it goes into messages, and an upstream chooses its length."""
    text = _one_line(text)
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "..."


# --- image references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """An image to fetch: registry host[:port], repository path, and a tag or a digest (or both, as docker
    allows; the digest is what gets fetched then). Parsed the way docker and the kubelet read image names,
    so a reference that works in a pod spec means the same image here."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """`[host[:port]/]path[:tag][@digest]`. Without a host the image is on Docker Hub (docker.io), where a
        one-part name is an official image under library/; without tag or digest the tag is "latest".
        The first component is a host only if it has a '.' or ':', is "localhost", or has an uppercase letter
        (docker's rule: repository paths are lowercase). Raises ValueError saying what is wrong."""
        if not text:
            raise ValueError("image reference is empty")
        if text != text.strip() or any(c.isspace() for c in text):
            raise ValueError(f"image reference {_shown(text)!r} contains whitespace")
        name, at, digest = text.partition("@")
        if at:
            digest = _parse_digest(text, digest)
        head, slash, last = name.rpartition("/")
        last, colon, tag = last.partition(":")
        name = head + slash + last
        if colon and not TAG_RE.fullmatch(tag):
            raise ValueError(
                f"image reference {_shown(text)!r}: tag {_shown(tag)!r} must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}"
            )
        first, slash, rest = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            registry = _parse_host(text, first)
        else:
            registry, rest = DOCKER_HUB, name
        _check_repository(f"image reference {_shown(text)!r}", rest)
        if registry == DOCKER_HUB and "/" not in rest:
            rest = f"library/{rest}"  # official images; checked before, so messages show what the user wrote
        return cls(registry, rest, tag if colon else (None if at else DEFAULT_TAG), digest or None)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """registry/repository, as messages and credentials name the image."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def normalize_host(host: str) -> str:
    """A registry host as ImageRef and Upstream compare it: lowercase, Docker Hub under one name."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def _parse_digest(text: str, digest: str) -> str:
    try:
        return validate_digest(digest)
    except RegistryError as e:
        raise ValueError(f"image reference {_shown(text)!r}: digest {_shown(digest)!r}: {e.message}") from None


def _parse_host(text: str, hostport: str) -> str:
    m = HOST_RE.fullmatch(hostport)
    if not m:
        raise ValueError(f"image reference {_shown(text)!r}: {_shown(hostport)!r} is not a valid host[:port]")
    port = m.group(1)
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"image reference {_shown(text)!r}: port {port} is out of range (1-65535)")
    return normalize_host(hostport)


def _check_repository(where: str, repository: str) -> None:
    """`where` starts the message ("image reference 'x'"): the user should see what they wrote."""
    if not repository:
        raise ValueError(f"{where} names no repository")
    if len(repository) > NAME_MAX:
        raise ValueError(f"{where}: repository path is longer than {NAME_MAX} characters")
    if repository != repository.lower():
        raise ValueError(f"{where}: repository path {_shown(repository)!r} must be lowercase")
    if not NAME_RE.fullmatch(repository):
        raise ValueError(
            f"{where}: repository path {_shown(repository)!r} must be components of [a-z0-9] "
            "separated by '.', '_', '__' or '-', joined by '/'"
        )


# --- what is fetched ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as the upstream sent it, verified: `digest` is the digest of `content` (the one asked for
    when fetched by digest), `media_type` one of the schema 2 / OCI types Okura stores. Its descriptors are
    not checked here: whoever stores it parses it (registry.model.manifest_format) as for a push."""

    content: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class _Challenge:
    """What a WWW-Authenticate challenge asks for. Only scheme, realm and service are kept: they say where
    tokens come from, so two challenges that differ in scope or error are the same challenge."""

    scheme: str  # "bearer" or "basic"
    realm: str = ""
    service: str = ""


# --- the client --------------------------------------------------------------------------------------


class Upstream:
    """One registry, for one import or pull-through request. Use as `async with Upstream(...) as upstream:`.

    credentials: Keyring.lookup's answer for the image. Only the first is used, as OpenShift's importer does;
        when it is refused, requests are retried once anonymously and go on anonymously if that works.
        (A credential's identity_token, docker's OAuth refresh token, is not used.)
    insecure: accept any TLS certificate, and fall back to plain HTTP when TLS does not connect at all.
    ca_bundle: a PEM file of CAs trusted besides the system ones.
    allow_host: the SSRF guard, awaited with the host[:port] of every URL before anything is sent there (the
        registry itself, which for docker.io is registry-1.docker.io; token realms; redirect targets); it
        answers None to allow, else the reason, which UpstreamRefused quotes. Async: it may resolve names.
    """

    def __init__(
        self,
        host: str,
        credentials: Sequence[Credential] = (),
        *,
        allow_host: Callable[[str], Awaitable[str | None]],
        insecure: bool = False,
        ca_bundle: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_manifest_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if not HOST_RE.fullmatch(host):
            raise ValueError(f"registry host {_shown(host)!r} is not host[:port] (no scheme, no path)")
        self.host = normalize_host(host)
        self.api_host = DOCKER_HUB_API if self.host == DOCKER_HUB else self.host
        self.credential = credentials[0] if credentials else None
        self.insecure = insecure
        self.ca_bundle = ca_bundle
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_manifest_bytes = max_manifest_bytes
        self.allow_host = allow_host
        self._client: httpx.AsyncClient | None = None
        self._base: httpx.URL | None = None  # scheme://api_host once /v2/ answered
        self._challenge: _Challenge | None = None
        self._anonymous = self.credential is None  # also becomes true once the credential was refused
        self._credential_refused = False
        self._tokens: dict[tuple[str, bool], tuple[str, float]] = {}  # (repository, anonymous) -> token, expiry
        self._probe_lock = asyncio.Lock()

    async def __aenter__(self) -> Upstream:
        self._client = httpx.AsyncClient(
            verify=self._verify(),
            timeout=httpx.Timeout(
                connect=self.connect_timeout, read=self.read_timeout, write=self.read_timeout, pool=self.connect_timeout
            ),
            follow_redirects=False,  # followed by hand: each hop goes through allow_host and loses Authorization
            trust_env=False,  # no proxies or .netrc credentials from the server's environment
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _verify(self) -> ssl.SSLContext | bool:
        """System CAs plus the bundle, or no verification at all when insecure (the bundle is moot then)."""
        if self.insecure:
            return False
        context = ssl.create_default_context()
        if self.ca_bundle:
            try:
                context.load_verify_locations(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as e:
                raise UpstreamError(self.host, f"CA bundle {self.ca_bundle} cannot be used: {e}") from None
        return context

    # -- what callers fetch ---------------------------------------------------------------------------

    async def manifest(self, ref: ImageRef) -> FetchedManifest:
        """The manifest `ref` names (its digest if it has one, else its tag), read up to max_manifest_bytes and
        checked against the digest asked for and the upstream's Docker-Content-Digest."""
        if normalize_host(ref.registry) != self.host:
            raise ValueError(f"{ref} is not on {self.host}")
        shown = f"{self.host}/{ref.repository}" + (f"@{ref.digest}" if ref.digest else f":{ref.reference}")
        path = f"/v2/{ref.repository}/manifests/{ref.reference}"
        response = await self._get(ref.repository, path, {"Accept": MANIFEST_ACCEPT}, shown)
        try:
            await self._check_status(response, shown, "manifest")
            if _media_type(response.headers.get("content-type")) in DOCKER_SCHEMA1:
                raise _schema_one(shown)
            content = await self._read_capped(response, self.max_manifest_bytes, shown, _too_large)
        finally:
            await response.aclose()
        media_type = _manifest_media_type(content, response.headers.get("content-type"), shown)
        digest = ref.digest or _digest_of(content, "sha256")
        if ref.digest and _digest_of(content, _algorithm(ref.digest)) != ref.digest:
            actual = _digest_of(content, _algorithm(ref.digest))
            raise DigestMismatch(shown, f"the manifest received has digest {actual}, not the one asked for")
        announced = response.headers.get("docker-content-digest")
        if announced is not None:
            _check_announced(content, announced.strip(), shown)
        return FetchedManifest(content, media_type, digest)

    async def tags(self, repository: str, limit: int, page_size: int = TAGS_PAGE) -> list[str]:
        """Up to `limit` tags of `repository`, in the upstream's order, following `Link: <...>; rel="next"`."""
        _check_repository(f"tag list of {self.host}", repository)
        shown = f"{self.host}/{repository}"
        found: dict[str, None] = {}
        url: str | httpx.URL = f"/v2/{repository}/tags/list?n={max(1, min(page_size, limit))}"
        visited: set[str] = set()
        while len(found) < limit:
            response = await self._get(repository, url, {"Accept": "application/json"}, shown)
            try:
                await self._check_status(response, shown, "repository")
                body = await self._read_capped(response, TAGS_PAGE_MAX_BYTES, shown, _tags_too_large)
            finally:
                await response.aclose()
            for tag in _tags_of(body, shown):
                found.setdefault(tag, None)
                if len(found) >= limit:
                    break
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                break
            url = response.url.join(next_link)
            if str(url) in visited:
                raise UpstreamError(shown, "the tag list's pagination loops back to a page already read")
            visited.add(str(url))
        return list(found)[:limit]

    def blob(self, repository: str, digest: str) -> BlobStream:
        """The blob's bytes as a stream: `async with upstream.blob(repo, digest) as stream: async for chunk in
        stream`. The last iteration raises DigestMismatch if the bytes do not hash to `digest`: whoever stores
        them must make them visible only after the loop ended without an error."""
        _check_repository(f"blob of {self.host}", repository)
        try:
            validate_digest(digest)
        except RegistryError as e:
            raise ValueError(f"blob digest {_shown(digest)!r}: {e.message}") from None
        return BlobStream(self, repository, digest)

    # -- requests, authentication, redirects ------------------------------------------------------------

    async def _get(self, repository: str, url: str | httpx.URL, headers: dict[str, str], shown: str) -> httpx.Response:
        """GET with this repository's credentials, as the protocol wants them; an open streaming response.

        A 401 first teaches a challenge the /v2/ probe did not show (some registries only challenge on
        repository paths). A 401 to our credential is retried once anonymously, as OpenShift does for
        public images behind a wrong pull secret; anonymous access then stays for this client's life."""
        await self._probe(shown)
        assert self._base is not None
        target = self._base.join(url)
        response = await self._attempt(repository, target, headers, shown)
        if response.status_code != 401:
            return response
        # a 401 without a usable challenge still means "authenticate": Basic is all that can be tried then
        challenge = _challenge_of(response) or self._challenge or _Challenge("basic")
        await response.aclose()
        if challenge != self._challenge:
            self._challenge = challenge
            response = await self._attempt(repository, target, headers, shown)
            if response.status_code != 401:
                return response
            await response.aclose()
        if self._anonymous:
            raise self._refused(shown, response.status_code)
        self._anonymous = self._credential_refused = True
        response = await self._attempt(repository, target, headers, shown)
        if response.status_code == 401:
            await response.aclose()
            raise self._refused(shown, 401)
        return response

    async def _attempt(self, repository: str, url: httpx.URL, headers: dict[str, str], shown: str) -> httpx.Response:
        """One GET as the current identity; a refused credential at the token realm switches to anonymous."""
        try:
            authorization = await self._authorization(repository, shown)
        except _CredentialsRefused:
            self._anonymous = self._credential_refused = True
            authorization = await self._authorization(repository, shown)
        sent = dict(headers)
        if authorization and _origin(url) == _origin(self._base):
            sent["Authorization"] = authorization
        return await self._send(url, sent, shown)

    def _refused(self, shown: str, status: int, where: str = "") -> UpstreamUnauthorized:
        """The final 401: which identities were tried, so the user knows whether to fix or add a pull secret."""
        if self._credential_refused:
            return UpstreamUnauthorized(
                shown,
                f"credentials were refused, and anonymous access too (HTTP {status}{where}): "
                "check the pull secret for this registry",
            )
        return UpstreamUnauthorized(
            shown, f"anonymous access was refused (HTTP {status}{where}): a pull secret for this registry is needed"
        )

    async def _authorization(self, repository: str, shown: str) -> str | None:
        """The Authorization header the upstream's challenge asks for, as the current identity."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return None if self._anonymous or self.credential is None else _basic(self.credential)
        return f"Bearer {await self._token(repository, shown)}"

    async def _token(self, repository: str, shown: str) -> str:
        """A pull token for `repository` from the challenge's realm (the Docker token protocol), cached until
        shortly before it expires. Basic credentials go to the realm, which may be another host."""
        anonymous = self._anonymous or self.credential is None
        cached = self._tokens.get((repository, anonymous))
        if cached and cached[1] > time.monotonic():
            return cached[0]
        assert self._challenge is not None
        realm = self._challenge.realm
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = httpx.URL()
        if url.scheme not in ("http", "https") or not url.host:
            raise UpstreamError(shown, f"the Bearer challenge's realm {_shown(realm)!r} is not an http(s) URL")
        params = {"scope": f"repository:{repository}:pull"}
        if self._challenge.service:
            params["service"] = self._challenge.service
        headers = {"Accept": "application/json"}
        if not anonymous and self.credential is not None:
            headers["Authorization"] = _basic(self.credential)
        realm_host = _netloc(url)
        response = await self._send(url.copy_merge_params(params), headers, shown, role="token realm")
        try:
            if response.status_code in (401, 403):
                if not anonymous:
                    raise _CredentialsRefused()
                raise self._refused(shown, response.status_code, f" from token realm {realm_host}")
            if response.status_code >= 500 or response.status_code == 429:
                raise UpstreamUnavailable(shown, f"token realm {realm_host} answered HTTP {response.status_code}")
            if response.status_code != 200:
                raise UpstreamError(shown, f"token realm {realm_host} answered HTTP {response.status_code}")
            body = await self._read_capped(response, TOKEN_MAX_BYTES, shown, _token_too_large)
        finally:
            await response.aclose()
        token, lifetime = _token_of(body, shown, realm_host)
        margin = min(10.0, lifetime / 2)
        self._tokens[(repository, anonymous)] = (token, time.monotonic() + lifetime - margin)
        return token

    async def _probe(self, shown: str) -> None:
        """GET /v2/ once per client: picks the scheme (https; plain http only when insecure and TLS does not
        connect) and learns the upstream's challenge before credentials are sent anywhere."""
        if self._base is not None:
            return
        async with self._probe_lock:
            if self._base is not None:
                return
            schemes = ("https", "http") if self.insecure else ("https",)
            for scheme in schemes:
                base = httpx.URL(f"{scheme}://{self.api_host}/")
                try:
                    response = await self._send(base.join("/v2/"), {}, shown)
                except UpstreamUnavailable as e:
                    if scheme == "https" and self.insecure and isinstance(e.__cause__, httpx.ConnectError):
                        continue  # TLS did not connect: the insecure registry speaks plain HTTP
                    raise
                await response.aclose()
                status = response.status_code
                if status == 401:
                    self._challenge = _challenge_of(response) or _Challenge("basic")
                elif status >= 500 or status == 429:
                    raise UpstreamUnavailable(shown, f"GET /v2/ answered HTTP {status}")
                elif status not in (200, 403):
                    raise UpstreamError(shown, f"not a registry: GET /v2/ answered HTTP {status}")
                self._base = base
                return

    async def _send(
        self, url: httpx.URL, headers: dict[str, str], shown: str, role: str = "registry"
    ) -> httpx.Response:
        """GET `url`, following up to MAX_REDIRECTS redirects. Every hop's host goes to allow_host first, and
        Authorization is dropped for good once a hop leaves the first URL's origin. Returns an open stream."""
        client = self._client
        if client is None:
            raise RuntimeError("Upstream is used outside `async with`")
        origin = _origin(url)
        for hop in range(MAX_REDIRECTS + 1):
            await self._allow(url, shown, role if hop == 0 else f"{role} redirect target")
            if _origin(url) != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            with _network_errors(shown, _netloc(url), self):
                response = await client.send(client.build_request("GET", url, headers=headers), stream=True)
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                return response
            await response.aclose()
            try:
                url = url.join(location)
            except httpx.InvalidURL:
                raise UpstreamError(shown, f"{_netloc(url)} redirected to an invalid URL") from None
            if url.scheme not in ("http", "https"):
                raise UpstreamError(shown, f"redirect to a {_shown(url.scheme)!r} URL refused")
        raise UpstreamError(shown, f"more than {MAX_REDIRECTS} redirects")

    async def _allow(self, url: httpx.URL, shown: str, role: str) -> None:
        host = _netloc(url)
        reason = await self.allow_host(host)
        if reason is not None:
            raise UpstreamRefused(shown, f"refused to contact {role} {host}: {reason}; nothing was sent to it")

    async def _check_status(self, response: httpx.Response, shown: str, what: str) -> None:
        """Raise for anything but 200, with the registry's own explanation when it gave one."""
        status = response.status_code
        if status == 200:
            return
        detail = await self._error_detail(response)
        if status == 404:
            raise UpstreamNotFound(shown, f"{what} not found{detail}")
        if status in (401, 403):
            raise UpstreamUnauthorized(shown, f"access denied (HTTP {status}){detail}")
        if status >= 500 or status == 429:
            raise UpstreamUnavailable(shown, f"HTTP {status}{detail}")
        raise UpstreamError(shown, f"unexpected HTTP {status}{detail}")

    async def _error_detail(self, response: httpx.Response) -> str:
        """The registry's own explanation from its OCI error envelope, as ": CODE: message" to append to a
        cause; "" when the body (read up to a few KiB) has none."""
        body = bytearray()
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > ERROR_BODY_MAX_BYTES:
                    return ""
        try:
            first = json.loads(body)["errors"][0]
            return f": {_shown(str(first.get('code', '')))}: {_shown(str(first.get('message', '')))}"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return ""

    async def _read_capped(
        self, response: httpx.Response, limit: int, shown: str, too_large: Callable[[str, int], UpstreamError]
    ) -> bytes:
        """The whole body, refusing as soon as it (or its Content-Length) goes past `limit`."""
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large(shown, limit)
        body = bytearray()
        with _network_errors(shown, _netloc(response.url), self):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise too_large(shown, limit)
        return bytes(body)


class BlobStream:
    """A blob on its way from upstream: `size` is its Content-Length (None when not sent); iterating yields
    its raw bytes in chunks of at most BLOB_CHUNK while hashing them, and ends with DigestMismatch if they do
    not hash to the digest. Memory stays flat whatever the size."""

    def __init__(self, upstream: Upstream, repository: str, digest: str) -> None:
        self._upstream = upstream
        self.repository = repository
        self.digest = digest
        self.shown = f"{upstream.host}/{repository}@{digest}"
        self.size: int | None = None
        self.verified = False
        self._response: httpx.Response | None = None
        self._iterated = False

    async def __aenter__(self) -> BlobStream:
        # identity: the digest covers the bytes as stored, not a re-encoding a proxy might apply
        headers = {"Accept-Encoding": "identity"}
        path = f"/v2/{self.repository}/blobs/{self.digest}"
        response = await self._upstream._get(self.repository, path, headers, self.shown)
        try:
            await self._upstream._check_status(response, self.shown, "blob")
        except BaseException:
            await response.aclose()
            raise
        length = response.headers.get("content-length", "")
        self.size = int(length) if length.isdigit() else None
        self._response = response
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._response is None or self._iterated:
            raise RuntimeError("iterate a blob once, inside `async with upstream.blob(...)`")
        self._iterated = True
        hasher = hashlib.new(_algorithm(self.digest))
        received = 0
        hashing: asyncio.Future[None] | None = None
        with _network_errors(self.shown, _netloc(self._response.url), self._upstream):
            async for chunk in self._response.aiter_raw(BLOB_CHUNK):
                # Hashed in a thread (hashlib lets go of the GIL) while the caller uses the chunk and the next
                # one arrives; in order, since each waits for the one before.
                if hashing is not None:
                    await hashing
                hashing = asyncio.ensure_future(asyncio.to_thread(hasher.update, chunk))
                received += len(chunk)
                yield chunk
        if hashing is not None:
            await hashing
        actual = f"{_algorithm(self.digest)}:{hasher.hexdigest()}"
        if actual != self.digest:
            raise DigestMismatch(self.shown, f"the {received} bytes received hash to {actual}")
        self.verified = True


# --- helpers -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _network_errors(shown: str, host: str, upstream: Upstream) -> Iterator[None]:
    """httpx's transport errors as UpstreamUnavailable (cause chained: the insecure fallback looks at it).
    The message names the host, never the URL, whose query may hold a signature."""
    try:
        yield
    except httpx.ConnectTimeout as e:
        raise UpstreamUnavailable(shown, f"connecting to {host} timed out after {upstream.connect_timeout:g}s") from e
    except httpx.TimeoutException as e:
        raise UpstreamUnavailable(shown, f"{host} sent nothing for {upstream.read_timeout:g}s (read timeout)") from e
    except httpx.ConnectError as e:
        raise UpstreamUnavailable(shown, f"cannot connect to {host}: {_shown(str(e)) or type(e).__name__}") from e
    except (httpx.TransportError, httpx.DecodingError) as e:
        raise UpstreamUnavailable(shown, f"{host}: {type(e).__name__}: {_shown(str(e))}") from e


def _netloc(url: httpx.URL) -> str:
    """host[:port] as allow_host and messages see it (the port only when not the scheme's default)."""
    return url.netloc.decode("ascii").lower()


def _origin(url: httpx.URL | None) -> tuple[str, str, int | None] | None:
    return None if url is None else (url.scheme, url.host, url.port)


def _basic(credential: Credential) -> str:
    return "Basic " + base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()


def _challenge_of(response: httpx.Response) -> _Challenge | None:
    """The first Bearer challenge of the response, else its first Basic one."""
    found: dict[str, _Challenge] = {}
    for header in response.headers.get_list("www-authenticate"):
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme in ("bearer", "basic") and scheme not in found:
            params = {
                m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
                for m in CHALLENGE_PARAM_RE.finditer(rest)
            }
            found[scheme] = _Challenge(scheme, params.get("realm", ""), params.get("service", ""))
    return found.get("bearer") or found.get("basic")


def _token_of(body: bytes, shown: str, realm_host: str) -> tuple[str, float]:
    """(token, lifetime in seconds) from a realm's answer; `token` or, OAuth2-style, `access_token`."""
    try:
        document = json.loads(body)
    except ValueError:
        raise UpstreamError(shown, f"token realm {realm_host} answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise UpstreamError(shown, f"token realm {realm_host} answered JSON that is not an object")
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise UpstreamError(shown, f"token realm {realm_host} answered without a token")
    expires_in = document.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else DEFAULT_TOKEN_SECONDS
    return token, lifetime


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _schema_one(shown: str) -> SchemaOneRefused:
    return SchemaOneRefused(
        shown, "the upstream has only a Docker schema 1 manifest, which is not supported; push it as schema 2 or OCI"
    )


def _manifest_media_type(content: bytes, content_type: str | None, shown: str) -> str:
    """The manifest's media type: its Content-Type, which the body's mediaType must not contradict; the body's
    when the header is generic (application/json, octet-stream) or absent, and its shape when the body has no
    mediaType either (OCI allows that). Schema 1 is refused by name, however it is labelled."""
    declared = _media_type(content_type)
    try:
        document: Any = json.loads(content)
    except (ValueError, RecursionError):
        raise UpstreamError(shown, "the manifest is not JSON") from None
    if not isinstance(document, dict):
        raise UpstreamError(shown, "the manifest is not a JSON object")
    body_type = document.get("mediaType")
    if document.get("schemaVersion") == 1 or body_type in DOCKER_SCHEMA1:
        raise _schema_one(shown)
    if body_type is not None and not isinstance(body_type, str):
        raise UpstreamError(shown, "the manifest's mediaType is not a string")
    if declared in SUPPORTED:
        if body_type and body_type != declared:
            raise UpstreamError(
                shown, f"Content-Type {declared} contradicts the manifest's mediaType {_shown(body_type)}"
            )
        return declared
    if body_type in SUPPORTED:
        return body_type
    if body_type is None and document.get("schemaVersion") == 2:
        return OCI_INDEX if "manifests" in document else OCI_MANIFEST
    raise UpstreamError(shown, f"unsupported manifest media type {_shown(body_type or declared or '(none)')!r}")


def _algorithm(digest: str) -> str:
    return digest.partition(":")[0]


def _digest_of(content: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


def _check_announced(content: bytes, announced: str, shown: str) -> None:
    """Docker-Content-Digest must be well formed and match the bytes: a proxy or cache that rewrote the
    manifest on the way is caught here rather than stored under a name the upstream never gave it."""
    try:
        validate_digest(announced)
    except RegistryError as e:
        raise DigestMismatch(shown, f"Docker-Content-Digest {_shown(announced)!r}: {e.message}") from None
    actual = _digest_of(content, _algorithm(announced))
    if actual != announced:
        raise DigestMismatch(shown, f"the manifest received has digest {actual}, not {announced} as announced")


def _tags_of(body: bytes, shown: str) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError:
        raise UpstreamError(shown, "the tag list is not JSON") from None
    tags = document.get("tags") if isinstance(document, dict) else None
    if tags is None:
        return []  # distribution answers "tags": null for a repository without tags
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise UpstreamError(shown, 'the tag list\'s "tags" is not a list of strings')
    for tag in tags:
        if not TAG_RE.fullmatch(tag):
            raise UpstreamError(shown, f"the tag list holds an invalid tag {_shown(tag)!r}")
    return tags


def _too_large(shown: str, limit: int) -> UpstreamError:
    return ManifestTooLarge(shown, f"manifest is larger than the limit of {limit} bytes")


def _tags_too_large(shown: str, limit: int) -> UpstreamError:
    return UpstreamError(shown, f"a page of the tag list is larger than {limit} bytes")


def _token_too_large(shown: str, limit: int) -> UpstreamError:
    return UpstreamError(shown, f"the token realm's answer is larger than {limit} bytes")
