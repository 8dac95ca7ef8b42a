"""Image stream tags, image stream images and images through the Kubernetes-style API:
istag get (image embedded) and list, Tables, create pointing at an image (STREAM@DIGEST) or at
another tag, update moving the tag (history newest first), resourceVersion preconditions,
delete (the registry tag goes, the image stays), isimage NAME@DIGEST only for images the
stream holds, images list and get, and DELETE of an image refused while anything still
references it."""

from __future__ import annotations

import json

from tests.support.http import assert_error, assert_status, push_image, put_manifest
from tests.support.kube import (
    API,
    RFC3339,
    TABLE,
    create_stream,
    get_ok,
    history,
    isimage,
    istag_body,
    istags,
    names,
    rv,
    streams,
    tag_ref,
)
from tests.support.media_types import OCI_INDEX

IMAGE_FIELDS = {
    "kind",
    "apiVersion",
    "metadata",
    "dockerImageReference",
    "dockerImageManifestMediaType",
    "dockerImageMetadataVersion",
    "dockerImageMetadata",
    "dockerImageLayers",
}


async def current(client, repo: str, tag: str) -> str | None:
    r = await client.head(f"/v2/{repo}/manifests/{tag}")
    return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None


# -- get and list ----------------------------------------------------------------------------


async def test_get_a_pushed_tag_embeds_its_image(client):
    digest, body = await push_image(client, "team/app", "v1", layers=2)
    stream = await get_ok(client, streams("team", "app"))

    istag = await get_ok(client, istags("team", "app:v1"))
    assert (istag["kind"], istag["apiVersion"]) == ("ImageStreamTag", "image.openshift.io/v1")
    meta = istag["metadata"]
    assert (meta["name"], meta["namespace"]) == ("app:v1", "team")
    # As OpenShift renders it: the stream's uid and resourceVersion, the tag's time.
    assert meta["uid"] == stream["metadata"]["uid"]
    assert meta["resourceVersion"] == stream["metadata"]["resourceVersion"]
    assert meta["creationTimestamp"] == stream["status"]["tags"][0]["items"][0]["created"]
    assert istag["tag"] is None  # pushed, not a spec tag
    assert istag["generation"] == 1
    assert istag["lookupPolicy"] == {"local": False}

    image = istag["image"]
    assert set(image) == IMAGE_FIELDS
    assert image["metadata"]["name"] == digest
    assert image["dockerImageReference"] == f"registry/team/app@{digest}"
    layers = json.loads(body)["layers"]
    assert [la["name"] for la in image["dockerImageLayers"]] == [la["digest"] for la in layers]
    assert image["dockerImageMetadata"]["Id"] == json.loads(body)["config"]["digest"]
    assert image == await get_ok(client, f"{API}/images/{digest}")


async def test_list_tags_pushed_and_spec_only_across_namespaces(client):
    await push_image(client, "team/app", "v2")
    await push_image(client, "team/app", "v1")
    await create_stream(
        client, "team", "ext", labels={"src": "quay"}, tags=[tag_ref("1", "DockerImage", "quay.io/a/b:1")]
    )
    await push_image(client, "other/zed", "latest")

    listing = await get_ok(client, istags("team"))
    assert (listing["kind"], listing["apiVersion"]) == ("ImageStreamTagList", "image.openshift.io/v1")
    assert names(listing) == ["app:v1", "app:v2", "ext:1"]
    assert rv(listing) >= max(rv(i) for i in listing["items"])
    spec_only = listing["items"][2]
    assert spec_only["tag"]["from"] == {"kind": "DockerImage", "name": "quay.io/a/b:1"}
    assert "image" not in spec_only
    # A spec tag that points nowhere yet is still an ImageStreamTag one can get.
    assert (await get_ok(client, istags("team", "ext:1")))["tag"]["name"] == "1"

    everything = await get_ok(client, f"{API}/imagestreamtags")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everything["items"]] == [
        ("other", "zed:latest"),
        ("team", "app:v1"),
        ("team", "app:v2"),
        ("team", "ext:1"),
    ]
    assert names(await get_ok(client, istags("team"), params={"fieldSelector": "metadata.name=app:v2"})) == ["app:v2"]
    assert names(await get_ok(client, istags("team"), params={"labelSelector": "src=quay"})) == ["ext:1"]
    page = await get_ok(client, f"{API}/imagestreamtags", params={"limit": "3"})
    rest = await get_ok(
        client, f"{API}/imagestreamtags", params={"limit": "3", "continue": page["metadata"]["continue"]}
    )
    assert names(page) + names(rest) == names(everything)


