"""PATCH of image streams and image stream tags: JSON merge patch (RFC 7386), JSON patch
(RFC 6902: add, remove, replace, move, copy, test; all or nothing), strategic merge patch
(a merge patch for these types), apply patches refused with 415, resourceVersion in a patch
as a precondition, and patches whose result is invalid: 422 Invalid naming the field, with
the stored object left as it was."""

from __future__ import annotations

from tests.support.http import assert_status, push_image
from tests.support.kube import (
    APPLY,
    JSON_PATCH,
    MERGE,
    STRATEGIC,
    create_stream,
    get_ok,
    history,
    istags,
    rv,
    streams,
    tag_ref,
)

PATH = streams("team", "app")


async def patch(client, body, headers, path=PATH, **params):
    return await client.patch(path, json=body, headers=headers, params=params)


async def test_merge_patch_merges_maps_and_null_deletes(client):
    created = await create_stream(client, "team", "app", labels={"a": "1", "b": "2"}, annotations={"n": "1"})
    r = await patch(client, {"metadata": {"labels": {"b": None, "c": "3"}, "annotations": {"m": "2"}}}, MERGE)
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert patched["metadata"]["annotations"] == {"n": "1", "m": "2"}
    assert rv(patched) > rv(created)
    assert patched["metadata"]["generation"] == 1
    assert await get_ok(client, PATH) == patched

    # Lists are replaced whole by a merge patch.
    await push_image(client, "team/base", "v1")
    tags = [tag_ref("one", "ImageStreamTag", "base:v1"), tag_ref("two", "ImageStreamTag", "base:v1")]
    r = await patch(client, {"spec": {"tags": tags}}, MERGE)
    assert [t["name"] for t in r.json()["spec"]["tags"]] == ["one", "two"]
    r = await patch(client, {"spec": {"tags": [tag_ref("three", "ImageStreamTag", "base:v1")]}}, MERGE)
    assert r.status_code == 200, r.text
    assert [t["name"] for t in r.json()["spec"]["tags"]] == ["three"]
    # Tags dropped from the spec keep their pushed status (as in OpenShift).
    assert sorted(history(r.json())) == ["one", "three", "two"]


