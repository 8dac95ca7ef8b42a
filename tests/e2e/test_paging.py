"""Small page maxima (tags 3, catalog 2). The maxima clamp `?n=` and a `Link: <...>; rel="next"`
continues; c/image clients send no `n` (skopeo list-tags, podman search), and must still see every
tag and repository, whether the server answers them in one page or makes them follow links."""

from __future__ import annotations

import json

import pytest

from tests.support.images import build_image, random_layers
from tests.support.registries import start_registry

pytestmark = pytest.mark.e2e

TAGS = [f"t{i:02d}" for i in range(8)]
REPOS = [f"paged/r{i}" for i in range(5)]


@pytest.fixture(scope="module")
def registry(tmp_path_factory, blob_store):
    env = {"OKURA_PAGINATION_TAGS_MAX_ENTRIES": "3", "OKURA_PAGINATION_CATALOG_MAX_ENTRIES": "2"}
    yield from start_registry(tmp_path_factory.mktemp("okura-paging"), env=env, store=blob_store)


@pytest.fixture(scope="module")
def populated(registry, clients):
    image = build_image(clients, "localhost/e2e/paged", random_layers([[4_000]], "paged"), fmt="oci")
    first = f"{registry.host}/{REPOS[0]}:{TAGS[0]}"
    clients.push("podman", image.name, first)
    tls = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    for tag in TAGS[1:]:
        clients.skopeo("copy", *tls, f"docker://{first}", f"docker://{registry.host}/{REPOS[0]}:{tag}")
    for repo in REPOS[1:]:
        clients.skopeo("copy", *tls, f"docker://{first}", f"docker://{registry.host}/{repo}:v1")


def test_server_pages_and_links_resolve(registry, populated):
    """?n above the maximum is clamped and a relative Link continues, to the last page."""
    seen: list[str] = []
    url = f"/v2/{REPOS[0]}/tags/list?n=100"
    pages = 0
    with registry.http() as c:
        while url:
            r = c.get(url)
            assert r.status_code == 200, (url, r.status_code)
            tags = r.json()["tags"]
            assert len(tags) <= 3
            seen += tags
            pages += 1
            link = r.headers.get("Link")
            url = link.split(";")[0].strip().strip("<>") if link else ""
            assert not link or 'rel="next"' in link
            assert pages < 10
    assert seen == TAGS and pages == 3


def test_skopeo_list_tags_sees_every_tag(registry, clients, populated):
    out = clients.skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{REPOS[0]}").stdout
    assert sorted(json.loads(out)["Tags"]) == TAGS


def test_podman_search_sees_every_repository_and_tag(registry, clients, populated):
    found = json.loads(clients.podman("search", "--tls-verify=false", "--format", "json", f"{registry.host}/").stdout)
    assert {entry["Name"] for entry in found} >= {f"{registry.host}/{repo}" for repo in REPOS}
    out = clients.podman(
        "search",
        "--list-tags",
        "--limit",
        "100",
        "--tls-verify=false",
        "--format",
        "json",
        f"{registry.host}/{REPOS[0]}",
    ).stdout
    assert sorted(json.loads(out)[0]["Tags"]) == TAGS
