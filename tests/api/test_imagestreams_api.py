"""ImageStream objects through the Kubernetes-style API: create (empty, or with spec tags
pointing at another stream's tag or image, resolved at once and pullable under /v2/), get and
list (one namespace, all namespaces), replace with resourceVersion preconditions, the
resourceVersion moving with every change whatever made it (API writes, pushes, tag deletions)
and the generation with spec changes only, labels and annotations, label and field selectors,
limit/continue paging, delete (tags leave the registry, images stay for the pruner), re-create,
dryRun=All, and the Table kubectl prints."""

from __future__ import annotations

import json
import os
import uuid

import yaml

from tests.support.digests import sha256
from tests.support.http import assert_error, assert_status, descriptor, push_blob_chunked, push_image, put_manifest
from tests.support.kube import (
    API,
    MERGE,
    RFC3339,
    TABLE,
    create_stream,
    get_ok,
    history,
    istag_body,
    istags,
    names,
    rv,
    stream_body,
    streams,
    tag_ref,
)
from tests.support.media_types import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST


async def push_like_podman(client, repo: str, tag: str) -> str:
    """Blobs in PATCHed chunks, then the manifest by tag; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    layer = os.urandom(3000)
    await push_blob_chunked(client, repo, config, chunk=1000)
    await push_blob_chunked(client, repo, layer, chunk=1000)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer)],
    }
    body = json.dumps(manifest).encode()
    assert (await put_manifest(client, repo, tag, body)).status_code == 201
    return sha256(body)


# -- create, get, list -----------------------------------------------------------------------


async def test_create_empty_stream_answers_the_stored_object(client):
    r = await client.post(streams("team"), json=stream_body("app"))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].split(";")[0] == "application/json"
    created = r.json()
    assert (created["kind"], created["apiVersion"]) == ("ImageStream", "image.openshift.io/v1")
    meta = created["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("app", "team", 1)
    assert uuid.UUID(meta["uid"])
    assert rv(created) > 0
    assert RFC3339.match(meta["creationTimestamp"])
    assert "labels" not in meta and "annotations" not in meta
    assert created["spec"] == {"lookupPolicy": {"local": False}}
    assert created["status"] == {"dockerImageRepository": "registry/team/app", "tags": []}
    assert await get_ok(client, streams("team", "app")) == created

    # A second create of the name is AlreadyExists, and changes nothing.
    status = assert_status(await client.post(streams("team"), json=stream_body("app")), 409, "AlreadyExists")
    assert status["details"] == {"name": "app", "group": "image.openshift.io", "kind": "imagestreams"}
    assert await get_ok(client, streams("team", "app")) == created


async def test_create_with_a_tag_of_another_stream_resolves_it_at_once(client):
    digest, manifest = await push_image(client, "src/base", "v1")
    tag = tag_ref("prod", "ImageStreamTag", "base:v1", namespace="src")
    created = await create_stream(client, "team", "app", tags=[tag])

    assert created["spec"]["tags"] == [
        {
            "name": "prod",
            "from": {"kind": "ImageStreamTag", "name": "base:v1", "namespace": "src"},
            "reference": False,
            "generation": 1,
            "importPolicy": {"importMode": "Legacy"},
            "referencePolicy": {"type": "Source"},
        }
    ]
    [status_tag] = created["status"]["tags"]
    assert status_tag["tag"] == "prod"
    [item] = status_tag["items"]
    assert (item["image"], item["generation"]) == (digest, 1)
    assert item["dockerImageReference"] == f"registry/team/app@{digest}"

    # The tag is pullable from the new stream: manifest and blobs.
    r = await client.get("/v2/team/app/manifests/prod", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest and r.content == manifest
    for blob in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
        assert (await client.head(f"/v2/team/app/blobs/{blob['digest']}")).status_code == 200
    assert (await get_ok(client, "/v2/team/app/tags/list"))["tags"] == ["prod"]

    # Resolved once: a later push to the source does not move it.
    await push_image(client, "src/base", "v1")
    assert history(await get_ok(client, streams("team", "app"))) == {"prod": [digest]}


async def test_create_with_an_image_of_another_stream(client):
    digest, _ = await push_image(client, "src/base", "v1")
    local, _ = await push_image(client, "team/other", "v1")
    tags = [
        tag_ref("pinned", "ImageStreamImage", f"base@{digest}", namespace="src"),
        tag_ref("mine", "ImageStreamImage", f"other@{local}"),  # no namespace: the stream's own
    ]
    created = await create_stream(client, "team", "app", tags=tags)
    assert history(created) == {"mine": [local], "pinned": [digest]}
    for tag, image in (("pinned", digest), ("mine", local)):
        r = await client.head(f"/v2/team/app/manifests/{tag}")
        assert (r.status_code, r.headers["Docker-Content-Digest"]) == (200, image)
    # The images show through the new stream too.
    shown = await get_ok(client, f"{API}/namespaces/team/imagestreamimages/app@{digest}")
    assert shown["image"]["metadata"]["name"] == digest


async def test_a_spec_tag_pointing_at_a_tag_of_the_same_stream_follows_it(client):
    first, _ = await push_image(client, "team/app", "v1")
    stream = await get_ok(client, streams("team", "app"))
    stream["spec"]["tags"] = [tag_ref("latest", "ImageStreamTag", "v1")]
    r = await client.put(streams("team", "app"), json=stream)
    assert r.status_code == 200, r.text
    assert history(r.json()) == {"latest": [first], "v1": [first]}

    second = await push_like_podman(client, "team/app", "v1")
    after = await get_ok(client, streams("team", "app"))
    assert history(after) == {"latest": [second, first], "v1": [second, first]}
    assert (await client.head("/v2/team/app/manifests/latest")).headers["Docker-Content-Digest"] == second


async def test_get_and_list_in_a_namespace_and_across_namespaces(client):
    await create_stream(client, "team", "b")
    await create_stream(client, "team", "a")
    await create_stream(client, "other", "z")
    await push_image(client, "team/pushed", "v1")

    listing = await get_ok(client, streams("team"))
    assert (listing["kind"], listing["apiVersion"]) == ("ImageStreamList", "image.openshift.io/v1")
    assert names(listing) == ["a", "b", "pushed"]
    assert listing["items"][0] == await get_ok(client, streams("team", "a"))
    assert rv(listing) >= max(rv(s) for s in listing["items"])

    everything = await get_ok(client, f"{API}/imagestreams")
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in everything["items"]] == [
        ("other", "z"),
        ("team", "a"),
        ("team", "b"),
        ("team", "pushed"),
    ]
    assert (await get_ok(client, streams("empty")))["items"] == []
    status = assert_status(await client.get(streams("team", "missing")), 404, "NotFound")
    assert status["details"] == {"name": "missing", "group": "image.openshift.io", "kind": "imagestreams"}
    assert status["message"] == 'imagestreams.image.openshift.io "missing" not found'


# -- update ----------------------------------------------------------------------------------


async def test_update_with_a_stale_resource_version_is_a_conflict_and_changes_nothing(client):
    created = await create_stream(client, "team", "app", labels={"a": "1"})
    stale = json.loads(json.dumps(created))
    fresh = await client.patch(streams("team", "app"), json={"metadata": {"labels": {"a": "2"}}}, headers=MERGE)
    assert fresh.status_code == 200
    current = fresh.json()

    stale["metadata"]["labels"] = {"a": "3"}
    stale["spec"]["tags"] = [tag_ref("x", "DockerImage", "quay.io/x/y:1")]
    status = assert_status(await client.put(streams("team", "app"), json=stale), 409, "Conflict")
    assert status["details"] == {"name": "app", "group": "image.openshift.io", "kind": "imagestreams"}
    assert "the object has been modified" in status["message"]
    assert await get_ok(client, streams("team", "app")) == current


async def test_update_with_the_current_resource_version_replaces_metadata_and_spec(client):
    digest, _ = await push_image(client, "team/base", "v1")
    created = await create_stream(client, "team", "app", labels={"keep": "no"}, annotations={"note": "old"})
    body = json.loads(json.dumps(created))
    body["metadata"]["labels"] = {"tier": "web"}
    body["metadata"]["annotations"] = {"note": "new"}
    body["spec"]["tags"] = [tag_ref("prod", "ImageStreamTag", "base:v1")]
    body["spec"]["lookupPolicy"] = {"local": True}
    r = await client.put(streams("team", "app"), json=body)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["metadata"]["labels"] == {"tier": "web"}
    assert updated["metadata"]["annotations"] == {"note": "new"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 2
    assert rv(updated) > rv(created)
    assert updated["spec"]["lookupPolicy"] == {"local": True}
    assert [(t["name"], t["generation"]) for t in updated["spec"]["tags"]] == [("prod", 2)]
    assert history(updated) == {"prod": [digest]}
    assert updated["status"]["tags"][0]["items"][0]["generation"] == 2
    assert await get_ok(client, streams("team", "app")) == updated

    # A PUT without labels removes them: it replaces the object.
    del body["metadata"]["labels"]
    body["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
    r = await client.put(streams("team", "app"), json=body)
    assert r.status_code == 200, r.text
    assert "labels" not in r.json()["metadata"]


async def test_status_sent_by_a_client_is_ignored(client):
    created = await create_stream(client, "team", "app")
    body = json.loads(json.dumps(created))
    body["status"] = {
        "dockerImageRepository": "evil.example.com/x",
        "tags": [{"tag": "fake", "items": [{"image": "sha256:" + "0" * 64, "generation": 1}]}],
    }
    body["metadata"]["labels"] = {"changed": "yes"}
    r = await client.put(streams("team", "app"), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"dockerImageRepository": "registry/team/app", "tags": []}
    assert (await client.get("/v2/team/app/manifests/fake")).status_code == 404


async def test_a_no_op_update_keeps_the_resource_version_and_generation(client):
    created = await create_stream(client, "team", "app", labels={"a": "b"}, tags=[tag_ref("x", "DockerImage", "q/x:1")])
    r = await client.put(streams("team", "app"), json=created)
    assert r.status_code == 200, r.text
    assert r.json() == created
    r = await client.patch(streams("team", "app"), json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    assert r.json() == created
    assert rv(await get_ok(client, streams("team"))) == rv(created)


async def test_resource_version_increases_with_every_change_whatever_its_source(client):
    seen = []

    async def moved() -> dict:
        stream = await get_ok(client, streams("team", "app"))
        listing = await get_ok(client, streams("team"))
        assert not seen or rv(stream) > seen[-1], (seen, stream["metadata"])
        assert rv(listing) >= rv(stream)
        seen.append(rv(stream))
        return stream

    await create_stream(client, "team", "app")
    await moved()
    first = await push_like_podman(client, "team/app", "v1")  # a push through /v2/
    await moved()
    await push_like_podman(client, "team/app", "v1")  # the tag moves
    await moved()
    await push_image(client, "team/app", "v2")  # another tag
    await moved()
    r = await client.patch(streams("team", "app"), json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE)
    assert r.status_code == 200
    assert rv(r.json()) == rv(await moved())
    r = await client.post(istags("team"), json=istag_body("app:pinned", "ImageStreamImage", f"app@{first}"))
    assert r.status_code == 201, r.text
    await moved()
    assert (await client.delete("/v2/team/app/manifests/v2")).status_code == 202  # a tag deleted by /v2/
    await moved()
    assert (await client.delete(istags("team", "app:pinned"))).status_code == 200
    stream = await moved()
    assert sorted(history(stream)) == ["v1"]
    assert stream["metadata"]["generation"] == 3  # the istag's create and delete changed the spec


async def test_generation_counts_spec_changes_only(client):
    await push_image(client, "team/base", "v1")
    created = await create_stream(client, "team", "app")
    assert created["metadata"]["generation"] == 1

    async def generation_after(patch: dict) -> int:
        r = await client.patch(streams("team", "app"), json=patch, headers=MERGE)
        assert r.status_code == 200, r.text
        return r.json()["metadata"]["generation"]

    assert await generation_after({"metadata": {"labels": {"a": "b"}}}) == 1
    assert await generation_after({"metadata": {"annotations": {"n": "v"}}}) == 1
    await push_image(client, "team/app", "pushed")
    assert (await get_ok(client, streams("team", "app")))["metadata"]["generation"] == 1
    assert await generation_after({"spec": {"lookupPolicy": {"local": True}}}) == 2
    assert await generation_after({"spec": {"tags": [tag_ref("t", "ImageStreamTag", "base:v1")]}}) == 3
    assert await generation_after({"spec": {"tags": [tag_ref("t", "ImageStreamTag", "base:v1")]}}) == 3
    assert await generation_after({"metadata": {"labels": {"a": "c"}}}) == 3
    assert await generation_after({"spec": {"tags": None}}) == 4


async def test_labels_and_annotations_round_trip(client):
    labels = {"app.kubernetes.io/name": "web", "tier": "front-end", "v": "1.2_3", "empty": ""}
    annotations = {
        "openshift.io/display-name": "Web front end ✓",
        "description": 'line one\nline two "quoted" and {json: true}',
        "big": "x" * 10_000,
    }
    created = await create_stream(client, "team", "app", labels=labels, annotations=annotations)
    assert created["metadata"]["labels"] == labels
    assert created["metadata"]["annotations"] == annotations
    stream = await get_ok(client, streams("team", "app"))
    assert (stream["metadata"]["labels"], stream["metadata"]["annotations"]) == (labels, annotations)
    listed = (await get_ok(client, streams("team")))["items"][0]
    assert (listed["metadata"]["labels"], listed["metadata"]["annotations"]) == (labels, annotations)

    # A merge patch with null removes one key and keeps the others.
    r = await client.patch(streams("team", "app"), json={"metadata": {"labels": {"tier": None}}}, headers=MERGE)
    assert r.status_code == 200
    assert r.json()["metadata"]["labels"] == {k: v for k, v in labels.items() if k != "tier"}
    assert r.json()["metadata"]["annotations"] == annotations


# -- selectors and paging --------------------------------------------------------------------


async def test_label_selectors_filter_lists(client):
    for name, labels in [
        ("web", {"app": "shop", "tier": "front"}),
        ("api", {"app": "shop", "tier": "back"}),
        ("db", {"app": "shop", "tier": "data", "legacy": "true"}),
        ("tool", {"team": "ops"}),
        ("bare", None),
    ]:
        await create_stream(client, "team", name, labels=labels)
    await create_stream(client, "other", "web", labels={"app": "shop", "tier": "front"})

    expectations = {
        "app=shop": ["api", "db", "web"],
        "app==shop": ["api", "db", "web"],
        "tier!=front": ["api", "bare", "db", "tool"],
        "tier in (front,back)": ["api", "web"],
        "tier in (front, data)": ["db", "web"],
        "tier notin (front,back)": ["bare", "db", "tool"],
        "!tier": ["bare", "tool"],
        "legacy": ["db"],
        "app=shop,tier!=data": ["api", "web"],
        "app=shop,!legacy": ["api", "web"],
        "app=nothing": [],
        "team=ops,app": [],
        "": ["api", "bare", "db", "tool", "web"],
    }
    for selector, expected in expectations.items():
        listing = await get_ok(client, streams("team"), params={"labelSelector": selector})
        assert names(listing) == expected, selector
    everywhere = await get_ok(client, f"{API}/imagestreams", params={"labelSelector": "tier=front"})
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in everywhere["items"]] == [
        ("other", "web"),
        ("team", "web"),
    ]


async def test_field_selectors_on_name_and_namespace(client):
    for namespace, name in [("team", "a"), ("team", "b"), ("other", "a")]:
        await create_stream(client, namespace, name)
    assert names(await get_ok(client, streams("team"), params={"fieldSelector": "metadata.name=b"})) == ["b"]
    assert names(await get_ok(client, streams("team"), params={"fieldSelector": "metadata.name!=b"})) == ["a"]
    everywhere = await get_ok(client, f"{API}/imagestreams", params={"fieldSelector": "metadata.name=a"})
    assert [s["metadata"]["namespace"] for s in everywhere["items"]] == ["other", "team"]
    scoped = await get_ok(
        client, f"{API}/imagestreams", params={"fieldSelector": "metadata.namespace=team,metadata.name=a"}
    )
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in scoped["items"]] == [("team", "a")]
    # Together with a label selector, both must hold.
    both = await get_ok(client, streams("team"), params={"fieldSelector": "metadata.name=a", "labelSelector": "x"})
    assert both["items"] == []


async def test_limit_and_continue_page_through_without_duplicates_or_gaps(client):
    for i in range(7):
        await create_stream(client, "team", f"s{i}")
    await create_stream(client, "other", "outside")
    pages, token = [], None
    while True:
        params = {"limit": "3", **({"continue": token} if token else {})}
        page = await get_ok(client, streams("team"), params=params)
        pages.append(names(page))
        token = page["metadata"].get("continue")
        if not token:
            break
        assert len(page["items"]) == 3
    assert pages == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]

    # The same across namespaces, and with a selector applied before the limit.
    seen, token = [], None
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        page = await get_ok(client, f"{API}/imagestreams", params=params)
        seen += [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert seen == [("other", "outside")] + [("team", f"s{i}") for i in range(7)]

    selected = await get_ok(client, streams("team"), params={"limit": "2", "fieldSelector": "metadata.name!=s0"})
    assert names(selected) == ["s1", "s2"] and selected["metadata"]["continue"]

    # A limit at least the size of the list gives everything and no token.
    whole = await get_ok(client, streams("team"), params={"limit": "7"})
    assert len(whole["items"]) == 7 and "continue" not in whole["metadata"]

    # A table pages the same way.
    table = await get_ok(client, streams("team"), params={"limit": "4"}, headers={"Accept": TABLE})
    assert [row["cells"][0] for row in table["rows"]] == ["s0", "s1", "s2", "s3"]
    rest = await get_ok(
        client,
        streams("team"),
        params={"limit": "4", "continue": table["metadata"]["continue"]},
        headers={"Accept": TABLE},
    )
    assert [row["cells"][0] for row in rest["rows"]] == ["s4", "s5", "s6"]


# -- delete and re-create ------------------------------------------------------------------------


async def test_delete_answers_success_and_the_tags_leave_the_registry_while_images_stay(client):
    digest, manifest = await push_image(client, "team/app", "v1")
    await push_image(client, "team/app", "v2")
    stream = await get_ok(client, streams("team", "app"))

    r = await client.delete(streams("team", "app"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "app",
            "group": "image.openshift.io",
            "kind": "imagestreams",
            "uid": stream["metadata"]["uid"],
        },
    }
    assert_status(await client.get(streams("team", "app")), 404, "NotFound")
    assert names(await get_ok(client, streams("team"))) == []
    assert_status(await client.get(istags("team", "app:v1")), 404, "NotFound")
    assert_status(await client.delete(streams("team", "app")), 404, "NotFound")

    # Under /v2/ the tags are gone ...
    for tag in ("v1", "v2"):
        assert_error(await client.get(f"/v2/team/app/manifests/{tag}"), 404)
    tags = await client.get("/v2/team/app/tags/list")
    assert tags.status_code == 404 or tags.json()["tags"] in ([], None), tags.text
    # ... while the images stay until the pruner takes them.
    r = await client.get(f"/v2/team/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert (r.status_code, r.content) == (200, manifest)
    assert (await get_ok(client, f"{API}/images/{digest}"))["metadata"]["name"] == digest


async def test_re_creating_a_deleted_stream_starts_afresh_with_a_new_uid(client):
    await push_image(client, "team/app", "v1")
    old = await get_ok(client, streams("team", "app"))
    patched = await client.patch(streams("team", "app"), json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    assert patched.status_code == 200
    assert (await client.delete(streams("team", "app"))).status_code == 200

    new = await create_stream(client, "team", "app")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["metadata"]["generation"] == 1
    assert rv(new) > rv(patched.json())
    assert "labels" not in new["metadata"]
    assert new["status"]["tags"] == []
    assert_error(await client.get("/v2/team/app/manifests/v1"), 404)

    # Pushing to a deleted stream brings it back the same way.
    assert (await client.delete(streams("team", "app"))).status_code == 200
    await push_image(client, "team/app", "v2")
    again = await get_ok(client, streams("team", "app"))
    assert again["metadata"]["uid"] not in (old["metadata"]["uid"], new["metadata"]["uid"])
    assert sorted(history(again)) == ["v2"]


async def test_delete_with_a_resource_version_precondition(client):
    created = await create_stream(client, "team", "app")
    await client.patch(streams("team", "app"), json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    current = await get_ok(client, streams("team", "app"))

    stale = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": str(rv(created))}}
    status = assert_status(await client.request("DELETE", streams("team", "app"), json=stale), 409, "Conflict")
    assert status["details"]["name"] == "app"
    assert await get_ok(client, streams("team", "app")) == current

    fresh = {"preconditions": {"resourceVersion": current["metadata"]["resourceVersion"]}}
    r = await client.request("DELETE", streams("team", "app"), json=fresh)
    assert r.status_code == 200, r.text
    assert_status(await client.get(streams("team", "app")), 404, "NotFound")


# -- dry run -------------------------------------------------------------------------------------


async def test_dry_run_changes_nothing(client):
    digest, _ = await push_image(client, "team/base", "v1")
    created = await create_stream(client, "team", "app", labels={"a": "b"})
    version = rv(await get_ok(client, streams("team")))
    dry = {"dryRun": "All"}

    r = await client.post(
        streams("team"), params=dry, json=stream_body("new", tags=[tag_ref("t", "ImageStreamTag", "base:v1")])
    )
    assert r.status_code == 201, r.text
    assert "resourceVersion" not in r.json()["metadata"]  # nothing was stored, as the API server answers
    body = stream_body("app", labels={"c": "d"}, resourceVersion=created["metadata"]["resourceVersion"])
    r = await client.put(streams("team", "app"), params=dry, json=body)
    assert r.status_code == 200, r.text
    # The version stays what it is (kubectl diff shows only the real differences).
    assert r.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert r.json()["metadata"]["labels"] == {"c": "d"}
    r = await client.patch(streams("team", "app"), params=dry, json={"metadata": {"labels": {"e": "f"}}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "b", "e": "f"}  # what the patch would give
    assert r.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    r = await client.post(istags("team"), params=dry, json=istag_body("app:t", "ImageStreamImage", f"base@{digest}"))
    assert r.status_code == 201, r.text
    r = await client.delete(streams("team", "app"), params=dry)
    assert r.status_code == 200 and r.json()["status"] == "Success", r.text

    assert_status(await client.get(streams("team", "new")), 404, "NotFound")
    assert await get_ok(client, streams("team", "app")) == created
    assert_error(await client.get("/v2/team/app/manifests/t"), 404)
    assert rv(await get_ok(client, streams("team"))) == version


async def test_dry_run_create_answers_the_object_it_would_create(client):
    # kubectl create --dry-run=server -o yaml prints what comes back: an ImageStream.
    r = await client.post(streams("team"), params={"dryRun": "All"}, json={"metadata": {"name": "app"}})
    assert r.status_code == 201, r.text
    obj = r.json()
    assert (obj["kind"], obj["apiVersion"]) == ("ImageStream", "image.openshift.io/v1")
    assert (obj["metadata"]["name"], obj["metadata"].get("namespace")) == ("app", "team")
    assert obj["status"]["dockerImageRepository"] == "registry/team/app"
    assert_status(await client.get(streams("team", "app")), 404, "NotFound")


async def test_dry_run_writes_fail_as_the_real_writes_would(client):
    created = await create_stream(client, "team", "app")
    await client.patch(streams("team", "app"), json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    dry = {"dryRun": "All"}
    assert_status(await client.post(streams("team"), params=dry, json=stream_body("app")), 409, "AlreadyExists")
    stale = stream_body("app", resourceVersion=created["metadata"]["resourceVersion"])
    assert_status(await client.put(streams("team", "app"), params=dry, json=stale), 409, "Conflict")
    assert_status(
        await client.put(streams("team", "missing"), params=dry, json=stream_body("missing")), 404, "NotFound"
    )


# -- tables --------------------------------------------------------------------------------------


async def test_list_as_a_table_has_the_columns_oc_prints(client):
    digest, _ = await push_image(client, "team/app", "v1")
    await push_image(client, "team/app", "v2")
    for i in range(6):
        await push_image(client, "team/many", f"t{i}")
    await create_stream(client, "team", "empty", labels={"a": "b"})

    table = await get_ok(client, streams("team"), headers={"Accept": TABLE})
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Image Repository", "Tags", "Updated"]
    assert table["columnDefinitions"][0]["format"] == "name"
    assert int(table["metadata"]["resourceVersion"]) > 0
    rows = {row["cells"][0]: row for row in table["rows"]}
    assert list(rows) == ["app", "empty", "many"]
    _, repository, tags, updated = rows["app"]["cells"]
    assert repository == "registry/team/app"
    assert sorted(tags.split(",")) == ["v1", "v2"]
    assert updated.endswith(" ago")
    assert rows["empty"]["cells"] == ["empty", "registry/team/empty", "", ""]
    assert rows["many"]["cells"][2].endswith(" + 2 more...")
    assert len(rows["many"]["cells"][2].split(" + ")[0].split(",")) == 4
    # Each row carries the object's metadata (kubectl prints labels and namespaces from it).
    partial = rows["empty"]["object"]
    assert (partial["kind"], partial["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert partial["metadata"] == (await get_ok(client, streams("team", "empty")))["metadata"]

    whole = await get_ok(client, streams("team"), params={"includeObject": "Object"}, headers={"Accept": TABLE})
    assert whole["rows"][0]["object"] == await get_ok(client, streams("team", "app"))
    bare = await get_ok(client, streams("team"), params={"includeObject": "None"}, headers={"Accept": TABLE})
    assert [row["object"] for row in bare["rows"]] == [None, None, None]
    assert digest  # pushed


async def test_get_one_stream_as_a_table_row_carries_its_metadata(client):
    created = await create_stream(client, "team", "app", labels={"tier": "web"})
    table = await get_ok(client, streams("team", "app"), headers={"Accept": TABLE})
    assert table["kind"] == "Table"
    [row] = table["rows"]
    assert row["cells"] == ["app", "registry/team/app", "", ""]
    # kubectl get is app --show-labels reads the labels from here.
    assert row["object"]["metadata"] == created["metadata"]


async def test_yaml_is_answered_when_asked_for(client):
    await create_stream(client, "team", "app", labels={"a": "b"})
    r = await client.get(streams("team", "app"), headers={"Accept": "application/yaml"})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/yaml"
    assert yaml.safe_load(r.content) == await get_ok(client, streams("team", "app"))