async def test_tag_tables_have_the_columns_oc_prints(client):
    digest, _ = await push_image(client, "team/app", "v1")
    table = await get_ok(client, istags("team"), headers={"Accept": TABLE})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Image Reference", "Updated"]
    [row] = table["rows"]
    name, reference, updated = row["cells"]
    assert (name, reference) == ("app:v1", f"registry/team/app@{digest}")
    assert updated.endswith(" ago")
    assert row["object"]["metadata"]["name"] == "app:v1"

    single = await get_ok(client, istags("team", "app:v1"), headers={"Accept": TABLE})
    assert [c["name"] for c in single["columnDefinitions"]] == ["Name", "Image Reference", "Updated"]
    assert single["rows"][0]["cells"][:2] == ["app:v1", f"registry/team/app@{digest}"]

    images = await get_ok(client, f"{API}/images", headers={"Accept": TABLE})
    assert [c["name"] for c in images["columnDefinitions"]] == ["Name", "Image Reference"]
    assert images["rows"][0]["cells"] == [digest, f"registry/team/app@{digest}"]


async def test_get_one_tag_as_a_table_row_carries_its_metadata(client):
    await push_image(client, "team/app", "v1")
    istag = await get_ok(client, istags("team", "app:v1"))
    single = await get_ok(client, istags("team", "app:v1"), headers={"Accept": TABLE})
    assert single["rows"][0]["object"]["metadata"] == istag["metadata"]


# -- create, update, delete ------------------------------------------------------------------