async def test_json_patch_add_remove_replace_move_copy_and_test(client):
    await create_stream(client, "team", "app", labels={"a": "1", "b": "2"})
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/c", "value": "3"},
        {"op": "remove", "path": "/metadata/labels/b"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "one"},
        {"op": "copy", "from": "/metadata/labels/c", "path": "/metadata/labels/d"},
        {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/e~1f"},
        {"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}},
        {"op": "add", "path": "/spec/tags", "value": []},
        {"op": "add", "path": "/spec/tags/-", "value": tag_ref("ext", "DockerImage", "quay.io/a/b:1")},
        {"op": "replace", "path": "/spec/lookupPolicy/local", "value": True},
    ]
    r = await patch(client, ops, JSON_PATCH)
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["metadata"]["labels"] == {"a": "one", "d": "3", "e/f": "3"}
    assert patched["metadata"]["annotations"] == {"x": "y"}
    assert [t["name"] for t in patched["spec"]["tags"]] == ["ext"]
    assert patched["spec"]["lookupPolicy"] == {"local": True}
    assert patched["metadata"]["generation"] == 2
    assert await get_ok(client, PATH) == patched


async def test_json_patch_that_does_not_apply_is_invalid_and_applies_nothing(client):
    before = await create_stream(client, "team", "app", labels={"a": "1"})
    for failing in (
        {"op": "test", "path": "/metadata/labels/a", "value": "2"},
        {"op": "test", "path": "/metadata/labels/missing", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/missing"},
        {"op": "replace", "path": "/metadata/nothing/here", "value": "x"},
        {"op": "add", "path": "/spec/tags/5", "value": {"name": "x"}},
        {"op": "move", "from": "/metadata/labels", "path": "/metadata/labels/inside"},
    ):
        ops = [{"op": "add", "path": "/metadata/labels/first", "value": "applied?"}, failing]
        status = assert_status(await patch(client, ops, JSON_PATCH), 422, "Invalid")
        assert "operation 1" in status["message"], (failing, status)
    assert await get_ok(client, PATH) == before


async def test_malformed_json_patch_is_a_bad_request(client):
    before = await create_stream(client, "team", "app", labels={"a": "1"})
    for ops in (
        {"op": "add", "path": "/metadata/labels/a", "value": "x"},  # not an array
        [{"path": "/metadata/labels/a", "value": "x"}],  # no op
        [{"op": "frobnicate", "path": "/metadata"}],
        [{"op": "add", "path": "metadata/labels/a", "value": "x"}],  # not a JSON pointer
        [{"op": "add", "path": "/metadata/labels/a"}],  # no value
        [{"op": "move", "path": "/metadata/labels/a"}],  # no from
        [{"op": "add", "path": "/spec/tags", "value": []}, {"op": "add", "path": "/spec/tags/01", "value": {}}],
        ["add"],
        [None],
    ):
        assert_status(await patch(client, ops, JSON_PATCH), 400, "BadRequest")
    assert await get_ok(client, PATH) == before


async def test_strategic_merge_patch_is_a_merge_patch(client):
    await push_image(client, "team/base", "v1")
    await create_stream(client, "team", "app", labels={"a": "1", "b": "2"})
    body = {
        "metadata": {"labels": {"b": None, "c": "3"}},
        "spec": {"tags": [tag_ref("prod", "ImageStreamTag", "base:v1")]},
    }
    r = await patch(client, body, STRATEGIC)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert history(r.json())["prod"]
    # The element order directive kubectl adds for lists is understood (and dropped).
    body = {"$setElementOrder/tags": [{"name": "prod"}], "metadata": {"labels": {"d": "4"}}}
    r = await patch(client, body, STRATEGIC)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "1", "c": "3", "d": "4"}
    assert [t["name"] for t in r.json()["spec"]["tags"]] == ["prod"]


async def test_unsupported_patch_types_are_unsupported_media_type(client):
    before = await create_stream(client, "team", "app")
    for headers in (APPLY, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {}):
        r = await client.patch(PATH, content=b'{"metadata": {"labels": {"a": "b"}}}', headers=headers)
        status = assert_status(r, 415, "UnsupportedMediaType")
        assert "application/merge-patch+json" in status["message"]
    assert await get_ok(client, PATH) == before


async def test_patching_labels_selects_the_stream(client):
    await create_stream(client, "team", "app")
    await create_stream(client, "team", "other")
    r = await patch(client, {"metadata": {"labels": {"env": "prod"}}}, MERGE)
    assert r.status_code == 200
    listing = await get_ok(client, streams("team"), params={"labelSelector": "env=prod"})
    assert [s["metadata"]["name"] for s in listing["items"]] == ["app"]
    r = await patch(client, [{"op": "remove", "path": "/metadata/labels/env"}], JSON_PATCH)
    assert r.status_code == 200, r.text
    assert "labels" not in r.json()["metadata"]
    assert (await get_ok(client, streams("team"), params={"labelSelector": "env=prod"}))["items"] == []


async def test_resource_version_in_a_patch_is_a_precondition(client):
    created = await create_stream(client, "team", "app")
    moved = await patch(client, {"metadata": {"labels": {"a": "1"}}}, MERGE)
    current = moved.json()

    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"a": "2"}}}
    assert_status(await patch(client, stale, MERGE), 409, "Conflict")
    assert await get_ok(client, PATH) == current

    fresh = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"], "labels": {"a": "3"}}}
    r = await patch(client, fresh, MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "3"}


