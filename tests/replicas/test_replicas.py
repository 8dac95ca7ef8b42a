"""Two real `okura serve` replicas (separate processes, data dirs and ports) sharing one
PostgreSQL database and one S3 bucket (SeaweedFS), driven by real clients and raw HTTP:
whatever goes in through one replica comes out of the other, at once and intact."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.blobs import MiB
from tests.support.clients import skopeo_argv, start_client
from tests.support.digests import sha256, sha256_file
from tests.support.images import OCILayout, build_image, random_layers
from tests.support.media_types import ALL_MANIFEST_TYPES
from tests.support.processes import OKURA
from tests.support.s3 import REPLICAS_BUCKET
from tests.support.servers import host

pytestmark = pytest.mark.e2e


def manifest_digest(server, repo: str, ref: str) -> str | None:
    r = httpx.get(
        f"{server.url}/v2/{repo}/manifests/{ref}", headers=[("Accept", t) for t in ALL_MANIFEST_TYPES], timeout=10
    )
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def pull_to_dir(clients, src: str, dest: Path) -> dict:
    """skopeo copy docker://src dir:dest (skopeo verifies every blob's digest); the manifest."""
    clients.skopeo("copy", "--src-tls-verify=false", f"docker://{src}", f"dir:{dest}")
    return json.loads((dest / "manifest.json").read_text())


def assert_dir_has_layers(dest: Path, layer_digests: list[str]) -> None:
    for digest in layer_digests:
        path = dest / digest.split(":", 1)[1]
        assert path.exists(), f"layer {digest} missing from {dest}"
        assert sha256_file(path) == digest


# --------------------------------------------------------------------------------------------
# 1. push through A, pull through B
# --------------------------------------------------------------------------------------------


def test_podman_push_through_a_pull_through_b(replicas, client_factory):
    a, b = replicas
    builder = client_factory("builder")
    image = build_image(
        builder, "localhost/replicas/multi:v1", random_layers([[300_000, 7_000], [1_500_000], [20]], "m")
    )
    pushed = builder.push("podman", image.name, f"{host(a)}/replicas/multi:v1")

    puller = client_factory("puller")
    ref = f"{host(b)}/replicas/multi:v1"
    puller.pull(ref)
    got = puller.read_image_files(ref, list(image.files))
    for path, data in image.files.items():
        assert got[path] == data, f"{path} differs after the pull through B"
    assert puller.skopeo_inspect(ref)["Digest"] == pushed
    assert manifest_digest(b, "replicas/multi", "v1") == pushed


# --------------------------------------------------------------------------------------------
# 2. one chunked upload whose PATCHes alternate between the replicas
# --------------------------------------------------------------------------------------------


def test_chunked_upload_alternating_replicas(replicas):
    a, b = replicas
    repo = "replicas/chunked"
    sizes = [6 * MiB, 1 * MiB, 6 * MiB, 1 * MiB, 6 * MiB + 12_345]
    data = os.urandom(sum(sizes))
    digest = sha256(data)
    with httpx.Client(timeout=60) as c:
        r = c.post(f"{a.url}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = httpx.URL(r.headers["Location"])
        offset = 0
        servers = [b, a]  # the first PATCH goes to the replica that did not open the session
        for i, size in enumerate(sizes):
            server = servers[i % 2]
            part = data[offset : offset + size]
            r = c.patch(
                httpx.URL(server.url).join(location.raw_path.decode()),
                content=part,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + size - 1}",
                },
            )
            assert r.status_code == 202, f"PATCH #{i} through {server.url}: {r.status_code} {r.text}"
            offset += size
            assert r.headers["Range"] == f"0-{offset - 1}"
            location = httpx.URL(r.headers["Location"])
        closer = servers[len(sizes) % 2]  # the replica that did not take the last PATCH
        r = c.put(httpx.URL(closer.url).join(location.raw_path.decode()), params={"digest": digest})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest

        for server in (a, b):
            r = c.get(f"{server.url}/v2/{repo}/blobs/{digest}", follow_redirects=True)
            assert r.status_code == 200, f"GET through {server.url}: {r.status_code}"
            assert [h.status_code for h in r.history] == [307], "redirect on: GET should answer 307 to S3"
            assert r.content == data, f"GET through {server.url} returned different bytes"
            r = c.head(f"{server.url}/v2/{repo}/blobs/{digest}", follow_redirects=True)
            assert r.status_code == 200 and r.history == [], "HEAD is answered by the registry itself"
            assert r.headers["Docker-Content-Digest"] == digest
            assert int(r.headers["Content-Length"]) == len(data)


