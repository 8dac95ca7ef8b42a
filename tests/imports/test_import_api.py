"""POST imagestreamimports and pull-through, through the app, against real upstream registries on
loopback (CNCF distribution anonymous, with htpasswd, behind TLS): what is stored, what the answer
says, the tag conditions of failures, pull secrets, and blobs fetched on first pull then local."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.support.backends import SQL_BACKENDS
from tests.support.digests import sha256
from tests.support.upstreams import PASSWORD, USER, Distribution, reply

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

API = "/apis/image.openshift.io/v1/namespaces/team"
OCI = "application/vnd.oci.image.manifest.v1+json"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def isi(name: str, *images: dict[str, Any], store: bool = True, repository: dict | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"import": store, "images": list(images)}
    if repository is not None:
        spec["repository"] = repository
    return {
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": name},
        "spec": spec,
    }


def image(source: str, to: str | None, **policy: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"from": {"kind": "DockerImage", "name": source}}
    if to is not None:
        entry["to"] = {"name": to}
    reference = policy.pop("reference_policy", None)
    if reference:
        entry["referencePolicy"] = {"type": reference}
    entry["importPolicy"] = {"insecure": True, **policy}  # the upstreams speak plain HTTP
    return entry


async def post_import(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"{API}/imagestreamimports", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def status_tag(stream: dict[str, Any], tag: str) -> dict[str, Any]:
    return next(t for t in stream["status"]["tags"] if t["tag"] == tag)


async def test_import_one_tag_then_pull_it_through(client, registry_model, distribution: Distribution):
    pushed = distribution.images["app"]
    source = f"{distribution.host}/test/app:v1"
    answer = await post_import(client, isi("app", image(source, "v1")))
    entry = answer["status"]["images"][0]
    assert entry["status"]["status"] == "Success", entry
    assert entry["tag"] == "v1"
    assert entry["image"]["metadata"]["name"] == pushed.digest
    assert entry["image"]["dockerImageReference"] == f"{distribution.host}/test/app@{pushed.digest}"
    assert entry["image"]["dockerImageMetadata"]["Architecture"] == "amd64"  # read from the imported config
    stream = answer["status"]["import"]
    spec_tag = stream["spec"]["tags"][0]
    assert spec_tag["from"] == {"kind": "DockerImage", "name": source}
    assert spec_tag["importPolicy"]["insecure"] is True
    item = status_tag(stream, "v1")["items"][0]
    assert item["image"] == pushed.digest
    assert item["dockerImageReference"] == f"{distribution.host}/test/app@{pushed.digest}"  # Source policy

    r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200 and r.content == pushed.content
    layer = pushed.layers[0]
    digest = sha256(layer)
    assert await registry_model.storage.stat(digest) is None  # not copied at import
    r = await client.head(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(layer)
    r = await client.get(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 200 and r.content == layer
    info = await registry_model.storage.stat(digest)
    assert info is not None and info.size == len(layer)  # stored on the way
    r = await client.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == layer[10:20]


async def test_dry_run_stores_nothing(client, distribution: Distribution):
    answer = await post_import(client, isi("dry", image(f"{distribution.host}/test/app:v1", "v1"), store=False))
    assert answer["status"]["images"][0]["status"]["status"] == "Success"
    assert "import" not in answer["status"]
    assert (await client.get(f"{API}/imagestreams/dry")).status_code == 404


async def test_failure_sets_the_condition_and_keeps_the_image(client, distribution: Distribution):
    good = f"{distribution.host}/test/app:v1"
    await post_import(client, isi("keep", image(good, "v1")))
    missing = f"{distribution.host}/test/app:nope"
    answer = await post_import(client, isi("keep", image(missing, "v1")))
    entry = answer["status"]["images"][0]
    assert entry["status"]["status"] == "Failure" and entry["status"]["reason"] == "NotFound", entry
    assert distribution.host in entry["status"]["message"]
    tag = status_tag(answer["status"]["import"], "v1")
    assert tag["items"][0]["image"] == distribution.images["app"].digest  # still the old image
    condition = tag["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == ("ImportSuccess", "False", "NotFound")
    version = answer["status"]["import"]["metadata"]["resourceVersion"]
    # Level-driven: the same failure again writes nothing.
    again = await post_import(client, isi("keep", image(missing, "v1")))
    assert again["status"]["import"]["metadata"]["resourceVersion"] == version
    # A successful import clears it.
    fixed = await post_import(client, isi("keep", image(good, "v1")))
    assert "conditions" not in status_tag(fixed["status"]["import"], "v1")


async def test_unreachable_upstream_is_a_condition_naming_it(client):
    answer = await post_import(client, isi("gone", image("127.0.0.1:9/test/app:v1", "v1")))
    entry = answer["status"]["images"][0]["status"]
    assert entry["status"] == "Failure" and entry["reason"] == "ServiceUnavailable", entry
    assert "127.0.0.1:9" in entry["message"]
    stream = answer["status"]["import"]
    assert status_tag(stream, "v1")["items"] == []
    assert status_tag(stream, "v1")["conditions"][0]["reason"] == "ServiceUnavailable"


async def test_whole_repository_up_to_the_limit(make_app, connect, distribution: Distribution):
    app = await make_app(imports={"max_tags_per_repository": 1})
    client = connect(app)
    answer = await post_import(
        client,
        isi(
            "repo",
            repository={
                "from": {"kind": "DockerImage", "name": f"{distribution.host}/test/app"},
                "importPolicy": {"insecure": True},
            },
        ),
    )
    repository = answer["status"]["repository"]
    assert repository["status"]["status"] == "Success", repository
    assert [i["tag"] for i in repository["images"]] == ["v1"]
    assert [t["tag"] for t in answer["status"]["import"]["status"]["tags"]] == ["v1"]


@pytest.mark.parametrize("mode", ["Legacy", "PreserveOriginal"])
async def test_manifest_list_in_both_import_modes(client, distribution: Distribution, mode):
    source = f"{distribution.host}/test/multi:latest"
    answer = await post_import(client, isi("multi", image(source, "latest", importMode=mode)))
    entry = answer["status"]["images"][0]
    assert entry["status"]["status"] == "Success", entry
    stream = answer["status"]["import"]
    current = status_tag(stream, "latest")["items"][0]["image"]
    index, _children = distribution.images["multi"]
    if mode == "Legacy":
        amd64 = json.loads(index.content)["manifests"][0]["digest"]
        assert current == amd64 and "manifests" not in entry
    else:
        assert current == index.digest
        assert len(entry["manifests"]) == 2
        r = await client.get(
            f"/v2/team/multi/manifests/{index.digest}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
        )
        assert r.status_code == 200 and r.content == index.content


async def test_local_reference_policy_points_at_this_registry(client, distribution: Distribution):
    source = f"{distribution.host}/test/app:v1"
    answer = await post_import(client, isi("local", image(source, "v1", reference_policy="Local")))
    item = status_tag(answer["status"]["import"], "v1")["items"][0]
    assert item["dockerImageReference"] == f"registry/team/local@{distribution.images['app'].digest}"


def docker_config(host: str, user: str, password: str) -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    document = {"auths": {host: {"username": user, "password": password, "auth": auth}}}
    return base64.b64encode(json.dumps(document).encode()).decode()


async def test_private_upstream_with_a_pull_secret(client, htpasswd_distribution: Distribution):
    source = f"{htpasswd_distribution.host}/private/app:v1"
    refused = await post_import(client, isi("private", image(source, "v1")))
    assert refused["status"]["images"][0]["status"]["reason"] == "Unauthorized"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "upstream"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": docker_config(htpasswd_distribution.host, USER, PASSWORD)},
    }
    r = await client.post("/api/v1/namespaces/team/secrets", json=secret)
    assert r.status_code == 201, r.text
    answer = await post_import(client, isi("private", image(source, "v1")))
    assert answer["status"]["images"][0]["status"]["status"] == "Success", answer["status"]["images"][0]
    layer = htpasswd_distribution.images["app"].layers[0]
    r = await client.get(f"/v2/team/private/blobs/{sha256(layer)}")
    assert r.status_code == 200 and r.content == layer  # pull-through uses the namespace's secret too


async def test_tls_upstream_with_the_configured_ca(make_app, connect, tls_distribution: Distribution, ca):
    source = f"{tls_distribution.host}/tls/app:v1"
    entry = {"from": {"kind": "DockerImage", "name": source}, "to": {"name": "v1"}}
    untrusted = connect(await make_app())
    answer = await post_import(untrusted, isi("tls", entry))
    assert answer["status"]["images"][0]["status"]["reason"] == "ServiceUnavailable"
    trusted = connect(await make_app(imports={"ca_bundle": str(ca.path)}))
    answer = await post_import(trusted, isi("tls", entry))
    assert answer["status"]["images"][0]["status"]["status"] == "Success", answer["status"]["images"][0]


async def test_allowed_registries_guard(make_app, connect, distribution: Distribution):
    client = connect(await make_app(imports={"allowed_registries": ["quay.io"]}))
    answer = await post_import(client, isi("guarded", image(f"{distribution.host}/test/app:v1", "v1")))
    entry = answer["status"]["images"][0]["status"]
    assert entry["reason"] == "Forbidden" and "allowed_registries" in entry["message"], entry
    open_client = connect(await make_app())
    answer = await post_import(open_client, isi("metadata", image("169.254.169.254/latest/app:v1", "v1")))
    entry = answer["status"]["images"][0]["status"]
    assert entry["reason"] == "Forbidden" and "link-local" in entry["message"], entry


@pytest.mark.parametrize(
    "body, field",
    [
        (isi("x"), "spec"),
        (
            isi("x", {"from": {"kind": "ImageStreamTag", "name": "a:b"}, "to": {"name": "v1"}}),
            "spec.images[0].from.kind",
        ),
        (
            isi("x", {"from": {"kind": "DockerImage", "name": "a/b:c"}, "to": {"name": "bad tag"}}),
            "spec.images[0].to.name",
        ),
        (isi("Bad", {"from": {"kind": "DockerImage", "name": "a/b:c"}}), "metadata.name"),
    ],
)
async def test_invalid_requests(client, body, field):
    r = await client.post(f"{API}/imagestreamimports", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["kind"] == "Status" and field in r.json()["message"]


async def test_bad_reference_is_an_invalid_entry(client):
    answer = await post_import(client, isi("ref", image("UPPER CASE/x:y", "v1")))
    assert answer["status"]["images"][0]["status"]["reason"] == "Invalid"


async def test_a_new_source_does_not_inherit_the_old_sources_import_mode(client, distribution: Distribution):
    await post_import(client, isi("mix", image(f"{distribution.host}/test/app:v1", "t", importMode="PreserveOriginal")))
    answer = await post_import(client, isi("mix", image(f"{distribution.host}/test/multi:latest", "t")))
    _index, children = distribution.images["multi"]
    stream = answer["status"]["import"]
    assert status_tag(stream, "t")["items"][0]["image"] == children[0].digest  # Legacy: one image of the list
    assert stream["spec"]["tags"][0]["importPolicy"]["importMode"] == "Legacy"


async def test_bad_manifests_are_conditions_naming_the_upstream(make_app, connect, stubs):
    stub = await stubs()
    huge = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": [], "pad": "x" * 8192}).encode()
    stub.routes["/v2/x/app/manifests/huge"] = reply(200, huge, {"Content-Type": OCI})
    schema1 = json.dumps({"schemaVersion": 1, "name": "x/app", "tag": "old", "fsLayers": []}).encode()
    stub.routes["/v2/x/app/manifests/old"] = reply(200, schema1, {"Content-Type": SCHEMA1})
    stub.routes["/v2/x/app/manifests/broken"] = reply(200, b'{"schemaVersion": 2, "config": 7}', {"Content-Type": OCI})
    client = connect(await make_app(manifests={"max_size": 4096}))
    expected = {"huge": "RequestEntityTooLarge", "old": "BadRequest", "broken": "InternalError"}
    for tag, reason in expected.items():
        answer = await post_import(client, isi("bad", image(f"{stub.host}/x/app:{tag}", tag)))
        status = answer["status"]["images"][0]["status"]
        assert status["status"] == "Failure" and status["reason"] == reason, (tag, status)
        assert stub.host in status["message"], status
        assert status_tag(answer["status"]["import"], tag)["items"] == []  # nothing partial is visible
    r = await client.get("/v2/team/bad/tags/list")
    assert r.status_code in (200, 404) and not (r.json().get("tags") or [])


async def test_import_and_pull_through_metrics(client, distribution: Distribution):
    await post_import(client, isi("metered", image(f"{distribution.host}/test/app:v1", "v1")))
    layer = distribution.images["app"].layers[1]
    assert (await client.get(f"/v2/team/metered/blobs/{sha256(layer)}")).status_code == 200
    text = (await client.get("/metrics")).text
    assert 'okura_image_imports_total{outcome="success"}' in text
    assert 'imageregistry_pullthrough_blobstore_cache_requests_total{type="Miss"}' in text
    assert "okura_pullthrough_bytes_total" in text


async def test_an_imported_image_tagged_into_another_stream_pulls_through_there(client, distribution: Distribution):
    pushed = distribution.images["app"]
    await post_import(client, isi("origin", image(f"{distribution.host}/test/app:v1", "v1")))
    tag = {
        "kind": "ImageStreamTag",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "copy:v1"},
        "tag": {"name": "v1", "from": {"kind": "ImageStreamImage", "name": f"origin@{pushed.digest}"}},
    }
    r = await client.post(f"{API}/imagestreamtags", json=tag)
    assert r.status_code == 201, r.text
    layer = pushed.layers[1]
    r = await client.get(f"/v2/team/copy/blobs/{sha256(layer)}")
    assert r.status_code == 200 and r.content == layer
