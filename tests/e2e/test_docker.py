"""docker (a private dockerd 20.10, legacy builder) builds FROM scratch, pushes, pulls back;
docker mounts layers across repositories and pulls what podman pushed."""

from __future__ import annotations

import json

import pytest

from tests.support.docker import pushed_digest
from tests.support.images import build_image, merged_files, random_layers, write_build_context
from tests.support.media_types import DOCKER_LIST, DOCKER_MANIFEST

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def docker_image(dockerd, registry) -> dict:
    """An image built by docker's legacy builder: one layer per COPY."""
    layers = random_layers([[120_000, 7], [64_000], [30_000, 0]], "dk")
    ctx = dockerd.root / "ctx"
    write_build_context(ctx, layers, "Dockerfile")
    ref = f"{registry.host}/dk/app:v1"
    dockerd.run("build", "-t", ref, str(ctx))
    return {"ref": ref, "files": merged_files(layers), "layers": len(layers)}


def test_docker_build_push_rmi_pull(registry, dockerd, docker_image):
    ref = docker_image["ref"]
    digest = pushed_digest(dockerd.run("push", ref).stdout, "v1")

    served, content_type, manifest = registry.manifest_json("dk/app", "v1")
    assert served == digest
    assert content_type == DOCKER_MANIFEST
    assert len(manifest["layers"]) == docker_image["layers"]
    with registry.http() as c:
        # docker pulls with HEAD first and needs Docker-Content-Digest
        r = c.head("/v2/dk/app/manifests/v1", headers=[("Accept", DOCKER_MANIFEST), ("Accept", "application/json")])
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest

    dockerd.run("rmi", ref)
    assert dockerd.run("images", "-q").stdout.strip() == ""
    mark = registry.mark()
    out = dockerd.run("pull", ref).stdout
    assert f"Digest: {digest}" in out
    fetched = {e["path"].rsplit("/", 1)[1] for e in registry.check_blob_reads(registry.access(mark))}
    assert {layer["digest"] for layer in manifest["layers"]} <= fetched  # dockerd followed any 307 to S3
    repo_digests = dockerd.run("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    assert f"dk/app@{digest}" in repo_digests

    files = dockerd.export(ref)
    for path, data in docker_image["files"].items():
        assert files.get(path) == data, f"{path} differs after docker push/pull"


def test_docker_cross_repository_push_mounts(registry, dockerd, docker_image):
    ref = docker_image["ref"]
    dockerd.run("push", ref)  # idempotent; makes this test independent of the order
    other = f"{registry.host}/dk/other:v1"
    dockerd.run("tag", ref, other)
    mark = registry.mark()
    digest = pushed_digest(dockerd.run("push", other).stdout, "v1")
    entries = [e for e in registry.access(mark) if e["path"].startswith("/v2/dk/other/")]
    summary = "\n".join(f"{e['method']} {e['path']} {e['status']} in={e['bytes_in']}" for e in entries)

    served, _, manifest = registry.manifest_json("dk/other", "v1")
    assert served == digest
    for layer in manifest["layers"]:
        r = registry.head_blob("dk/other", layer["digest"])
        assert r.status_code == 200, f"{layer['digest']} not in dk/other"
    mounted = [e for e in entries if e["method"] == "POST" and e["status"] == "201"]
    assert len(mounted) == len(manifest["layers"]), f"docker did not mount every layer:\n{summary}"
    smallest = min(layer["size"] for layer in manifest["layers"])
    patched = [e for e in entries if e["method"] == "PATCH"]
    assert all(int(e["bytes_in"]) < smallest for e in patched), f"docker uploaded a layer again:\n{summary}"


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_docker_pulls_what_podman_pushed(registry, dockerd, clients, fmt):
    layers = random_layers([[50_000], [20_000]], f"interop-{fmt}")
    image = build_image(clients, f"localhost/e2e/interop-{fmt}", layers, fmt=fmt)
    ref = f"{registry.host}/interop/{fmt}:v1"
    digest = clients.push("podman", image.name, ref)
    out = dockerd.run("pull", ref).stdout
    assert f"Digest: {digest}" in out
    files = dockerd.export(ref)
    for path, data in image.files.items():
        assert files.get(path) == data, f"{path} differs after podman push / docker pull"
    dockerd.run("rmi", ref)


@pytest.mark.parametrize("list_format", ["v2s2", "oci"])
def test_docker_pulls_manifest_list_per_platform(registry, dockerd, clients, list_format):
    build_format = "docker" if list_format == "v2s2" else "oci"
    list_name = f"localhost/e2e/docker-list-{list_format}"
    clients.buildah("manifest", "create", list_name)
    images = {}
    for arch in ("amd64", "arm64"):
        layers = random_layers([[30_000], [10_000]], f"dl-{list_format}-{arch}")
        images[arch] = build_image(clients, f"{list_name}-{arch}", layers, fmt=build_format, arch=arch)
        clients.buildah("manifest", "add", list_name, f"containers-storage:{images[arch].name}")
    ref = f"{registry.host}/dk/list-{list_format}:v1"
    clients.buildah(
        "manifest", "push", "--all", "--format", list_format, "--tls-verify=false", list_name, f"docker://{ref}"
    )
    list_digest, _, index = registry.manifest_json(f"dk/list-{list_format}", "v1")
    children = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}

    assert set(children) == {"amd64", "arm64"}

    for arch in ("amd64", "arm64"):
        mark = registry.mark()
        out = dockerd.run("pull", "--platform", f"linux/{arch}", ref).stdout
        assert f"Digest: {list_digest}" in out
        assert dockerd.run("image", "inspect", "--format", "{{.Architecture}}", ref).stdout.strip() == arch
        files = dockerd.export(ref)
        for path, data in images[arch].files.items():
            assert files.get(path) == data, f"{arch}: {path} differs"
        dockerd.run("rmi", ref)
        fetched = {e["path"].rsplit("/", 1)[1] for e in registry.access(mark) if e["status"] == "200"}
        assert children[arch] in fetched and children[{"amd64": "arm64", "arm64": "amd64"}[arch]] not in fetched


def test_docker_cli_manifest_create_push_inspect(registry, dockerd, clients):
    """`docker manifest` (the CLI talks to the registry itself): assemble a list from two images
    already in the registry, push it, inspect it."""
    children = {}
    for arch in ("amd64", "arm64"):
        image = build_image(clients, f"localhost/e2e/cli-{arch}", random_layers([[20_000]], f"cli-{arch}"), arch=arch)
        ref = f"{registry.host}/dk/cli-src:{arch}"
        children[arch] = clients.push("podman", image.name, ref, fmt="v2s2")
    target = f"{registry.host}/dk/cli-list:v1"
    sources = [f"{registry.host}/dk/cli-src@{children[arch]}" for arch in ("amd64", "arm64")]
    dockerd.run("manifest", "create", "--insecure", target, *sources)
    out = dockerd.run("manifest", "push", "--insecure", target).stdout
    digest = out.strip().splitlines()[-1].strip()
    assert digest.startswith("sha256:"), out

    served, content_type, index = registry.manifest_json("dk/cli-list", "v1")
    assert served == digest
    assert content_type == DOCKER_LIST
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == children
    for child in children.values():
        assert registry.manifest_json("dk/cli-list", child)[0] == child  # pushed (or mounted) into the target repo

    inspected = json.loads(dockerd.run("manifest", "inspect", "--insecure", target).stdout)
    assert {m["digest"] for m in inspected["manifests"]} == set(children.values())
