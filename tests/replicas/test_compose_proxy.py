"""deploy/compose.yaml's proxy (deploy/compose/nginx.conf, run by Debian's nginx) in front of
two real replicas set up as compose sets them (PostgreSQL, one S3 bucket, redirects off):
pushes and pulls through it spread over both replicas, large bodies stream both ways, Location
headers name the proxy, and when a replica stops the other takes everything."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support.blobs import MiB
from tests.support.clients import Clients
from tests.support.images import build_image, random_layers
from tests.support.nginx import Nginx
from tests.support.servers import host

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replica_env(replica_env) -> dict[str, str]:
    return {**replica_env, "OKURA_STORAGE_S3_REDIRECT": "false"}  # as deploy/compose.yaml sets it


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, replicas) -> Iterator[Nginx]:
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), [host(replicas.a), host(replicas.b)])
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    nginx.start()
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def clients(tmp_path_factory, proxy) -> Clients:
    return Clients(tmp_path_factory.mktemp("proxy-clients"), [proxy.host])


def test_podman_push_and_pull_through_the_proxy(proxy, replicas, clients, tmp_path_factory):
    image = build_image(clients, "localhost/proxy/app:v1", random_layers([[3 * MiB, 7_000], [9 * MiB], [20]], "p"))
    ref = f"{proxy.host}/proxy/app:v1"
    pushed = clients.push("podman", image.name, ref)

    puller = Clients(tmp_path_factory.mktemp("proxy-puller"), [proxy.host])
    puller.pull(ref)
    got = puller.read_image_files(ref, list(image.files))
    for path, data in image.files.items():
        assert got[path] == data, f"{path} differs after the pull through the proxy"
    assert puller.skopeo_inspect(ref)["Digest"] == pushed

    # Round robin: the requests of one push and one pull went to both replicas.
    answered = proxy.upstreams_of(r"^(HEAD|GET|POST|PATCH|PUT) /v2/proxy/app/")
    assert answered == {host(replicas.a), host(replicas.b)}, answered


def test_locations_name_the_proxy_and_a_session_moves_between_replicas(proxy, replicas):
    with httpx.Client(base_url=proxy.url, timeout=30) as c:
        r = c.post("/v2/proxy/chunked/blobs/uploads/")
        assert r.status_code == 202, r.text
        data, offset = b"", 0
        for i in range(4):  # round robin: the PATCHes alternate between the replicas
            part = hashlib.sha256(str(i).encode()).digest() * (MiB // 32)
            location = httpx.URL(r.headers["Location"])
            assert location.host in ("", "127.0.0.1") and location.port in (None, proxy.port), location
            span = f"{offset}-{offset + len(part) - 1}"
            r = c.patch(
                location.raw_path.decode(),
                content=part,
                headers={"Content-Type": "application/octet-stream", "Content-Range": span},
            )
            assert r.status_code == 202, f"PATCH #{i}: {r.status_code} {r.text}"
            data, offset = data + part, offset + len(part)
            assert r.headers["Range"] == f"0-{offset - 1}"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = c.put(httpx.URL(r.headers["Location"]).raw_path.decode(), params={"digest": digest})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/proxy/chunked/blobs/{digest}").content == data
    assert proxy.upstreams_of(r"^PATCH /v2/proxy/chunked/") == {host(replicas.a), host(replicas.b)}


def test_a_large_blob_streams_through_both_ways(proxy):
    size, chunk = 96 * MiB, MiB
    block = hashlib.sha256(b"proxy").digest() * (chunk // 32)

    def body() -> Iterator[bytes]:
        for i in range(size // chunk):
            yield i.to_bytes(4, "big") + block[4:]

    expected = hashlib.sha256()
    for part in body():
        expected.update(part)
    digest = "sha256:" + expected.hexdigest()
    with httpx.Client(base_url=proxy.url, timeout=120) as c:
        r = c.post(
            "/v2/proxy/big/blobs/uploads/",
            params={"digest": digest},
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        got = hashlib.sha256()
        with c.stream("GET", f"/v2/proxy/big/blobs/{digest}") as r:
            assert r.status_code == 200  # redirects are off: the replica streams it through the proxy
            assert int(r.headers["Content-Length"]) == size
            for part in r.iter_bytes():
                got.update(part)
    assert "sha256:" + got.hexdigest() == digest


def test_one_replica_stopped_the_other_takes_everything(proxy, replicas, clients):
    """Last in the module: replica A stays stopped."""
    a, b = replicas
    base = build_image(clients, "localhost/proxy/failover:base", random_layers([[2 * MiB]], "f"))
    clients.push("podman", base.name, f"{proxy.host}/proxy/failover:base")

    a.stop()  # SIGTERM: drains and exits; nginx finds out from a refused connection
    with httpx.Client(base_url=proxy.url, timeout=30) as c:
        for i in range(6):  # every other request would go to A by round robin
            assert c.get("/v2/").status_code == 200, f"GET /v2/ #{i}"
    for i in range(3):  # pushes (POST, PATCH, PUT: not retried by nginx once sent) and pulls
        image = build_image(clients, f"localhost/proxy/failover:v{i}", random_layers([[MiB + i]], f"f{i}"))
        ref = f"{proxy.host}/proxy/failover:v{i}"
        pushed = clients.push("podman", image.name, ref)
        assert clients.skopeo_inspect(ref)["Digest"] == pushed
    # Requests that nginx tried on A first were passed on to B (the log names both then).
    assert host(b) in proxy.upstreams_of(r"^PUT /v2/proxy/failover/manifests/v")
