"""GET /v2/<name>/tags/list and GET /v2/_catalog: order, `n` and `last`, the Link header."""

from __future__ import annotations

import random
import re

from tests.support.http import assert_error, push_blob, push_image, put_manifest

REPO = "listings/repo"
LINK_RE = re.compile(r'^<([^>]+)>;\s*rel="next"$')


async def tag_image(client, tags: list[str], repo: str = REPO) -> str:
    digest, body = await push_image(client, repo)
    for tag in tags:
        r = await put_manifest(client, repo, tag, body)
        assert r.status_code == 201, r.text
    return digest


def next_link(response) -> str | None:
    value = response.headers.get("Link")
    if value is None:
        return None
    m = LINK_RE.match(value.strip())
    assert m, value
    return m.group(1)


async def walk(client, first_url: str, key: str, params: dict | None = None) -> list[list[str]]:
    pages = []
    r = await client.get(first_url, params=params)
    while True:
        assert r.status_code == 200, r.text
        pages.append(r.json()[key])
        url = next_link(r)
        if url is None:
            return pages
        assert url.startswith("/v2/"), url
        r = await client.get(url)


# -- tags -----------------------------------------------------------------------------------------


async def test_tags_are_listed_in_lexical_order(client):
    tags = ["v10", "v2", "latest", "1.0", "v1", "a-b", "a.b", "0", "zz", "v1.10", "v1.9"]
    shuffled = tags[:]
    random.shuffle(shuffled)
    await tag_image(client, shuffled)
    r = await client.get(f"/v2/{REPO}/tags/list")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"name": REPO, "tags": sorted(tags)}
    assert "Link" not in r.headers


async def test_tags_with_mixed_case_are_in_case_insensitive_order(client):
    """distribution-spec v1.1 "Listing Tags": "the tags MUST be in lexical order (i.e. case-insensitive
    alphanumeric order)"."""
    await tag_image(client, ["Gamma", "alpha", "delta", "Beta"])
    r = await client.get(f"/v2/{REPO}/tags/list")
    assert r.json()["tags"] == ["alpha", "Beta", "delta", "Gamma"]


async def test_tags_paginated_with_n_and_link(client):
    tags = [f"t{i:02d}" for i in range(12)]
    await tag_image(client, tags)
    pages = await walk(client, f"/v2/{REPO}/tags/list", "tags", {"n": 5})
    assert pages == [tags[0:5], tags[5:10], tags[10:12]]


async def test_tags_page_link_format(client):
    await tag_image(client, ["a", "b", "c"])
    r = await client.get(f"/v2/{REPO}/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"]
    url = next_link(r)
    assert url is not None
    assert url.startswith(f"/v2/{REPO}/tags/list?")
    assert "last=b" in url
    assert "n=2" in url


async def test_tags_link_only_when_more_remain(client):
    await tag_image(client, ["a", "b", "c"])
    for n, expected_link in ((3, False), (10, False), (2, True), (1, True)):
        r = await client.get(f"/v2/{REPO}/tags/list", params={"n": n})
        assert r.json()["tags"] == ["a", "b", "c"][:n]
        assert ("Link" in r.headers) is expected_link, n


async def test_tags_last_without_n(client):
    await tag_image(client, ["a", "b", "c", "d"])
    r = await client.get(f"/v2/{REPO}/tags/list", params={"last": "b"})
    assert r.json()["tags"] == ["c", "d"]
    r = await client.get(f"/v2/{REPO}/tags/list", params={"last": "bb", "n": 1})  # not a tag: starts after it
    assert r.json()["tags"] == ["c"]
    r = await client.get(f"/v2/{REPO}/tags/list", params={"last": "d"})
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