# --------------------------------------------------------------------------------------------
# 3. the same layers pushed through both replicas at once
# --------------------------------------------------------------------------------------------


def test_concurrent_pushes_of_shared_layers(replicas, client_factory, tmp_path):
    a, b = replicas
    layout = OCILayout(tmp_path / "layout")
    shared = random_layers([[3 * MiB], [8 * MiB], [200_000]], "shared")
    one = layout.add("one", [*shared, {"/one.txt": b"one\n"}])
    two = layout.add("two", [*shared, {"/two.txt": b"two\n"}])

    pushers = [client_factory("push-a"), client_factory("push-b")]
    jobs = []
    for clients, server, image in ((pushers[0], a, one), (pushers[1], b, two)):
        digestfile = tmp_path / f"{image.ref}.digest"
        argv = skopeo_argv(
            clients,
            "copy",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digestfile),
            layout.source(image),
            f"docker://{host(server)}/replicas/shared:{image.ref}",
        )
        jobs.append((start_client(clients, argv), digestfile, image))
    for proc, _, image in jobs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"push of {image.ref} failed:\n{out}\n{err}"

    puller = client_factory("puller-shared")
    for (_, digestfile, image), server in ((jobs[0], b), (jobs[1], a)):  # pull through the other replica
        assert digestfile.read_text().strip() == image.manifest_digest
        for s in (a, b):
            assert manifest_digest(s, "replicas/shared", image.ref) == image.manifest_digest
        dest = tmp_path / f"pulled-{image.ref}"
        manifest = pull_to_dir(puller, f"{host(server)}/replicas/shared:{image.ref}", dest)
        assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests
        assert_dir_has_layers(dest, image.layer_digests)

    ref = f"{host(b)}/replicas/shared:one"
    puller.pull(ref)
    got = puller.read_image_files(ref, list(one.files))
    assert got == {p: d for p, d in one.files.items()}


# --------------------------------------------------------------------------------------------
# 4. a tag moved through A is served by B at once
# --------------------------------------------------------------------------------------------


def test_tag_move_through_a_is_seen_by_b(replicas, client_factory, tmp_path):
    a, b = replicas
    layout = OCILayout(tmp_path / "layout")
    first = layout.add("first", [{"/v.txt": b"first\n"}])
    second = layout.add("second", [{"/v.txt": b"second\n"}])
    clients = client_factory("tagger")
    repo = "replicas/tagmove"

    def push(image) -> None:
        clients.skopeo("copy", "--dest-tls-verify=false", layout.source(image), f"docker://{host(a)}/{repo}:latest")

    push(first)
    assert manifest_digest(a, repo, "latest") == first.manifest_digest
    for _ in range(3):  # B serves (and caches) the first digest
        assert manifest_digest(b, repo, "latest") == first.manifest_digest

    push(second)
    moved = time.monotonic()
    seen = None
    while time.monotonic() - moved < 1.0:
        seen = manifest_digest(b, repo, "latest")
        if seen == second.manifest_digest:
            break
        time.sleep(0.02)
    assert seen == second.manifest_digest, f"B still serves {seen} 1 s after the tag moved through A"
    assert manifest_digest(a, repo, "latest") == second.manifest_digest
    r = httpx.get(f"{b.url}/v2/{repo}/tags/list", timeout=10)
    assert r.json()["tags"] == ["latest"]