async def test_create_a_tag_pointing_at_an_image_or_another_tag(client):
    first, _ = await push_image(client, "src/base", "v1")
    second, _ = await push_image(client, "src/base", "v2")

    # Pointing at an image (STREAM@DIGEST) of another namespace creates the stream.
    r = await client.post(istags("team"), json=istag_body("app:pinned", "ImageStreamImage", f"base@{first}", "src"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["metadata"]["name"] == "app:pinned"
    assert created["tag"]["from"] == {"kind": "ImageStreamImage", "name": f"base@{first}", "namespace": "src"}
    assert created["image"]["metadata"]["name"] == first
    assert await current(client, "team/app", "pinned") == first
    stream = await get_ok(client, streams("team", "app"))
    assert stream["metadata"]["uid"] == created["metadata"]["uid"]
    assert [t["name"] for t in stream["spec"]["tags"]] == ["pinned"]

    # Pointing at a tag.
    r = await client.post(istags("team"), json=istag_body("app:latest", "ImageStreamTag", "base:v2", "src"))
    assert r.status_code == 201, r.text
    assert r.json()["image"]["metadata"]["name"] == second
    assert await current(client, "team/app", "latest") == second
    stream = await get_ok(client, streams("team", "app"))
    assert history(stream) == {"latest": [second], "pinned": [first]}
    assert rv(stream) == rv(r.json())

    # Creating it again is AlreadyExists, whatever it points at.
    again = await client.post(istags("team"), json=istag_body("app:latest", "ImageStreamImage", f"base@{first}", "src"))
    status = assert_status(again, 409, "AlreadyExists")
    assert status["details"] == {"name": "app:latest", "group": "image.openshift.io", "kind": "imagestreamtags"}
    assert await current(client, "team/app", "latest") == second
    # A pushed tag exists too.
    await push_image(client, "team/app", "pushed")
    dup = await client.post(istags("team"), json=istag_body("app:pushed", "ImageStreamImage", f"app@{first}"))
    assert_status(dup, 409, "AlreadyExists")


async def test_update_moves_the_tag_and_records_the_move_newest_first(client):
    first, _ = await push_image(client, "team/base", "v1")
    second, _ = await push_image(client, "team/base", "v2")
    r = await client.post(istags("team"), json=istag_body("app:prod", "ImageStreamTag", "base:v1"))
    assert r.status_code == 201, r.text
    created = r.json()

    body = istag_body("app:prod", "ImageStreamImage", f"base@{second}")
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    r = await client.put(istags("team", "app:prod"), json=body)
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["image"]["metadata"]["name"] == second
    assert moved["tag"]["from"]["kind"] == "ImageStreamImage"
    assert rv(moved) > rv(created)
    assert await current(client, "team/app", "prod") == second

    stream = await get_ok(client, streams("team", "app"))
    [status_tag] = stream["status"]["tags"]
    items = status_tag["items"]
    assert [i["image"] for i in items] == [second, first]
    assert items[0]["generation"] > items[1]["generation"]
    assert items[0]["created"] >= items[1]["created"] and all(RFC3339.match(i["created"]) for i in items)
    assert moved["generation"] == items[0]["generation"] == stream["metadata"]["generation"]

    # Back to the first image: a new item on top.
    back = istag_body("app:prod", "ImageStreamTag", "base:v1")
    assert (await client.put(istags("team", "app:prod"), json=back)).status_code == 200
    assert history(await get_ok(client, streams("team", "app")))["prod"] == [first, second, first]

    # A stale resourceVersion is a conflict, and changes nothing.
    before = await get_ok(client, streams("team", "app"))
    stale = istag_body("app:prod", "ImageStreamImage", f"base@{second}", resourceVersion=str(rv(created)))
    assert_status(await client.put(istags("team", "app:prod"), json=stale), 409, "Conflict")
    assert await get_ok(client, streams("team", "app")) == before


async def test_a_tag_pointing_at_a_tag_of_its_own_stream_follows_it(client):
    first, _ = await push_image(client, "team/app", "v1")
    r = await client.post(istags("team"), json=istag_body("app:latest", "ImageStreamTag", "v1"))
    assert r.status_code == 201, r.text
    r = await client.post(istags("team"), json=istag_body("app:stable", "ImageStreamTag", "app:latest"))
    assert r.status_code == 201, r.text
    second, _ = await push_image(client, "team/app", "v1")
    assert history(await get_ok(client, streams("team", "app"))) == {
        "latest": [second, first],
        "stable": [second, first],
        "v1": [second, first],
    }
    assert await current(client, "team/app", "stable") == second


async def test_delete_a_tag_removes_it_from_the_registry_and_the_spec(client):
    digest, _ = await push_image(client, "team/base", "v1")
    await push_image(client, "team/app", "pushed")
    await create_stream(client, "team", "app2", tags=[tag_ref("prod", "ImageStreamTag", "base:v1")])
    before = await get_ok(client, streams("team", "app2"))

    r = await client.delete(istags("team", "app2:prod"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "app2:prod",
            "group": "image.openshift.io",
            "kind": "imagestreamtags",
            "uid": before["metadata"]["uid"],
        },
    }
    assert_error(await client.get("/v2/team/app2/manifests/prod"), 404)
    assert_status(await client.get(istags("team", "app2:prod")), 404, "NotFound")
    after = await get_ok(client, streams("team", "app2"))
    assert after["status"]["tags"] == [] and "tags" not in after["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert rv(after) > rv(before)
    # The image stays, by digest.
    assert (await client.head(f"/v2/team/app2/manifests/{digest}")).status_code == 200

    # A pushed tag goes the same way.
    assert (await client.delete(istags("team", "app:pushed"))).status_code == 200
    assert_error(await client.get("/v2/team/app/manifests/pushed"), 404)
    # Deleting what is not there is NotFound.
    status = assert_status(await client.delete(istags("team", "app:pushed")), 404, "NotFound")
    assert status["details"] == {"name": "app:pushed", "group": "image.openshift.io", "kind": "imagestreamtags"}
    assert_status(await client.delete(istags("team", "nostream:x")), 404, "NotFound")


async def test_istag_update_closing_a_cycle_is_refused(client):
    # a -> v1, b -> a; then a -> b would make a and b point at each other.
    await push_image(client, "team/app", "v1")
    assert (await client.post(istags("team"), json=istag_body("app:a", "ImageStreamTag", "v1"))).status_code == 201
    assert (await client.post(istags("team"), json=istag_body("app:b", "ImageStreamTag", "a"))).status_code == 201
    before = await get_ok(client, streams("team", "app"))

    status = assert_status(
        await client.put(istags("team", "app:a"), json=istag_body("app:a", "ImageStreamTag", "b")), 422, "Invalid"
    )
    assert any("cycle" in c["message"] for c in status["details"]["causes"]), status
    assert await get_ok(client, streams("team", "app")) == before


# -- image stream images ---------------------------------------------------------------------


async def test_image_stream_image_only_for_images_the_stream_holds(client):
    mine, _ = await push_image(client, "team/app", "v1")
    theirs, _ = await push_image(client, "team/other", "v1")
    stream = await get_ok(client, streams("team", "app"))

    obj = await get_ok(client, isimage("team", f"app@{mine}"))
    assert (obj["kind"], obj["apiVersion"]) == ("ImageStreamImage", "image.openshift.io/v1")
    assert (obj["metadata"]["name"], obj["metadata"]["namespace"]) == (f"app@{mine}", "team")
    assert obj["metadata"]["uid"] == stream["metadata"]["uid"]
    assert obj["image"]["metadata"]["name"] == mine
    assert obj["image"]["dockerImageReference"] == f"registry/team/app@{mine}"

    # An image of another stream, or none at all, is not found here.
    for digest in (theirs, "sha256:" + "0" * 64):
        status = assert_status(await client.get(isimage("team", f"app@{digest}")), 404, "NotFound")
        assert status["details"] == {
            "name": f"app@{digest}",
            "group": "image.openshift.io",
            "kind": "imagestreamimages",
        }
    for name in ("app", f"app:{mine}", "app@sha256:abc", f"missing@{mine}", f"@{mine}"):
        assert_status(await client.get(isimage("team", name)), 404, "NotFound")
    # They are got by name only, as in OpenShift: a list is not allowed.
    listing = "/apis/image.openshift.io/v1/namespaces/team/imagestreamimages"
    assert_status(await client.get(listing), 405, "MethodNotAllowed")


# -- images --------------------------------------------------------------------------------------


async def test_images_list_each_digest_once_and_get_each(client):
    a, body = await push_image(client, "team/app", "v1")
    b, _ = await push_image(client, "team/app", "v2")
    # The same image in a second stream is still one Image.
    r = await client.post(istags("team"), json=istag_body("copy:v1", "ImageStreamImage", f"app@{a}"))
    assert r.status_code == 201, r.text

    listing = await get_ok(client, f"{API}/images")
    assert (listing["kind"], listing["apiVersion"]) == ("ImageList", "image.openshift.io/v1")
    assert names(listing) == sorted([a, b])
    for item in listing["items"]:
        assert item["kind"] == "Image"
        full = await get_ok(client, f"{API}/images/{item['metadata']['name']}")
        assert full["metadata"] == item["metadata"]
        assert full["dockerImageReference"] == f"registry/team/app@{item['metadata']['name']}"
    assert names(await get_ok(client, f"{API}/images", params={"fieldSelector": f"metadata.name={b}"})) == [b]
    page = await get_ok(client, f"{API}/images", params={"limit": "1"})
    assert names(page) == [min(a, b)] and page["metadata"]["continue"]

    status = assert_status(await client.get(f"{API}/images/sha256:{'1' * 64}"), 404, "NotFound")
    assert status["details"] == {"name": f"sha256:{'1' * 64}", "group": "image.openshift.io", "kind": "images"}
    assert body


async def test_deleting_an_image_is_refused_while_referenced_and_allowed_after(client):
    old, _ = await push_image(client, "team/app", "v1")
    new, _ = await push_image(client, "team/app", "v1")  # old stays in the tag's history

    for digest in (old, new):
        status = assert_status(await client.delete(f"{API}/images/{digest}"), 409, "Conflict")
        assert status["details"] == {"name": digest, "group": "image.openshift.io", "kind": "images"}
        assert "still referenced" in status["message"]
        assert (await get_ok(client, f"{API}/images/{digest}"))["metadata"]["name"] == digest
    assert (await client.head(f"/v2/team/app/manifests/{old}")).status_code == 200

    assert (await client.delete(streams("team", "app"))).status_code == 200
    r = await client.delete(f"{API}/images/{old}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Success"
    assert r.json()["details"]["name"] == old and r.json()["details"]["kind"] == "images"
    assert_status(await client.get(f"{API}/images/{old}"), 404, "NotFound")
    assert_error(await client.get(f"/v2/team/app/manifests/{old}"), 404)
    assert names(await get_ok(client, f"{API}/images")) == [new]
    assert_status(await client.delete(f"{API}/images/{old}"), 404, "NotFound")


async def test_deleting_an_image_an_index_refers_to_is_refused(client):
    child, body = await push_image(client, "team/multi")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": json.loads(body)["mediaType"], "digest": child, "size": len(body)}],
    }
    r = await put_manifest(client, "team/multi", "v1", json.dumps(index).encode(), OCI_INDEX)
    assert r.status_code == 201, r.text
    index_digest = r.headers["Docker-Content-Digest"]
    assert (await client.delete(istags("team", "multi:v1"))).status_code == 200

    assert_status(await client.delete(f"{API}/images/{child}"), 409, "Conflict")
    r = await client.delete(f"{API}/images/{index_digest}")
    assert r.status_code == 200, r.text
    assert (await client.delete(f"{API}/images/{child}")).status_code == 200