INVALID_PATCHES = [
    ({"spec": {"tags": [{"name": "not a tag!"}]}}, MERGE, "spec.tags[0].name"),
    ({"spec": {"tags": [{"name": "t", "from": {"kind": "Nope", "name": "x"}}]}}, MERGE, "spec.tags[0].from.kind"),
    ({"spec": {"tags": [{"name": "t", "from": {"kind": "ImageStreamTag"}}]}}, MERGE, "spec.tags[0].from.name"),
    ({"spec": {"tags": [{"name": "t"}, {"name": "t"}]}}, MERGE, "spec.tags[1].name"),
    ({"spec": {"lookupPolicy": {"local": "yes"}}}, MERGE, "spec.lookupPolicy.local"),
    ({"spec": {"tags": "latest"}}, MERGE, "spec.tags"),
    ({"spec": {"unknownField": 1}}, MERGE, "spec.unknownField"),
    ({"metadata": {"name": "renamed"}}, MERGE, "metadata.name"),
    ({"metadata": {"namespace": "elsewhere"}}, MERGE, "metadata.namespace"),
    ({"metadata": {"labels": {"a": 1}}}, MERGE, "metadata.labels.a"),
    ({"kind": "Deployment"}, MERGE, "kind"),
    ({"apiVersion": "apps/v1"}, MERGE, "apiVersion"),
    ([{"op": "add", "path": "/spec/tags", "value": [{"name": ""}]}], JSON_PATCH, "spec.tags[0].name"),
    ([{"op": "add", "path": "/spec/bogus", "value": True}], JSON_PATCH, "spec.bogus"),
    ({"spec": {"tags": [tag_ref("t", "ImageStreamTag", "nothing:here")]}}, MERGE, "spec.tags[0].from.name"),
    ({"spec": {"tags": [tag_ref("t", "ImageStreamTag", "t")]}}, STRATEGIC, "spec.tags[0].from"),
]


async def test_patch_producing_an_invalid_object_is_invalid_naming_the_field(client):
    before = await create_stream(client, "team", "app", labels={"keep": "me"})
    for body, headers, field in INVALID_PATCHES:
        status = assert_status(await patch(client, body, headers), 422, "Invalid")
        assert field in [c["field"] for c in status["details"]["causes"]], status
        assert status["details"]["name"] == "app"
        assert status["details"]["kind"] == "ImageStream"
    assert await get_ok(client, PATH) == before
    # Nothing reached the registry either.
    assert (await client.get("/v2/team/app/manifests/t")).status_code == 404


async def test_patch_of_a_missing_stream_is_not_found(client):
    status = assert_status(await patch(client, {"metadata": {"labels": {"a": "b"}}}, MERGE), 404, "NotFound")
    assert status["details"] == {"name": "app", "group": "image.openshift.io", "kind": "imagestreams"}
    assert_status(await client.get(PATH), 404, "NotFound")


async def test_patch_of_an_image_stream_tag_moves_it(client):
    first, _ = await push_image(client, "team/base", "v1")
    second, _ = await push_image(client, "team/base", "v2")
    await create_stream(client, "team", "app", tags=[tag_ref("prod", "ImageStreamTag", "base:v1")])
    r = await client.patch(
        istags("team", "app:prod"), json={"tag": {"from": {"kind": "ImageStreamTag", "name": "base:v2"}}}, headers=MERGE
    )
    assert r.status_code == 200, r.text
    assert r.json()["image"]["metadata"]["name"] == second
    assert history(await get_ok(client, PATH))["prod"] == [second, first]

    # A JSON patch on a pushed tag (no spec tag): its current image is where it points.
    await push_image(client, "team/app", "pushed")
    ops = [{"op": "replace", "path": "/tag/from/name", "value": f"base@{first}"}]
    r = await client.patch(istags("team", "app:pushed"), json=ops, headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert history(await get_ok(client, PATH))["pushed"][0] == first

    status = assert_status(
        await client.patch(istags("team", "app:prod"), json={"tag": {"from": None}}, headers=MERGE), 422, "Invalid"
    )
    assert "tag.from" in [c["field"] for c in status["details"]["causes"]]
    assert_status(await client.patch(istags("team", "app:none"), json={"tag": {}}, headers=MERGE), 404, "NotFound")