# --------------------------------------------------------------------------------------------
# 4b. a prune from the command line (a third process) is seen by both replicas at once
# --------------------------------------------------------------------------------------------


def test_cli_prune_is_seen_by_both_replicas(replicas, client_factory, tmp_path):
    a, b = replicas
    layout = OCILayout(tmp_path / "layout")
    old = layout.add("old", [{"/old.txt": os.urandom(3000)}])
    new = layout.add("new", [{"/new.txt": os.urandom(3000)}])
    clients = client_factory("pruned")
    repo = "replicas/pruned"
    for image in (old, new):
        clients.skopeo("copy", "--dest-tls-verify=false", layout.source(image), f"docker://{host(a)}/{repo}:v")
    for server in (a, b):  # both serve (and cache) the old image by digest
        for _ in range(2):
            assert manifest_digest(server, repo, old.manifest_digest) == old.manifest_digest

    env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    env.update(a.env)
    argv = [OKURA, "prune", "images", "--data-dir", str(tmp_path / "cli"), "--keep-tag-revisions", "1"]
    result = subprocess.run(
        [*argv, "--keep-younger-than", "0s", "--confirm"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"manifest {repo}@{old.manifest_digest}" in result.stdout
    pruned = time.monotonic()
    for server in (a, b):
        while manifest_digest(server, repo, old.manifest_digest) is not None:
            assert time.monotonic() - pruned < 1.0, f"{server.url} still serves the pruned manifest after 1 s"
            time.sleep(0.02)
    manifest = pull_to_dir(clients, f"{host(b)}/{repo}:v", tmp_path / "pulled")
    assert_dir_has_layers(tmp_path / "pulled", [layer["digest"] for layer in manifest["layers"]])


# --------------------------------------------------------------------------------------------
# 5. a replica SIGKILLed mid-push: the client goes to the other replica
# --------------------------------------------------------------------------------------------


def _multipart_uploads(seaweedfs) -> int:
    return len(seaweedfs.client().list_multipart_uploads(Bucket=REPLICAS_BUCKET).get("Uploads", []))


def test_replica_killed_mid_push(replicas, client_factory, seaweedfs, tmp_path):
    a, b = replicas
    layout = OCILayout(tmp_path / "layout")
    big = layout.add("big", [{"/big.bin": os.urandom(50 * MiB)}, {"/small.txt": b"small\n"}])
    repo = "replicas/killed"
    clients = client_factory("kill-pusher")
    before = _multipart_uploads(seaweedfs)

    proc = start_client(
        clients,
        skopeo_argv(clients, "copy", "--dest-tls-verify=false", layout.source(big), f"docker://{host(a)}/{repo}:v1"),
    )
    try:
        deadline = time.monotonic() + 60
        # A multipart upload appears once the first 5 MiB part of the big layer is on its way.
        while _multipart_uploads(seaweedfs) <= before:
            assert proc.poll() is None, "the push finished before the replica could be killed"
            assert time.monotonic() < deadline, "no S3 multipart upload appeared within 60 s"
            time.sleep(0.01)
        a.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, f"skopeo succeeded although replica A was killed mid-push:\n{out}\n{err}"

    # The same client, re-run against the surviving replica.
    digestfile = tmp_path / "digest"
    clients.skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--digestfile",
        str(digestfile),
        layout.source(big),
        f"docker://{host(b)}/{repo}:v1",
    )
    assert digestfile.read_text().strip() == big.manifest_digest

    a.start(timeout=60)  # on a new port
    puller = client_factory("kill-puller")
    for server in (a, b):
        assert manifest_digest(server, repo, "v1") == big.manifest_digest
        dest = tmp_path / f"pulled-{server.port}"
        manifest = pull_to_dir(puller, f"{host(server)}/{repo}:v1", dest)
        assert [layer["digest"] for layer in manifest["layers"]] == big.layer_digests
        assert_dir_has_layers(dest, big.layer_digests)
