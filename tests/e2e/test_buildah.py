"""Two-architecture manifest lists (amd64 + arm64) built with `buildah manifest` and pushed with
`buildah manifest push --all` in v2s2 and OCI formats; `podman pull --arch` fetches each one."""

from __future__ import annotations

import json

import pytest

from tests.support.images import BuiltImage, build_image, random_layers
from tests.support.media_types import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

pytestmark = pytest.mark.e2e

FORMATS = {
    # push --format, build --format, list media type, child media type
    "v2s2": ("docker", DOCKER_LIST, DOCKER_MANIFEST),
    "oci": ("oci", OCI_INDEX, OCI_MANIFEST),
}


@pytest.fixture(scope="module")
def arch_images(clients) -> dict[tuple[str, str], BuiltImage]:
    images = {}
    for list_format, (build_format, _, _) in FORMATS.items():
        for arch in ("amd64", "arm64"):
            layers = random_layers([[60_000], [25_000, 1]], f"{list_format}-{arch}")
            name = f"localhost/e2e/multi-{list_format}-{arch}"
            images[list_format, arch] = build_image(clients, name, layers, fmt=build_format, arch=arch)
    return images


@pytest.mark.parametrize("list_format", list(FORMATS))
def test_manifest_list_push_and_pull_per_arch(registry, clients, puller, arch_images, list_format):
    _, list_type, child_type = FORMATS[list_format]
    list_name = f"localhost/e2e/list-{list_format}"
    clients.buildah("manifest", "create", list_name)
    for arch in ("amd64", "arm64"):
        image = arch_images[list_format, arch]
        clients.buildah("manifest", "add", list_name, f"containers-storage:{image.name}")

    repo = f"multi/{list_format}"
    ref = f"{registry.host}/{repo}:v1"
    digestfile = clients.workdir("digest") / "digest"
    mark = registry.mark()
    clients.buildah(
        "manifest",
        "push",
        "--all",
        "--format",
        list_format,
        "--tls-verify=false",
        "--digestfile",
        str(digestfile),
        list_name,
        f"docker://{ref}",
    )
    list_digest = digestfile.read_text().strip()
    manifest_puts = [e for e in registry.access(mark) if e["method"] == "PUT" and "/manifests/" in e["path"]]
    # children first, by digest, then the list by tag
    assert [e["status"] for e in manifest_puts] == ["201"] * 3
    assert manifest_puts[-1]["path"] == f"/v2/{repo}/manifests/v1"

    served, content_type, index = registry.manifest_json(repo, "v1")
    assert served == list_digest
    assert content_type == list_type
    assert index["mediaType"] == list_type
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]): m for m in index["manifests"]}
    assert set(platforms) == {("linux", "amd64"), ("linux", "arm64")}

    # asked for just the list media type
    with registry.http() as c:
        r = c.get(f"/v2/{repo}/manifests/v1", headers=[("Accept", list_type)])
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == list_digest

    for arch in ("amd64", "arm64"):
        entry = platforms["linux", arch]
        assert entry["mediaType"] == child_type
        child_digest, child_content_type, child = registry.manifest_json(repo, entry["digest"])
        assert child_digest == entry["digest"]
        assert child_content_type == child_type
        for blob in [child["config"], *child["layers"]]:
            assert registry.head_blob(repo, blob["digest"]).status_code == 200

        image = arch_images[list_format, arch]
        image_id = puller.pull(ref, "--arch", arch)
        pulled = puller.image_inspect(image_id)
        assert pulled["Architecture"] == arch
        digests = {d.split("@", 1)[1] for d in pulled["RepoDigests"]}
        assert entry["digest"] in digests, (entry["digest"], pulled["RepoDigests"])
        files = puller.read_image_files(image_id, list(image.files))
        for path, data in image.files.items():
            assert files[path] == data, f"{arch}: {path} differs after the round trip"
        puller.podman("rmi", "--force", image_id)

    tags = json.loads(clients.skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}").stdout)
    assert tags["Tags"] == ["v1"], "children pushed by digest must not show up as tags"

    info = clients.skopeo_inspect(ref, "--raw")
    assert {m["digest"] for m in info["manifests"]} == {m["digest"] for m in index["manifests"]}


def test_skopeo_copy_all_of_a_list(registry, clients, arch_images):
    """skopeo copy --all copies a list and every instance to another repository, digests unchanged."""
    list_name = "localhost/e2e/list-copy"
    clients.buildah("manifest", "create", list_name)
    for arch in ("amd64", "arm64"):
        clients.buildah("manifest", "add", list_name, f"containers-storage:{arch_images['oci', arch].name}")
    src = f"{registry.host}/lists/src:v1"
    clients.buildah("manifest", "push", "--all", "--tls-verify=false", list_name, f"docker://{src}")
    src_digest, list_type, _ = registry.manifest_json("lists/src", "v1")
    assert list_type == OCI_INDEX

    dest = f"{registry.host}/lists/dest:v1"
    clients.skopeo(
        "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{src}", f"docker://{dest}"
    )
    dest_digest, dest_type, dest_index = registry.manifest_json("lists/dest", "v1")
    assert (dest_digest, dest_type) == (src_digest, list_type)
    for entry in dest_index["manifests"]:
        child_digest, _, child = registry.manifest_json("lists/dest", entry["digest"])
        assert child_digest == entry["digest"]
        for blob in [child["config"], *child["layers"]]:
            assert registry.head_blob("lists/dest", blob["digest"]).status_code == 200
