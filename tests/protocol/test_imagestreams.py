"""Image streams and images under /apis/image.openshift.io/v1 (open registry): tag history newest
first with monotonic generations, lists sorted and scoped, Image fields from the manifest and the
config blob, indexes, and Kubernetes Status objects for every error under /apis/."""

from __future__ import annotations

import json
import re

from registry.model import images
from tests.support.digests import sha256
from tests.support.http import assert_error, assert_status, push_image, put_manifest
from tests.support.media_types import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

API = "/apis/image.openshift.io/v1"
HOST = "registry"  # the Host header of the test client (http://registry)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def get_json(client, path: str) -> dict:
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].split(";")[0] == "application/json"
    return r.json()


def history(stream: dict) -> dict[str, list[dict]]:
    return {t["tag"]: t["items"] for t in stream["status"]["tags"]}


# -- image streams -------------------------------------------------------------------------------


async def test_tag_history_is_newest_first(client):
    repo = "team/app"
    a1, a1_body = await push_image(client, repo, "latest")
    b, _ = await push_image(client, repo, "v1")
    a2, _ = await push_image(client, repo, "latest")
    a3, _ = await push_image(client, repo, "latest")
    # Back to the first image: a new history item on top, not a reordering.
    assert (await put_manifest(client, repo, "latest", a1_body)).status_code == 201
    # The same image again changes nothing.
    assert (await put_manifest(client, repo, "latest", a1_body)).status_code == 201

    stream = await get_json(client, f"{API}/namespaces/team/imagestreams/app")
    assert stream["kind"] == "ImageStream"
    assert stream["apiVersion"] == "image.openshift.io/v1"
    assert stream["metadata"]["name"] == "app"
    assert stream["metadata"]["namespace"] == "team"
    assert RFC3339.match(stream["metadata"]["creationTimestamp"])
    # As in OpenShift, the generation counts spec changes (pushes change only status), and
    # each history item carries the generation the stream had when it happened.
    assert stream["metadata"]["generation"] == 1
    assert stream["metadata"]["uid"] and int(stream["metadata"]["resourceVersion"]) > 0
    assert stream["spec"] == {"lookupPolicy": {"local": False}}
    assert stream["status"]["dockerImageRepository"] == f"{HOST}/team/app"

    tags = history(stream)
    assert [t["tag"] for t in stream["status"]["tags"]] == ["latest", "v1"]
    assert [i["image"] for i in tags["latest"]] == [a1, a3, a2, a1]
    assert [i["generation"] for i in tags["latest"]] == [1, 1, 1, 1]
    assert [i["image"] for i in tags["v1"]] == [b]
    assert [i["generation"] for i in tags["v1"]] == [1]
    for items in tags.values():
        for item in items:
            assert set(item) == {"created", "dockerImageReference", "image", "generation"}
            assert item["dockerImageReference"] == f"{HOST}/team/app@{item['image']}"
            assert RFC3339.match(item["created"]), item
        created = [i["created"] for i in items]
        assert created == sorted(created, reverse=True)

    # The current image of each tag is what the registry serves for it.
    for tag, items in tags.items():
        r = await client.head(f"/v2/{repo}/manifests/{tag}")
        assert r.headers["Docker-Content-Digest"] == items[0]["image"]

    # A deleted tag is not listed; the others keep their history, newest first.
    before = await get_json(client, f"{API}/namespaces/team/imagestreams/app")
    old, _ = await push_image(client, repo, "old")
    after = await get_json(client, f"{API}/namespaces/team/imagestreams/app")
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert (await client.delete(f"/v2/{repo}/manifests/old")).status_code == 202
    stream = await get_json(client, f"{API}/namespaces/team/imagestreams/app")
    tags = history(stream)
    assert list(tags) == ["latest", "v1"]
    assert [i["image"] for i in tags["latest"]] == [a1, a3, a2, a1]
    assert old not in {i["image"] for items in tags.values() for i in items}


async def test_stream_lists_are_sorted_and_scoped_by_namespace(client):
    for repo in ("team/b-app", "team/a-app", "other/zed", "team-x/app", "toplevel"):
        await push_image(client, repo, "v1")
    await push_image(client, "team/untagged")  # by digest only: a stream without tags

    listed = await get_json(client, f"{API}/namespaces/team/imagestreams")
    assert (listed["kind"], listed["apiVersion"]) == ("ImageStreamList", "image.openshift.io/v1")
    assert int(listed["metadata"]["resourceVersion"]) > 0
    assert [s["metadata"]["name"] for s in listed["items"]] == ["a-app", "b-app", "untagged"]
    assert {s["metadata"]["namespace"] for s in listed["items"]} == {"team"}
    untagged = listed["items"][2]
    assert untagged["status"]["tags"] == [] and untagged["metadata"]["generation"] == 1
    # Each listed stream is the object a GET of it answers.
    assert listed["items"][0] == await get_json(client, f"{API}/namespaces/team/imagestreams/a-app")

    everything = await get_json(client, f"{API}/imagestreams")
    assert everything["kind"] == "ImageStreamList"
    # Sorted by namespace, then name; a repository without a namespace is no image stream.
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in everything["items"]] == [
        ("other", "zed"),
        ("team", "a-app"),
        ("team", "b-app"),
        ("team", "untagged"),
        ("team-x", "app"),
    ]

    # As in Kubernetes, a namespace without streams lists nothing (and LIKE wildcards are literal).
    for namespace in ("nothing-here", "te_m"):
        assert (await get_json(client, f"{API}/namespaces/{namespace}/imagestreams"))["items"] == []
    # A namespace that cannot exist is not found.
    assert_status(await client.get(f"{API}/namespaces/t%25/imagestreams"), 404, "NotFound")


