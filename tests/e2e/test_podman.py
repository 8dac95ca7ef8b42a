"""buildah builds, podman/buildah push, podman pulls back: digests and file contents survive;
cross-repository pushes mount instead of uploading; a manifest deleted over HTTP cannot be pulled."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.clients import ClientError
from tests.support.digests import sha256
from tests.support.images import BuiltImage, build_image, random_layers
from tests.support.media_types import OCI_MANIFEST
from tests.support.storages import BlobStore

pytestmark = pytest.mark.e2e

LAYER_SIZES = [[150_000, 3_000], [80_000], [40_000, 10, 0]]


@pytest.fixture(scope="module")
def images(clients) -> dict[str, BuiltImage]:
    """One multi-layer image per format, built once for the module."""
    return {
        "docker": build_image(clients, "localhost/e2e/podman-docker", random_layers(LAYER_SIZES, "pd"), fmt="docker"),
        "oci": build_image(clients, "localhost/e2e/podman-oci", random_layers(LAYER_SIZES, "po"), fmt="oci"),
    }


def check_served_manifest(registry, repo: str, tag: str, digest: str, media_type: str, n_layers: int) -> dict:
    """The registry serves the manifest the client pushed, and every blob it references."""
    with registry.http() as c:
        head = c.head(f"/v2/{repo}/manifests/{tag}", headers=[("Accept", media_type)])
    assert head.status_code == 200, f"HEAD manifest -> {head.status_code}"
    assert head.headers.get("Docker-Content-Digest") == digest
    served_digest, content_type, manifest = registry.manifest_json(repo, tag)
    assert served_digest == digest, "registry digest differs from the one the client pushed"
    assert content_type == media_type
    assert manifest.get("mediaType", media_type) == media_type
    assert len(manifest["layers"]) == n_layers
    for blob in [manifest["config"], *manifest["layers"]]:
        r = registry.head_blob(repo, blob["digest"])
        assert r.status_code == 200, f"HEAD blob {blob['digest']} -> {r.status_code}"
        assert int(r.headers["Content-Length"]) == blob["size"]
    # by digest too
    by_digest, _, _ = registry.manifest_json(repo, digest)
    assert by_digest == digest
    return manifest


@pytest.mark.parametrize(
    ("fmt", "tool", "push_format"),
    [("docker", "buildah", "v2s2"), ("oci", "podman", "oci"), ("docker", "podman", None), ("oci", "buildah", None)],
    ids=["v2s2-buildah", "oci-podman", "v2s2-podman-default", "oci-buildah-default"],
)
def test_push_pull_roundtrip(registry, clients, puller, images, fmt, tool, push_format):
    image = images[fmt]
    repo = f"e2e/{fmt}-{tool}-{push_format or 'default'}"
    ref = f"{registry.host}/{repo}:v1"
    digest = clients.push(tool, image.name, ref, fmt=push_format)
    assert digest.startswith("sha256:")

    manifest = check_served_manifest(registry, repo, "v1", digest, image.manifest_type, len(image.layers))
    assert manifest["config"]["digest"] == "sha256:" + image.image_id.removeprefix("sha256:")

    inspected = clients.skopeo_inspect(ref)
    assert inspected["Digest"] == digest
    assert inspected["Architecture"] == "amd64"
    assert len(inspected["Layers"]) == len(image.layers)
    raw = clients.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}").stdout
    assert sha256(raw.encode()) == digest

    # the blobs are where the registry's storage keeps them (S3: nothing under the data dir)
    blobs = {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
    assert blobs <= registry.stored_blobs()
    if registry.store.is_s3:
        assert not BlobStore("filesystem").blob_digests(registry.data_dir)

    # pull back into empty storage (remove any earlier copy first); with s3-redirect podman
    # follows 307s to SeaweedFS for every blob
    puller.podman("rmi", "--ignore", "--force", ref)
    mark = registry.mark()
    image_id = puller.pull(ref)
    fetched = {e["path"].rsplit("/", 1)[1] for e in registry.check_blob_reads(registry.access(mark))}
    assert blobs <= fetched
    pulled = puller.image_inspect(image_id)
    assert pulled["Digest"] == digest
    assert any(d.endswith("@" + digest) for d in pulled["RepoDigests"]), pulled["RepoDigests"]
    assert pulled["Labels"]["org.example.e2e"] == image.name
    files = puller.read_image_files(image_id, list(image.files))
    for path, data in image.files.items():
        assert files[path] == data, f"{path} differs after the round trip"
    puller.podman("rmi", "--force", image_id)


def test_cross_repository_push_mounts(registry, clients):
    """Pushing the same image to a second repository mounts its layers (POST ?mount= answered 201)."""
    image = build_image(clients, "localhost/e2e/mounted", random_layers([[120_000], [90_000], [60_000]], "mnt"))

    mark = registry.mark()
    digest_one = clients.push("podman", image.name, f"{registry.host}/ns/one:v1")
    first = registry.access(mark)
    _, _, manifest = registry.manifest_json("ns/one", "v1")
    layers = manifest["layers"]
    uploaded_one = sum(
        int(e["bytes_in"]) for e in first if e["method"] == "PATCH" and e["path"].startswith("/v2/ns/one/")
    )
    assert uploaded_one >= sum(layer["size"] for layer in layers), "the first push did not upload the layers"

    mark = registry.mark()
    digest_two = clients.push("podman", image.name, f"{registry.host}/ns/two:v1")
    second = [e for e in registry.access(mark) if e["path"].startswith("/v2/ns/two/")]
    assert digest_two == digest_one

    for layer in layers:
        r = registry.head_blob("ns/two", layer["digest"])
        assert r.status_code == 200, f"layer {layer['digest']} missing from ns/two: {r.status_code}"
        assert int(r.headers["Content-Length"]) == layer["size"]
    mounts = [e for e in second if e["method"] == "POST" and e["path"] == "/v2/ns/two/blobs/uploads/"]
    mounted = [e for e in mounts if e["status"] == "201"]
    patched = [e for e in second if e["method"] == "PATCH"]
    summary = "\n".join(f"{e['method']} {e['path']} {e['status']} in={e['bytes_in']}" for e in second)
    assert len(mounted) == len(layers), f"expected {len(layers)} mounts answered 201:\n{summary}"
    smallest = min(layer["size"] for layer in layers)
    assert all(int(e["bytes_in"]) < smallest for e in patched), f"a layer was uploaded again:\n{summary}"
    assert all(e["status"] in ("200", "201", "202", "404") for e in second), summary

    # the mounted blobs are real: same bytes from both repositories
    with registry.http() as c:
        for layer in layers:
            a = c.get(f"/v2/ns/one/blobs/{layer['digest']}")
            b = c.get(f"/v2/ns/two/blobs/{layer['digest']}")
            assert a.status_code == b.status_code == 200
            assert sha256(b.content) == layer["digest"] and a.content == b.content


def test_delete_manifest_over_http_then_pull_fails(registry, clients, puller, images):
    image = images["oci"]
    repo = "e2e/deleted"
    ref = f"{registry.host}/{repo}:v1"
    digest = clients.push("podman", image.name, ref)
    image_id = puller.pull(ref)  # works before the delete
    puller.podman("rmi", "--force", image_id)

    with registry.http() as c:
        r = c.delete(f"/v2/{repo}/manifests/{digest}")
        assert r.status_code == 202, f"DELETE manifest -> {r.status_code} {r.text}"
        for reference in (digest, "v1"):
            r = c.get(f"/v2/{repo}/manifests/{reference}", headers=[("Accept", OCI_MANIFEST)])
            assert r.status_code == 404, f"GET manifest {reference} after DELETE -> {r.status_code}"
            assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"

    for pull_ref in (ref, f"{registry.host}/{repo}@{digest}"):
        with pytest.raises(ClientError) as excinfo:
            puller.pull(pull_ref)
        stderr = excinfo.value.result.stderr.lower()
        assert "manifest unknown" in stderr or "not found" in stderr or "404" in stderr, stderr
    images_left = puller.podman("images", "-q", "--filter", f"reference={registry.host}/{repo}").stdout.strip()
    assert images_left == ""


def test_tag_overwrite_and_pull_by_digest(registry, clients, puller, images):
    """Moving a tag to another image: pulls by tag follow it, pulls by digest keep the old one."""
    ref = f"{registry.host}/e2e/moving:latest"
    digests = {}
    for fmt in ("docker", "oci"):
        digests[fmt] = clients.push("podman", images[fmt].name, ref)
        assert registry.manifest_json("e2e/moving", "latest")[0] == digests[fmt]
        image_id = puller.pull(ref)
        assert puller.image_inspect(image_id)["Digest"] == digests[fmt]
        assert puller.image_inspect(image_id)["Labels"]["org.example.e2e"] == images[fmt].name
        puller.podman("rmi", "--force", image_id)
    assert digests["docker"] != digests["oci"]

    old = f"{registry.host}/e2e/moving@{digests['docker']}"
    image_id = puller.pull(old)
    pulled = puller.image_inspect(image_id)
    assert pulled["Digest"] == digests["docker"]
    files = puller.read_image_files(image_id, list(images["docker"].files))
    assert files == images["docker"].files
    puller.podman("rmi", "--force", image_id)


def test_push_again_after_delete(registry, clients, puller, images):
    """A manifest deleted by digest can be pushed again and pulled."""
    image = images["docker"]
    ref = f"{registry.host}/e2e/phoenix:v1"
    digest = clients.push("buildah", image.name, ref)
    with registry.http() as c:
        assert c.delete(f"/v2/e2e/phoenix/manifests/{digest}").status_code == 202
        assert c.get("/v2/e2e/phoenix/manifests/v1").status_code == 404
    assert clients.push("buildah", image.name, ref) == digest
    assert registry.manifest_json("e2e/phoenix", "v1")[0] == digest
    image_id = puller.pull(ref)
    assert puller.read_image_files(image_id, list(image.files)) == image.files
    puller.podman("rmi", "--force", image_id)


def test_zstd_compressed_layers(registry, clients, puller):
    """podman push --compression-format zstd: zstd layers are stored and served as they are."""
    # a fresh image: for layers the registry already has as gzip, c/image reuses those instead
    image = build_image(clients, "localhost/e2e/zstd", random_layers([[90_000], [20_000]], "zstd"), fmt="oci")
    ref = f"{registry.host}/e2e/zstd:v1"
    digestfile = clients.workdir("digest") / "digest"
    clients.podman(
        "push", "--tls-verify=false", "--format", "oci", "--compression-format", "zstd", "--digestfile",
        str(digestfile), image.name, f"docker://{ref}",
    )  # fmt: skip
    digest = digestfile.read_text().strip()
    served, _, manifest = registry.manifest_json("e2e/zstd", "v1")
    assert served == digest
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    image_id = puller.pull(ref)
    assert puller.image_inspect(image_id)["Digest"] == digest
    assert puller.read_image_files(image_id, list(image.files)) == image.files
    puller.podman("rmi", "--force", image_id)


def test_concurrent_pushes_of_shared_layers(registry, clients, puller):
    """Several pushes at once, sharing layers, to one and to several repositories."""
    base = build_image(clients, "localhost/e2e/concurrent", random_layers([[100_000], [50_000]], "conc"), fmt="oci")
    targets = [f"{registry.host}/conc/same:t{i}" for i in range(3)] + [
        f"{registry.host}/conc/repo{i}:v1" for i in range(3)
    ]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        results = list(pool.map(lambda ref: clients.push("podman", base.name, ref), targets))
    assert len(set(results)) == 1, results
    digest = results[0]
    for ref in targets:
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        assert registry.manifest_json(repo, tag)[0] == digest
    for ref in (targets[0], targets[-1]):
        image_id = puller.pull(ref)
        assert puller.read_image_files(image_id, list(base.files)) == base.files
        puller.podman("rmi", "--force", image_id)


def test_podman_search_uses_catalog(registry, clients, images):
    clients.push("podman", images["oci"].name, f"{registry.host}/searchable/alpha:v1")
    clients.push("podman", images["oci"].name, f"{registry.host}/searchable/beta:v2")
    found = json.loads(
        clients.podman("search", "--tls-verify=false", "--format", "json", f"{registry.host}/searchable").stdout
    )
    names = {entry["Name"] for entry in found}
    assert {f"{registry.host}/searchable/alpha", f"{registry.host}/searchable/beta"} <= names
    tags = json.loads(
        clients.podman(
            "search", "--list-tags", "--tls-verify=false", "--format", "json", f"{registry.host}/searchable/beta"
        ).stdout
    )
    assert tags[0]["Tags"] == ["v2"]
