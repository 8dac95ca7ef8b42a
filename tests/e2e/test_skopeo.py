"""skopeo copy between repositories and to/from oci: and dir: layouts; inspect, list-tags, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.clients import ClientError
from tests.support.digests import sha256, sha256_file
from tests.support.images import build_image, random_layers
from tests.support.media_types import DOCKER_MANIFEST, OCI_MANIFEST

pytestmark = pytest.mark.e2e

TLS = ["--src-tls-verify=false", "--dest-tls-verify=false"]


@pytest.fixture(scope="module")
def sources(registry, clients) -> dict[str, tuple[str, str]]:
    """Two images pushed with podman: format -> (repository reference, manifest digest)."""
    out = {}
    for fmt in ("docker", "oci"):
        image = build_image(
            clients, f"localhost/e2e/skopeo-{fmt}", random_layers([[70_000], [30_000, 5]], f"s{fmt}"), fmt
        )
        ref = f"{registry.host}/src/{fmt}:v1"
        out[fmt] = (ref, clients.push("podman", image.name, ref))
    return out


def copy(clients, src: str, dest: str, *extra: str) -> str:
    """skopeo copy; returns the digest written by --digestfile."""
    digestfile = clients.workdir("digest") / "digest"
    clients.skopeo("copy", *TLS, "--digestfile", str(digestfile), *extra, src, dest)
    return digestfile.read_text().strip()


def test_copy_between_repositories(registry, clients, sources):
    for fmt, (src, digest) in sources.items():
        dest = f"{registry.host}/copies/{fmt}:copied"
        assert copy(clients, f"docker://{src}", f"docker://{dest}") == digest
        served, content_type, manifest = registry.manifest_json(f"copies/{fmt}", "copied")
        assert served == digest
        assert content_type == (DOCKER_MANIFEST if fmt == "docker" else OCI_MANIFEST)
        for blob in [manifest["config"], *manifest["layers"]]:
            assert registry.head_blob(f"copies/{fmt}", blob["digest"]).status_code == 200
        assert clients.skopeo_inspect(dest)["Digest"] == digest


def test_copy_through_oci_layout(registry, clients, sources, tmp_path: Path):
    src, digest = sources["oci"]
    layout = tmp_path / "layout"
    copy(clients, f"docker://{src}", f"oci:{layout}:img")
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    manifest_path = layout / "blobs" / "sha256" / digest.split(":")[1]
    manifest = json.loads(manifest_path.read_bytes())
    for blob in [manifest["config"], *manifest["layers"]]:
        assert sha256_file(layout / "blobs" / "sha256" / blob["digest"].split(":")[1]) == blob["digest"]

    dest = f"{registry.host}/from-oci/img:v2"
    assert copy(clients, f"oci:{layout}:img", f"docker://{dest}") == digest
    served, content_type, _ = registry.manifest_json("from-oci/img", "v2")
    assert (served, content_type) == (digest, OCI_MANIFEST)


def test_copy_through_dir_layout(registry, clients, sources, tmp_path: Path):
    src, digest = sources["docker"]
    out = tmp_path / "dir"
    mark = registry.mark()
    copy(clients, f"docker://{src}", f"dir:{out}")
    registry.check_blob_reads(registry.access(mark))  # 307 to S3 with s3-redirect, else the bytes
    manifest_bytes = (out / "manifest.json").read_bytes()
    assert sha256(manifest_bytes) == digest
    manifest = json.loads(manifest_bytes)
    for blob in [manifest["config"], *manifest["layers"]]:
        path = out / blob["digest"].split(":")[1]
        assert path.stat().st_size == blob["size"]
        assert sha256_file(path) == blob["digest"]

    dest = f"{registry.host}/from-dir/img:v1"
    assert copy(clients, f"dir:{out}", f"docker://{dest}") == digest
    served, content_type, _ = registry.manifest_json("from-dir/img", "v1")
    assert (served, content_type) == (digest, DOCKER_MANIFEST)


def test_inspect_and_list_tags(registry, clients, sources):
    src, digest = sources["docker"]
    tags = ["b", "a", "1.0", "latest", "z-9"]
    for tag in tags:
        copy(clients, f"docker://{src}", f"docker://{registry.host}/tagged/img:{tag}")
    listed = json.loads(
        clients.skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/tagged/img").stdout
    )
    assert sorted(listed["Tags"]) == sorted(tags)

    info = clients.skopeo_inspect(f"{registry.host}/tagged/img:latest")
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) == 2
    assert sorted(info["RepoTags"]) == sorted(tags)
    assert info["Labels"]["org.example.e2e"] == "localhost/e2e/skopeo-docker"

    raw = clients.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/tagged/img:a").stdout
    assert sha256(raw.encode()) == digest
    config = json.loads(
        clients.skopeo("inspect", "--tls-verify=false", "--config", f"docker://{registry.host}/tagged/img:a").stdout
    )
    assert config["architecture"] == "amd64"
    assert len(config["rootfs"]["diff_ids"]) == 2


def test_delete(registry, clients, sources):
    src, digest = sources["docker"]
    other_src, other_digest = sources["oci"]
    repo = "deletable/img"
    for tag in ("v1", "v1-alias"):
        copy(clients, f"docker://{src}", f"docker://{registry.host}/{repo}:{tag}")
    copy(clients, f"docker://{other_src}", f"docker://{registry.host}/{repo}:keep")

    mark = registry.mark()
    clients.skopeo("delete", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    deletes = [e for e in registry.access(mark) if e["method"] == "DELETE"]
    assert [(e["path"], e["status"]) for e in deletes] == [(f"/v2/{repo}/manifests/{digest}", "202")]

    with registry.http() as c:
        # the manifest is gone, and with it every tag that pointed at it
        for ref in ("v1", digest, "v1-alias"):
            r = c.get(f"/v2/{repo}/manifests/{ref}", headers=[("Accept", DOCKER_MANIFEST)])
            assert r.status_code == 404, f"GET /v2/{repo}/manifests/{ref} after delete -> {r.status_code}"
            r = c.head(f"/v2/{repo}/manifests/{ref}", headers=[("Accept", DOCKER_MANIFEST)])
            assert r.status_code == 404, f"HEAD /v2/{repo}/manifests/{ref} after delete -> {r.status_code}"
        tags = c.get(f"/v2/{repo}/tags/list").json()["tags"]
        assert tags == ["keep"]
    with pytest.raises(ClientError):
        clients.skopeo_inspect(f"{registry.host}/{repo}:v1")

    listed = json.loads(clients.skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}").stdout)
    assert listed["Tags"] == ["keep"]
    assert clients.skopeo_inspect(f"{registry.host}/{repo}:keep")["Digest"] == other_digest
    # the same manifest in another repository is not affected
    assert clients.skopeo_inspect(src)["Digest"] == digest