async def test_base_url_host_is_used_in_references(make_app):
    import httpx

    app = await make_app(http={"base_url": "https://images.example.com:8443/"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as c:
        digest, _ = await push_image(c, "team/app", "v1")
        stream = await get_json(c, f"{API}/namespaces/team/imagestreams/app")
        image = await get_json(c, f"{API}/images/{digest}")
    assert stream["status"]["dockerImageRepository"] == "images.example.com:8443/team/app"
    assert history(stream)["v1"][0]["dockerImageReference"] == f"images.example.com:8443/team/app@{digest}"
    assert image["dockerImageReference"] == f"images.example.com:8443/team/app@{digest}"


# -- images --------------------------------------------------------------------------------------


IMAGE_CONFIG = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "created": "2024-05-06T07:08:09.123456789Z",
    "author": "okura tests",
    "config": {
        "Labels": {"io.k8s.display-name": "app", "org.example.version": "1.2.3"},
        "Env": ["PATH=/usr/bin"],
        "Cmd": ["/app"],
    },
    "rootfs": {"type": "layers", "diff_ids": []},
}


async def test_image_has_manifest_layers_and_config_metadata(client):
    config = json.dumps(IMAGE_CONFIG).encode()
    digest, body = await push_image(client, "team/app", "v1", layers=3, media_type=DOCKER_MANIFEST, config=config)
    manifest = json.loads(body)
    # The same image later in another repository: the reference stays the first repository's.
    for blob in [manifest["config"], *manifest["layers"]]:
        r = await client.post("/v2/other/copy/blobs/uploads/", params={"mount": blob["digest"], "from": "team/app"})
        assert r.status_code == 201, r.text
    assert (await put_manifest(client, "other/copy", "v1", body, DOCKER_MANIFEST)).status_code == 201

    image = await get_json(client, f"{API}/images/{digest}")
    assert image["kind"] == "Image"
    assert image["apiVersion"] == "image.openshift.io/v1"
    assert image["metadata"]["name"] == digest
    assert RFC3339.match(image["metadata"]["creationTimestamp"])
    assert image["metadata"]["annotations"] == {
        "openshift.io/image.managed": "true",
        "image.openshift.io/dockerLayersOrder": "ascending",
    }
    assert image["dockerImageReference"] == f"{HOST}/team/app@{digest}"
    assert image["dockerImageManifestMediaType"] == DOCKER_MANIFEST
    assert image["dockerImageMetadataVersion"] == "1.0"
    assert image["dockerImageLayers"] == [
        {"name": layer["digest"], "size": layer["size"], "mediaType": DOCKER_LAYER} for layer in manifest["layers"]
    ]
    assert [layer["size"] for layer in image["dockerImageLayers"]] == [1024, 1024, 1024]
    assert "dockerImageManifests" not in image

    meta = image["dockerImageMetadata"]
    assert meta["kind"] == "DockerImage" and meta["apiVersion"] == "image.openshift.io/1.0"
    assert meta["Id"] == sha256(config) == manifest["config"]["digest"]
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert meta["Created"] == "2024-05-06T07:08:09Z"
    assert meta["Architecture"] == "arm64"
    assert meta["Os"] == "linux"
    assert meta["Author"] == "okura tests"
    assert meta["Config"] == IMAGE_CONFIG["config"]
    assert meta["Size"] == 3 * 1024 + len(config)


async def test_index_image_lists_its_manifests(client):
    repo = "team/multi"
    amd, amd_body = await push_image(client, repo)
    arm, arm_body = await push_image(client, repo, media_type=OCI_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": amd,
                "size": len(amd_body),
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": arm,
                "size": len(arm_body),
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
        ],
    }
    body = json.dumps(index).encode()
    assert (await put_manifest(client, repo, "latest", body, OCI_INDEX)).status_code == 201
    digest = sha256(body)

    image = await get_json(client, f"{API}/images/{digest}")
    assert image["metadata"]["name"] == digest
    assert image["dockerImageManifestMediaType"] == OCI_INDEX
    assert image["dockerImageReference"] == f"{HOST}/{repo}@{digest}"
    assert image["dockerImageLayers"] == []
    assert image["dockerImageManifests"] == [
        {
            "digest": amd,
            "mediaType": OCI_MANIFEST,
            "manifestSize": len(amd_body),
            "architecture": "amd64",
            "os": "linux",
        },
        {
            "digest": arm,
            "mediaType": OCI_MANIFEST,
            "manifestSize": len(arm_body),
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8",
        },
    ]
    # The platform images are images too.
    assert (await get_json(client, f"{API}/images/{arm}"))["dockerImageManifestMediaType"] == OCI_MANIFEST
    stream = await get_json(client, f"{API}/namespaces/team/imagestreams/multi")
    assert [i["image"] for i in history(stream)["latest"]] == [digest]


