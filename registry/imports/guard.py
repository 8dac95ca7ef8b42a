"""Where image imports and pull-through may connect: the guard against server-side request forgery.

An import makes the server connect wherever a user's image reference (and then the upstream's token realm,
redirects and next-page links) points. Without a guard that reaches cloud metadata services, whose
credentials would come back in an error message or an imported "blob".

Two modes, as imports.allowed_registries says:
- a list (OpenShift's allowedRegistriesForImport): only hosts matching a pattern. The admin chose those
  hosts, so names are not resolved; link-local and metadata addresses stay refused unless a pattern names
  them exactly, so a pattern such as `*` or `*.*.*.*` cannot open them by accident;
- empty: every host but link-local, cloud metadata and unspecified addresses. Names are resolved, and one
  refused address among the answers refuses the name. Loopback and private networks stay allowed: tests
  and on-premises registries live there.

Resolving here and again when connecting leaves a gap (DNS rebinding: a name that answers differently the
second time); closing it needs the connection to use the address checked here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from registry.config import AllowedRegistry

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TTL = 30.0  # seconds a resolution is reused: one lookup per import, not one per blob
RESOLVE_CACHE_MAX = 1024  # names remembered at most; expired ones go first
DEFAULT_PORTS = frozenset({80, 443})
SHOWN_MAX = 200

# Docker Hub's API answers on these names, while patterns (and users) say docker.io, as OpenShift matches
# them. Not imported from registry.imports.upstream: this module stays free of the HTTP client.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOSTS = frozenset({"index.docker.io", "registry-1.docker.io"})

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean...
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (VM agent configuration and extension settings)
    )
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: IPv4 reached through a NAT64 gateway

_HOSTPORT_RE = re.compile(
    r"\[(?P<v6>[0-9a-f:.]+(?:%[\w.~-]+)?)\](?::(?P<v6port>\d{1,5}))?|(?P<host>[^:\[\]/@\s]+)(?::(?P<port>\d{1,5}))?"
)
_LEGACY_IPV4_RE = re.compile(r"[0-9][0-9a-fx.]*")  # 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518


class HostGuard:
    """Says whether imports and pull-through may connect to a host[:port]; `check` is Upstream's allow_host."""

    def __init__(self, allowed: Sequence[AllowedRegistry], *, ttl: float = RESOLVE_TTL) -> None:
        self._patterns = tuple(_Pattern.parse(entry) for entry in allowed)
        self._ttl = ttl
        self._resolved: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}  # name -> (expiry, addresses)

    async def check(self, hostport: str) -> str | None:
        """None when nothing stops a connection to `hostport`, else a one-line reason naming it."""
        parsed = split_hostport(hostport)
        if parsed is None:
            return f"{_shown(hostport)!r} is not a host[:port]"
        host, port = parsed
        if self._patterns:
            return self._check_listed(hostport, host, port)
        return await self._check_default(host)

    def for_registry(self, registry: str) -> Callable[[str], Awaitable[str | None]]:
        """Upstream's allow_host for one registry. The list decides whether that registry may be
        reached; the hosts it sends the client on to (its token realm, a CDN or S3 a blob redirects
        to) pass the default refusals only, as OpenShift checks only the image's registry against
        allowedRegistriesForImport. Otherwise a list naming quay.io would refuse quay's CDN."""
        registry = registry.lower()

        async def allow(hostport: str) -> str | None:
            parsed = split_hostport(hostport)
            if parsed is None:
                return f"{_shown(hostport)!r} is not a host[:port]"
            is_registry = hostport.lower() == registry or (registry == DOCKER_HUB and parsed[0] in DOCKER_HUB_API_HOSTS)
            if is_registry or not self._patterns:
                return await self.check(hostport)
            return await self._check_default(parsed[0])

        return allow

    def insecure_allowed(self, hostport: str) -> bool:
        """Whether a pattern matching `hostport` is marked insecure (OpenShift ORs this with the tag's
        importPolicy.insecure)."""
        parsed = split_hostport(hostport)
        return parsed is not None and any(p.insecure for p in self._matching(*parsed))

    def describe(self) -> str:
        """The policy in one line, for the start-up log."""
        if not self._patterns:
            return "imports may reach any registry but link-local, cloud metadata and unspecified addresses"
        shown = ", ".join(p.text + (" (insecure)" if p.insecure else "") for p in self._patterns)
        return f"imports may reach only imports.allowed_registries: {shown}"

    def _check_listed(self, hostport: str, host: str, port: int | None) -> str | None:
        matching = self._matching(host, port)
        if not matching:
            return f"{_shown(hostport)} is not in imports.allowed_registries"
        if any(p.names(host) for p in matching):
            return None  # the admin wrote this very host: even a metadata address is theirs to open
        return static_refusal(host)

    def _matching(self, host: str, port: int | None) -> list[_Pattern]:
        hosts = (host, DOCKER_HUB) if host in DOCKER_HUB_API_HOSTS else (host,)
        return [p for p in self._patterns if any(p.matches(h, port) for h in hosts)]

    async def _check_default(self, host: str) -> str | None:
        reason = static_refusal(host)
        if reason is not None or ip_literal(host) is not None:
            return reason
        for ip in await self._resolve(host):
            why = address_refusal(ip)
            if why is not None:
                return f"{_shown(host)} resolves to {ip}, {why}"
        return None

    async def _resolve(self, host: str) -> tuple[IPAddress, ...]:
        """Every address `host` resolves to, () when it does not (the connection then fails by itself,
        with a clearer message than ours). Answers are reused for `ttl` seconds; failures are not."""
        now = time.monotonic()
        cached = self._resolved.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # gaierror; UnicodeError for names IDNA cannot encode
            return ()
        addresses = tuple(
            dict.fromkeys(_address(str(info[4][0])) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
        )
        self._remember(host, now + self._ttl, addresses)
        return addresses

    def _remember(self, host: str, expiry: float, addresses: tuple[IPAddress, ...]) -> None:
        if len(self._resolved) >= RESOLVE_CACHE_MAX:
            now = time.monotonic()
            self._resolved = {h: e for h, e in self._resolved.items() if e[0] > now}
            if len(self._resolved) >= RESOLVE_CACHE_MAX:
                self._resolved.clear()
        self._resolved[host] = (expiry, addresses)


@dataclass(frozen=True)
class _Pattern:
    """One allowed_registries entry, parsed: DNS labels ("*" for any one label) or an IP address, and a port."""

    text: str
    labels: tuple[str, ...]  # empty for an IPv6 literal
    ip: IPAddress | None  # set when the pattern is an exact IP literal
    port: int | None
    insecure: bool

    @classmethod
    def parse(cls, entry: AllowedRegistry) -> _Pattern:
        parsed = split_hostport(entry.domain_name)
        if parsed is None:
            raise ValueError(f"{entry.domain_name!r} is not a host[:port] pattern")
        host, port = parsed
        ip = None if "*" in host else ip_literal(host)
        labels = () if isinstance(ip, ipaddress.IPv6Address) else tuple(host.split("."))
        return cls(entry.domain_name.lower(), labels, ip, port, entry.insecure)

    def matches(self, host: str, port: int | None) -> bool:
        return _port_matches(self.port, port) and self._host_matches(host)

    def names(self, host: str) -> bool:
        """Whether this pattern spells out `host` itself, without a wildcard."""
        if self.ip is not None:
            return ip_literal(host) == self.ip
        return "*" not in self.labels and self.labels == tuple(host.split("."))

    def _host_matches(self, host: str) -> bool:
        if self.ip is not None:
            return ip_literal(host) == self.ip
        labels = host.split(".")
        return len(labels) == len(self.labels) and all(p in ("*", h) for p, h in zip(self.labels, labels, strict=True))


def _port_matches(pattern: int | None, port: int | None) -> bool:
    """OpenShift's rule: a pattern without a port means the default ports (443, or 80 for plain HTTP), and a
    host without a port is on a default one; any other port must be written in the pattern."""
    if port is None:
        return pattern is None or pattern in DEFAULT_PORTS
    if pattern is None:
        return port in DEFAULT_PORTS
    return port == pattern


def split_hostport(hostport: str) -> tuple[str, int | None] | None:
    """(host, port) from `host[:port]` or `[v6][:port]`: host lowercase, without brackets or a final dot
    (`metadata.google.internal.` is the same name); None when it is neither."""
    m = _HOSTPORT_RE.fullmatch(hostport.strip().lower())
    if m is None:
        return None
    host = m.group("v6") or m.group("host")
    port_text = m.group("v6port") or m.group("port")
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        return None
    host = host.removesuffix(".")
    return (host, port) if host else None


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, if it is one. Includes the legacy IPv4 forms the C resolver accepts
    (2852039166, 0xa9fea9fe, 169.254.43518): a connection to them goes to the address they mean."""
    try:
        return _address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4_RE.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def static_refusal(host: str) -> str | None:
    """Why `host` is refused whatever it resolves to (a metadata name, a refused IP literal), or None."""
    if host in METADATA_NAMES:
        return f"{host} is a cloud metadata name"
    ip = ip_literal(host)
    why = None if ip is None else address_refusal(ip)
    if ip is None or why is None:
        return None
    if _is_plain_literal(host):
        return f"{_shown(host)} is {why}"
    return f"{_shown(host)} means {ip}, {why}"


def address_refusal(ip: IPAddress) -> str | None:
    """Why nothing may connect to `ip` by default, as a phrase ("a link-local address ..."), or None."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        why = address_refusal(embedded)
        return None if why is None else f"the IPv6 form of {embedded}, {why}"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address (connecting to it reaches this host)"
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (::ffff:a.b.c.d) or behind NAT64."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address(text: str) -> IPAddress:
    """An IP address, without the IPv6 zone (%eth0): the zone says which link, not which address."""
    return ipaddress.ip_address(text.partition("%")[0])


def _is_plain_literal(host: str) -> bool:
    try:
        _address(host)
    except ValueError:
        return False
    return True


def _shown(text: str) -> str:
    """Caller-provided text in a reason, kept on one line and short."""
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "..."
