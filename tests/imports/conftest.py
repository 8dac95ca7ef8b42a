"""Upstream registries, started once per test module: CNCF distribution anonymous, with
htpasswd and behind TLS (a CA the test makes), and an auth-enabled okura."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import pytest_asyncio

from tests.support.registries import AuthRegistry, start_registry
from tests.support.tls import CertificateAuthority
from tests.support.upstreams import (
    PASSWORD,
    USER,
    Distribution,
    OkuraImages,
    Stub,
    bcrypt_line,
    push_image,
    push_index,
    start_distribution,
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest_asyncio.fixture(scope="module")
async def distribution(tmp_path_factory) -> AsyncIterator[Distribution]:
    """Anonymous, plain HTTP: test/app:v1 (a 3 MiB and a 1 KiB layer) and test/multi:latest (an index)."""
    for registry in start_distribution(tmp_path_factory.mktemp("distribution")):
        async with httpx.AsyncClient(base_url=registry.url, timeout=30) as client:
            registry.images["app"] = await push_image(client, "test/app", "v1", (3 * 1024 * 1024, 1024))
            registry.images["multi"] = await push_index(client, "test/multi", "latest")
        yield registry


@pytest_asyncio.fixture(scope="module")
async def htpasswd_distribution(tmp_path_factory) -> AsyncIterator[Distribution]:
    """htpasswd (Basic) auth, plain HTTP: private/app:v1."""
    directory = tmp_path_factory.mktemp("distribution-htpasswd")
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(bcrypt_line(USER, PASSWORD) + "\n")
    for registry in start_distribution(directory / "registry", htpasswd=htpasswd):
        async with httpx.AsyncClient(base_url=registry.url, timeout=30, auth=(USER, PASSWORD)) as client:
            registry.images["app"] = await push_image(client, "private/app", "v1")
        yield registry


@pytest_asyncio.fixture(scope="module")
async def tls_distribution(tmp_path_factory, ca) -> AsyncIterator[Distribution]:
    """Anonymous behind TLS, certificate from the test CA: tls/app:v1."""
    cert = ca.issue("distribution")
    for registry in start_distribution(tmp_path_factory.mktemp("distribution-tls"), tls=cert, ca=ca.path):
        verify = ssl.create_default_context(cafile=str(ca.path))
        async with httpx.AsyncClient(base_url=registry.url, timeout=30, verify=verify) as client:
            registry.images["app"] = await push_image(client, "tls/app", "v1")
        yield registry


@pytest_asyncio.fixture(scope="module")
async def okura(tmp_path_factory) -> AsyncIterator[OkuraImages]:
    """private/app:v1 (cluster-admin only), public/app:v1 (anonymous pulls allowed), private/many with 5 tags."""
    for registry in start_registry(tmp_path_factory.mktemp("okura-upstream"), auth=True):
        assert isinstance(registry, AuthRegistry) and registry.admin is not None
        registry.grant("registry-viewer", "system:unauthenticated", "public")
        async with httpx.AsyncClient(base_url=registry.url, timeout=30, auth=registry.admin.basic) as client:
            private = await push_image(client, "private/app", "v1", (256 * 1024,))
            public = await push_image(client, "public/app", "v1")
            tags = [f"t{i}" for i in range(5)]
            for tag in tags:
                await push_image(client, "private/many", tag)
        yield OkuraImages(registry, private, public, tags)


@pytest_asyncio.fixture
async def stubs() -> AsyncIterator[Callable[..., Awaitable[Stub]]]:
    """`await stubs(bind="127.0.0.1")`: a started Stub; all are closed after the test."""
    started: list[Stub] = []

    async def factory(bind: str = "127.0.0.1") -> Stub:
        stub = await Stub(bind).start()
        started.append(stub)
        return stub

    yield factory
    for stub in started:
        await stub.close()