async def test_image_without_a_readable_config_omits_what_the_config_gives(client, registry_model, monkeypatch):
    # A config that is not JSON (an artifact's): everything but Created, platform and labels.
    digest, _ = await push_image(client, "team/artifact", "v1", config=b"\x00binary", config_type="application/x-e")
    image = await get_json(client, f"{API}/images/{digest}")
    meta = image["dockerImageMetadata"]
    assert meta["Id"] == sha256(b"\x00binary")
    assert meta["Size"] == 1024 + len(b"\x00binary")
    assert not {"Created", "Architecture", "Os", "Config"} & set(meta)
    assert len(image["dockerImageLayers"]) == 1

    # A config bigger than the limit is not parsed; the same image with the limit raised is.
    config = json.dumps(IMAGE_CONFIG).encode()
    digest, _ = await push_image(client, "team/app", "v1", config=config)
    monkeypatch.setattr(images, "CONFIG_LIMIT", len(config) - 1)
    meta = (await get_json(client, f"{API}/images/{digest}"))["dockerImageMetadata"]
    assert "Created" not in meta and "Config" not in meta and meta["Id"] == sha256(config)
    monkeypatch.setattr(images, "CONFIG_LIMIT", len(config))
    meta = (await get_json(client, f"{API}/images/{digest}"))["dockerImageMetadata"]
    assert meta["Created"] == "2024-05-06T07:08:09Z" and meta["Config"]["Labels"] == IMAGE_CONFIG["config"]["Labels"]

    # A config gone from blob storage: the image is still answered.
    assert await registry_model.storage.delete(sha256(config))
    image = await get_json(client, f"{API}/images/{digest}")
    assert "Created" not in image["dockerImageMetadata"]
    assert image["dockerImageMetadata"]["Size"] == 1024 + len(config)
    assert len(image["dockerImageLayers"]) == 1


# -- errors are Kubernetes Status objects under /apis/ ---------------------------------------------


async def test_not_found_answers_are_status_objects(client):
    digest, _ = await push_image(client, "team/app", "v1")

    r = await client.get(f"{API}/namespaces/team/imagestreams/x")
    assert r.status_code == 404
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'imagestreams.image.openshift.io "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "group": "image.openshift.io", "kind": "imagestreams"},
        "code": 404,
    }
    status = assert_status(await client.get(f"{API}/namespaces/nowhere/imagestreams/app"), 404, "NotFound")
    assert status["details"] == {"name": "app", "group": "image.openshift.io", "kind": "imagestreams"}
    # A name no repository can have is simply not there.
    assert_status(await client.get(f"{API}/namespaces/team/imagestreams/Not..Valid"), 404, "NotFound")

    unknown = sha256(b"no such image")
    status = assert_status(await client.get(f"{API}/images/{unknown}"), 404, "NotFound")
    assert status["message"] == f'images.image.openshift.io "{unknown}" not found'
    assert status["details"] == {"name": unknown, "group": "image.openshift.io", "kind": "images"}
    assert_status(await client.get(f"{API}/images/latest"), 404, "NotFound")
    assert_status(await client.get(f"{API}/images/{digest[:-1]}"), 404, "NotFound")

    # Unknown resources and paths under /apis/ are Status objects too.
    for path in (f"{API}/imagestreamthings", "/apis/nothing.example.com/v1/things", f"{API}/namespaces/team"):
        status = assert_status(await client.get(path), 404, "NotFound")
        assert status["message"] == "the server could not find the requested resource"
    r = await client.post(f"{API}/namespaces/team/imagestreams/app")
    assert_status(r, 405, "MethodNotAllowed")
    assert "GET" in r.headers["Allow"]

    # HEAD: the status without a body.
    r = await client.head(f"{API}/namespaces/team/imagestreams/app")
    assert r.status_code == 200 and r.content == b"" and int(r.headers["Content-Length"]) > 0
    assert_status(await client.head(f"{API}/images/{unknown}"), 404, "NotFound")

    # /v2/ keeps the OCI envelope.
    assert_error(await client.get("/v2/team/nothing/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.get("/v2/nothing/here"), 404)


async def test_created_is_converted_to_utc_for_an_image_pushed_by_digest(client):
    config = json.dumps({**IMAGE_CONFIG, "created": "2020-01-02T03:04:05+02:00"}).encode()
    digest, _ = await push_image(client, "team/bare", config=config)
    meta = (await get_json(client, f"{API}/images/{digest}"))["dockerImageMetadata"]
    assert meta["Created"] == "2020-01-02T01:04:05Z"