async def test_tags_n_zero_is_empty_without_link(client):
    await tag_image(client, ["a", "b"])
    r = await client.get(f"/v2/{REPO}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"name": REPO, "tags": []}
    assert "Link" not in r.headers


async def test_tags_invalid_n_is_400(client):
    await tag_image(client, ["a"])
    for n in ("abc", "-1", "1.5", "0x2", " "):
        r = await client.get(f"/v2/{REPO}/tags/list", params={"n": n})
        assert_error(r, 400, "PAGINATION_NUMBER_INVALID")


async def test_tags_of_unknown_repository_is_404(client):
    assert_error(await client.get("/v2/no/such/repo/tags/list"), 404, "NAME_UNKNOWN")


async def test_tags_of_repository_without_tags_is_empty(client):
    await push_blob(client, REPO, b"only a blob")
    r = await client.get(f"/v2/{REPO}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": REPO, "tags": []}
    await push_image(client, REPO)  # by digest: still no tags
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == []


async def test_tags_are_per_repository(client):
    await tag_image(client, ["one"], repo="listings/a")
    await tag_image(client, ["two"], repo="listings/b")
    assert (await client.get("/v2/listings/a/tags/list")).json()["tags"] == ["one"]
    assert (await client.get("/v2/listings/b/tags/list")).json()["tags"] == ["two"]


# -- catalog --------------------------------------------------------------------------------------


async def test_catalog_lists_repositories_in_lexical_order(client):
    names = ["c", "a", "b/x", "a/b", "a-b", "a.b", "b", "a/b/c"]
    for name in names:
        await push_blob(client, name, name.encode())
    r = await client.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"repositories": sorted(names)}
    assert "Link" not in r.headers


async def test_catalog_paginated_with_n_and_link(client):
    names = [f"repo{i:02d}" for i in range(7)]
    for name in reversed(names):
        await push_blob(client, name, name.encode())
    pages = await walk(client, "/v2/_catalog", "repositories", {"n": 3})
    assert pages == [names[0:3], names[3:6], names[6:7]]
    r = await client.get("/v2/_catalog", params={"n": 3, "last": "repo02"})
    assert r.json()["repositories"] == names[3:6]
    r = await client.get("/v2/_catalog", params={"last": "repo05"})
    assert r.json()["repositories"] == ["repo06"]


async def test_catalog_n_zero_is_empty_without_link(client):
    await push_blob(client, REPO, b"x")
    r = await client.get("/v2/_catalog", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers


async def test_catalog_invalid_n_is_400(client):
    for n in ("abc", "-1"):
        assert_error(await client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


async def test_catalog_of_empty_registry(client):
    r = await client.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.json() == {"repositories": []}


async def test_tags_mixed_case_pagination_is_consistent(client):
    tags = ["b", "A", "a", "B", "c", "C10", "c9", "Zeta", "alpha", "_x", "0"]
    await tag_image(client, tags)
    full = (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"]
    assert sorted(full) == sorted(tags)
    lowered = [t.lower() for t in full]
    assert lowered == sorted(lowered)  # case-insensitive order; ties in any order
    for n in (1, 2, 3, 5):
        pages = await walk(client, f"/v2/{REPO}/tags/list", "tags", {"n": n})
        assert [t for page in pages for t in page] == full, n
        assert all(len(page) == n for page in pages[:-1])


async def test_tag_list_follows_changes(client):
    """Listing, then changing tags, then listing again shows the change (no stale list)."""
    digest, body = await push_image(client, REPO, "v1")
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v1"]
    assert (await put_manifest(client, REPO, "v2", body)).status_code == 201
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v1", "v2"]
    r = await client.get(f"/v2/{REPO}/tags/list", params={"n": 1})
    assert r.json()["tags"] == ["v1"]
    assert next_link(r) is not None
    assert (await client.delete(f"/v2/{REPO}/manifests/v1")).status_code == 202
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v2"]
    r = await client.get(f"/v2/{REPO}/tags/list", params={"n": 1})
    assert r.json()["tags"] == ["v2"]
    assert next_link(r) is None
    other, _ = await push_image(client, REPO, "v3")
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v2", "v3"]
    assert (await client.delete(f"/v2/{REPO}/manifests/{digest}")).status_code == 202
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v3"]
    assert (await put_manifest(client, REPO, "v3", body)).status_code == 201  # moving a tag keeps it listed once
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v3"]
    assert (await client.delete(f"/v2/{REPO}/manifests/{other}")).status_code == 202
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v3"]


async def test_n_zero_on_unknown_repository_is_404(client):
    assert_error(await client.get("/v2/no/such/repo/tags/list", params={"n": 0}), 404, "NAME_UNKNOWN")


async def test_catalog_follows_new_repositories(client):
    await push_blob(client, "b", b"b")
    assert (await client.get("/v2/_catalog")).json()["repositories"] == ["b"]
    await push_blob(client, "a", b"a")
    assert (await client.get("/v2/_catalog")).json()["repositories"] == ["a", "b"]
