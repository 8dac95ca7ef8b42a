"""The SSRF guard of imports and pull-through (registry.imports.guard): OpenShift's allowedRegistriesForImport
patterns when a list is configured, and the default refusal of link-local, metadata and unspecified addresses
(by literal, or by a name resolving to one) when it is empty. Resolutions are faked on the running loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from registry.config import AllowedRegistry
from registry.imports.guard import HostGuard, split_hostport

LINK_LOCAL = "a link-local address (cloud metadata services live there)"


def guard(*patterns: str, insecure: tuple[str, ...] = ()) -> HostGuard:
    return HostGuard([AllowedRegistry(p, p in insecure) for p in patterns])


@pytest.fixture
def dns(monkeypatch) -> Callable[[dict[str, list[str]]], list[str]]:
    """`dns({name: [addresses]})` makes the loop's getaddrinfo answer from the table (unknown names fail as
    NXDOMAIN does) and returns the list of names looked up."""

    def install(table: dict[str, list[str]]) -> list[str]:
        asked: list[str] = []

        async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
            asked.append(host)
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in table[host]
            ]

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        return asked

    return install


# --- allowed_registries patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, hostport, allowed",
    [
        ("quay.io", "quay.io", True),
        ("quay.io", "QUAY.IO", True),
        ("Quay.IO", "quay.io", True),
        ("quay.io", "quay.io.", True),  # the fully qualified spelling of the same name
        ("quay.io", "evil-quay.io", False),
        ("quay.io", "quay.io.evil.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "A.Example.COM", True),
        ("*.example.com", "a.b.example.com", False),  # `*` is one DNS label
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.example.org", False),
        ("registry.*.example.com", "registry.eu.example.com", True),
        ("*", "localhost", True),
        ("*", "quay.io", False),
        # ports: a pattern without one means 443/80, a host without one is on 443/80
        ("quay.io", "quay.io:443", True),
        ("quay.io", "quay.io:80", True),
        ("quay.io", "quay.io:5000", False),
        ("registry.example.com:5000", "registry.example.com:5000", True),
        ("registry.example.com:5000", "registry.example.com", False),
        ("registry.example.com:5000", "registry.example.com:5001", False),
        ("registry.example.com:443", "registry.example.com", True),
        ("*.example.com:5000", "a.example.com:5000", True),
        ("*.example.com:5000", "a.example.com", False),
        # IP literals, IPv6 in brackets
        ("10.0.0.7:5000", "10.0.0.7:5000", True),
        ("10.0.0.*:5000", "10.0.0.8:5000", True),
        ("10.0.0.7:5000", "10.0.0.8:5000", False),
        ("[fd12::7]:5000", "[fd12::7]:5000", True),
        ("[fd12::7]:5000", "[FD12:0:0::7]:5000", True),  # the same address spelled differently
        ("[fd12::7]:5000", "[fd12::8]:5000", False),
        ("[fd12::7]", "[fd12::7]", True),
        ("[fd12::7]", "[fd12::7]:5000", False),
        # Docker Hub's API hosts are docker.io, as OpenShift matches them
        ("docker.io", "registry-1.docker.io", True),
        ("docker.io", "index.docker.io", True),
        ("docker.io", "auth.docker.io", False),
    ],
)
async def test_allowed_registries_patterns(dns, pattern, hostport, allowed):
    asked = dns({})
    reason = await guard(pattern).check(hostport)
    assert (reason is None) == allowed, reason
    if not allowed:
        assert reason == f"{hostport} is not in imports.allowed_registries"
    assert asked == []  # the admin chose the hosts: nothing is resolved


async def test_any_pattern_of_the_list_may_match():
    g = guard("quay.io", "*.example.com", "localhost:5000")
    assert await g.check("quay.io") is None
    assert await g.check("b.example.com") is None
    assert await g.check("localhost:5000") is None
    assert await g.check("localhost") == "localhost is not in imports.allowed_registries"


@pytest.mark.parametrize(
    "patterns, hostport, reason",
    [
        (("*.*.*.*",), "169.254.169.254", f"169.254.169.254 is {LINK_LOCAL}"),
        (("169.254.*.*:8080",), "169.254.10.1:8080", f"169.254.10.1 is {LINK_LOCAL}"),
        (("*",), "metadata", "metadata is a cloud metadata name"),
        (("*.google.internal",), "metadata.google.internal", "metadata.google.internal is a cloud metadata name"),
        (("*",), "2852039166", f"2852039166 means 169.254.169.254, {LINK_LOCAL}"),
    ],
)
async def test_wildcards_do_not_open_metadata_services(patterns, hostport, reason):
    assert await guard(*patterns).check(hostport) == reason


@pytest.mark.parametrize(
    "pattern, hostport",
    [
        ("169.254.169.254", "169.254.169.254"),
        ("169.254.169.254:8080", "169.254.169.254:8080"),
        ("[fe80::1]:5000", "[fe80::1]:5000"),
        ("metadata.google.internal", "metadata.google.internal"),
    ],
)
async def test_a_pattern_naming_the_exact_host_opens_it(pattern, hostport):
    assert await guard(pattern).check(hostport) is None


def test_insecure_allowed():
    g = guard(
        "secure.example.com", "*.lab.example.com", "10.0.0.7:5000", insecure=("*.lab.example.com", "10.0.0.7:5000")
    )
    assert g.insecure_allowed("a.lab.example.com")
    assert g.insecure_allowed("A.LAB.example.com:443")
    assert g.insecure_allowed("10.0.0.7:5000")
    assert not g.insecure_allowed("10.0.0.7:5001")
    assert not g.insecure_allowed("secure.example.com")
    assert not g.insecure_allowed("elsewhere.example.com")
    assert not HostGuard([]).insecure_allowed("anything.example.com")


def test_insecure_when_any_matching_pattern_says_so():
    g = guard("*.example.com", "lab.example.com", insecure=("lab.example.com",))
    assert g.insecure_allowed("lab.example.com")
    assert not g.insecure_allowed("prod.example.com")


def test_describe():
    assert "link-local" in HostGuard([]).describe()
    assert guard("quay.io", "*.lab:5000", insecure=("*.lab:5000",)).describe() == (
        "imports may reach only imports.allowed_registries: quay.io, *.lab:5000 (insecure)"
    )


# --- the default: everything but link-local, metadata and unspecified addresses ----------------------------


@pytest.mark.parametrize(
    "hostport, reason",
    [
        ("169.254.169.254", f"169.254.169.254 is {LINK_LOCAL}"),
        ("169.254.169.254:80", f"169.254.169.254 is {LINK_LOCAL}"),
        ("169.254.170.2", f"169.254.170.2 is {LINK_LOCAL}"),  # ECS task metadata
        ("[fe80::1]", f"fe80::1 is {LINK_LOCAL}"),
        ("[fe80::1%25eth0]:5000", f"fe80::1%25eth0 is {LINK_LOCAL}"),
        ("[FEBF::1]", f"febf::1 is {LINK_LOCAL}"),
        ("[fd00:ec2::254]", "fd00:ec2::254 is a cloud metadata address"),
        ("100.100.100.200", "100.100.100.200 is a cloud metadata address"),
        ("0.0.0.0:5000", "0.0.0.0 is the unspecified address (connecting to it reaches this host)"),
        ("[::]:5000", ":: is the unspecified address (connecting to it reaches this host)"),
        ("[::ffff:169.254.169.254]", f"::ffff:169.254.169.254 is the IPv6 form of 169.254.169.254, {LINK_LOCAL}"),
        ("[::ffff:a9fe:a9fe]", f"::ffff:a9fe:a9fe is the IPv6 form of 169.254.169.254, {LINK_LOCAL}"),
        (
            "[::ffff:100.100.100.200]",
            "::ffff:100.100.100.200 is the IPv6 form of 100.100.100.200, a cloud metadata address",
        ),
        ("[64:ff9b::a9fe:a9fe]", f"64:ff9b::a9fe:a9fe is the IPv6 form of 169.254.169.254, {LINK_LOCAL}"),
        ("2852039166", f"2852039166 means 169.254.169.254, {LINK_LOCAL}"),
        ("0xa9fea9fe", f"0xa9fea9fe means 169.254.169.254, {LINK_LOCAL}"),
        ("169.254.43518", f"169.254.43518 means 169.254.169.254, {LINK_LOCAL}"),
        ("metadata.google.internal", "metadata.google.internal is a cloud metadata name"),
        ("Metadata.Google.Internal.", "metadata.google.internal is a cloud metadata name"),
        ("metadata", "metadata is a cloud metadata name"),
    ],
)
async def test_default_refuses_metadata_and_link_local_literals(dns, hostport, reason):
    asked = dns({})
    assert await HostGuard([]).check(hostport) == reason
    assert asked == []  # known without asking DNS


@pytest.mark.parametrize(
    "hostport",
    ["127.0.0.1:5000", "[::1]:5000", "10.1.2.3", "192.168.0.10:5000", "172.16.0.1", "[fd12::7]", "8.8.8.8", "127.1"],
)
async def test_default_allows_loopback_private_and_public_literals(dns, hostport):
    asked = dns({})
    assert await HostGuard([]).check(hostport) is None
    assert asked == []


async def test_default_refuses_a_name_resolving_to_metadata(dns):
    dns(
        {
            "evil.example.com": ["203.0.113.5", "169.254.169.254"],
            "evil6.example.com": ["2001:db8::5", "fd00:ec2::254"],
            "mapped.example.com": ["::ffff:169.254.169.254"],
        }
    )
    g = HostGuard([])
    assert await g.check("evil.example.com:5000") == f"evil.example.com resolves to 169.254.169.254, {LINK_LOCAL}"
    assert await g.check("evil6.example.com") == "evil6.example.com resolves to fd00:ec2::254, a cloud metadata address"
    assert await g.check("mapped.example.com") == (
        f"mapped.example.com resolves to ::ffff:a9fe:a9fe, the IPv6 form of 169.254.169.254, {LINK_LOCAL}"
    )


async def test_default_allows_names_resolving_elsewhere_and_names_that_do_not_resolve(dns):
    asked = dns({"quay.io": ["203.0.113.5", "2001:db8::5"], "registry.lan": ["10.0.0.7"]})
    g = HostGuard([])
    assert await g.check("quay.io") is None
    assert await g.check("registry.lan:5000") is None
    assert await g.check("nowhere.invalid") is None  # connecting fails later, with the resolver's own message
    assert asked == ["quay.io", "registry.lan", "nowhere.invalid"]


async def test_localhost_resolves_and_is_allowed():
    assert await HostGuard([]).check("localhost:5000") is None


async def test_resolutions_are_cached_for_the_ttl(dns):
    asked = dns({"quay.io": ["203.0.113.5"]})
    g = HostGuard([])
    for _ in range(3):
        assert await g.check("quay.io") is None
    assert asked == ["quay.io"]
    dns({"quay.io": ["169.254.169.254"]})
    assert await g.check("quay.io") is None  # still the answer of a moment ago
    asked = dns({"quay.io": ["169.254.169.254"]})
    uncached = HostGuard([], ttl=0)
    assert await uncached.check("quay.io") == f"quay.io resolves to 169.254.169.254, {LINK_LOCAL}"
    assert await uncached.check("quay.io") is not None
    assert asked == ["quay.io", "quay.io"]


async def test_failed_resolutions_are_not_cached(dns):
    asked = dns({})
    g = HostGuard([])
    assert await g.check("later.example.com") is None
    dns_now = dns({"later.example.com": ["169.254.169.254"]})
    assert await g.check("later.example.com") == f"later.example.com resolves to 169.254.169.254, {LINK_LOCAL}"
    assert asked == ["later.example.com"]
    assert dns_now == ["later.example.com"]


@pytest.mark.parametrize("hostport", ["", "http://quay.io", "quay.io/x", "quay.io:99999", "user@quay.io", "a b"])
async def test_not_a_host_port(hostport):
    reason = await HostGuard([]).check(hostport)
    assert reason is not None and "is not a host[:port]" in reason


@pytest.mark.parametrize(
    "hostport, parsed",
    [
        ("Quay.IO", ("quay.io", None)),
        ("quay.io:5000", ("quay.io", 5000)),
        ("[::1]:5000", ("::1", 5000)),
        ("[FE80::1]", ("fe80::1", None)),
        ("metadata.google.internal.:80", ("metadata.google.internal", 80)),
        ("::1", None),  # IPv6 only in brackets, as in URLs
        ("quay.io:0", None),
    ],
)
def test_split_hostport(hostport, parsed):
    assert split_hostport(hostport) == parsed
