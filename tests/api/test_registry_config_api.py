"""The registry's Config resource (configs.imageregistry.operator.openshift.io/cluster) over HTTP:
defaults from the config file, GET/PUT/PATCH, generations and resourceVersions, preconditions,
validation, storage refused, dry runs, watches, tables, access (cluster-admins only), and a
route's hostname becoming the public host of image streams at once."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from tests.support.auth import AUTH, Accounts
from tests.support.backends import BACKENDS, SQL_BACKENDS
from tests.support.http import assert_status
from tests.support.kube import JSON_PATCH, MERGE, STRATEGIC, TABLE, create_stream, get_ok, rv, streams

COLLECTION = "/apis/imageregistry.operator.openshift.io/v1/configs"
PATH = f"{COLLECTION}/cluster"
CONDITIONS = ["Available", "Progressing", "Degraded", "Removed", "StorageExists"]


@pytest.fixture(params=SQL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL: blob storage plays no part here (except where a test asks for all)."""
    return request.param


async def patch(client, body, headers=MERGE, **params):
    return await client.patch(PATH, content=json.dumps(body), headers=headers, params=params)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_defaults_come_from_the_config_file(client, registry_model, backend):
    obj = await get_ok(client, PATH)
    assert (obj["apiVersion"], obj["kind"]) == ("imageregistry.operator.openshift.io/v1", "Config")
    meta = obj["metadata"]
    assert (meta["name"], meta["generation"]) == ("cluster", 1)
    assert meta["resourceVersion"].isdigit() and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    spec = obj["spec"]
    assert (spec["managementState"], spec["logLevel"], spec["operatorLogLevel"]) == ("Managed", "Normal", "Normal")
    assert (spec["readOnly"], spec["defaultRoute"], spec["replicas"]) == (False, False, 1)
    assert spec["requests"]["read"] == {"maxRunning": 0, "maxInQueue": 0, "maxWaitInQueue": "0s"}
    config = registry_model.config
    if backend == "s3":
        s3 = spec["storage"]["s3"]
        assert (s3["bucket"], s3["regionEndpoint"]) == (config.storage.s3.bucket, config.storage.s3.endpoint_url)
        assert s3["rootDirectory"] == config.storage.s3.root_prefix
        assert spec["disableRedirect"] is True  # the config file turns redirects off
    else:
        assert spec["storage"] == {"managementState": "Unmanaged", "filesystem": {"path": config.storage_root}}
    status = obj["status"]
    assert status["observedGeneration"] == 1
    assert status["readyReplicas"] == 0  # no server process registered in-process
    assert status["storageManaged"] is False
    assert status["storage"] == spec["storage"]
    assert [c["type"] for c in status["conditions"]] == CONDITIONS
    assert all({"status", "reason", "message", "lastTransitionTime"} <= set(c) for c in status["conditions"])
    assert (await get_ok(client, PATH))["metadata"] == meta  # reading changes nothing


async def test_a_public_url_is_the_default_route(make_app, connect):
    c = connect(await make_app(http={"public_url": "https://registry.apps.example.com:8443"}))
    assert (await get_ok(c, PATH))["spec"]["defaultRoute"] is True
    await create_stream(c, "team", "app")
    stream = await get_ok(c, streams("team", "app"))
    assert stream["status"]["publicDockerImageRepository"] == "registry.apps.example.com:8443/team/app"


async def test_a_routes_hostname_is_the_public_host_of_image_streams_at_once(client):
    await create_stream(client, "team", "app")
    assert "publicDockerImageRepository" not in (await get_ok(client, streams("team", "app")))["status"]
    r = await patch(client, {"spec": {"routes": [{"name": "public", "hostname": "images.example.com"}]}})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["routes"] == [{"name": "public", "hostname": "images.example.com"}]
    stream = await get_ok(client, streams("team", "app"))
    assert stream["status"]["publicDockerImageRepository"] == "images.example.com/team/app"
    listed = await get_ok(client, streams("team"))
    assert listed["items"][0]["status"]["publicDockerImageRepository"] == "images.example.com/team/app"
    # Routes gone: no public host.
    r = await patch(client, {"spec": {"routes": None}})
    assert r.status_code == 200, r.text
    assert "publicDockerImageRepository" not in (await get_ok(client, streams("team", "app")))["status"]


async def test_put_replaces_the_spec_and_moves_generation_and_version(client):
    before = await get_ok(client, PATH)
    body = {
        "apiVersion": "imageregistry.operator.openshift.io/v1",
        "kind": "Config",
        "metadata": {"name": "cluster", "resourceVersion": before["metadata"]["resourceVersion"]},
        "spec": {"managementState": "Managed", "logLevel": "Debug", "requests": {"write": {"maxRunning": 4}}},
        "status": {"observedGeneration": 42},
    }
    r = await client.put(PATH, json=body)
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["metadata"]["generation"] == 2
    assert rv(obj) > rv(before)
    assert obj["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    assert obj["spec"]["logLevel"] == "Debug"
    assert obj["spec"]["requests"]["write"] == {"maxRunning": 4, "maxInQueue": 0, "maxWaitInQueue": "0s"}
    assert obj["spec"]["storage"] == before["spec"]["storage"]  # omitted: the storage in effect
    assert obj["status"]["observedGeneration"] == 2  # the body's status is ignored

    # The version the body was read at is a precondition: it is no longer current.
    r = await client.put(PATH, json=body)
    assert_status(r, 409, "Conflict")
    assert "the object has been modified" in r.json()["message"]

    # The whole object as read (status and all) goes back unchanged: same generation.
    r = await client.put(PATH, json=obj)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["generation"] == 2


@pytest.mark.parametrize("headers", [MERGE, {"Content-Type": "application/json"}, STRATEGIC])
async def test_patch_changes_what_it_names(client, headers):
    before = await get_ok(client, PATH)
    r = await patch(client, {"spec": {"readOnly": True, "requests": {"read": {"maxWaitInQueue": "90s"}}}}, headers)
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["spec"]["readOnly"] is True
    assert obj["spec"]["requests"]["read"]["maxWaitInQueue"] == "1m30s"  # Go's canonical form
    assert obj["spec"]["logLevel"] == "Normal"  # untouched
    assert obj["metadata"]["generation"] == 2 and rv(obj) > rv(before)
    # The same patch again changes nothing.
    again = (await patch(client, {"spec": {"readOnly": True}}, headers)).json()
    assert (again["metadata"]["generation"], rv(again)) == (2, rv(obj))
    # In effect in this process at once: writes under /v2/ are refused.
    assert (await client.post("/v2/team/app/blobs/uploads/")).status_code == 405
    assert (await patch(client, {"spec": {"readOnly": False}})).status_code == 200
    assert (await client.post("/v2/team/app/blobs/uploads/")).status_code == 202


async def test_a_json_patch_and_a_stale_version_in_a_patch(client):
    before = await get_ok(client, PATH)
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels", "value": {"team": "infra"}},
    ]
    r = await patch(client, ops, JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["replicas"] == 3
    assert r.json()["metadata"]["labels"] == {"team": "infra"}
    progressing = next(c for c in r.json()["status"]["conditions"] if c["type"] == "Progressing")
    assert "0 of 3 replicas" in progressing["message"]
    # A patch naming a version that is no longer current is refused.
    stale = {"metadata": {"resourceVersion": before["metadata"]["resourceVersion"]}, "spec": {"replicas": 2}}
    assert_status(await patch(client, stale), 409, "Conflict")
    assert (await get_ok(client, PATH))["spec"]["replicas"] == 3


async def test_concurrent_patches_are_applied_one_after_the_other(client):
    """A patch that names no version is applied again to what another writer left (the
    editable object carries the version it was read at: that is not a precondition)."""
    await get_ok(client, PATH)
    bodies = [{"metadata": {"labels": {f"l{i}": "x"}}} for i in range(6)]
    answers = await asyncio.gather(*(patch(client, body) for body in bodies))
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    assert (await get_ok(client, PATH))["metadata"]["labels"] == {f"l{i}": "x" for i in range(6)}


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("PATCH", {"spec": {"managementState": "Sideways"}}, "spec.managementState"),
        ("PATCH", {"spec": {"replicas": -1}}, "spec.replicas"),
        ("PATCH", {"spec": {"replicas": "two"}}, "spec.replicas"),
        ("PATCH", {"spec": {"requests": {"read": {"maxWaitInQueue": "a while"}}}}, "spec.requests.read.maxWaitInQueue"),
        ("PATCH", {"spec": {"requests": {"write": {"maxRunning": -5}}}}, "spec.requests.write.maxRunning"),
        (
            "PATCH",
            {"spec": {"routes": [{"name": "a", "hostname": "a.example.com"}, {"name": "a", "hostname": "b.example"}]}},
            "spec.routes[1].name",
        ),
        ("PATCH", {"spec": {"routes": [{"name": "a", "hostname": "not a host/"}]}}, "spec.routes[0].hostname"),
        ("PATCH", {"spec": {"readOnly": "yes"}}, "spec.readOnly"),
        ("PATCH", {"spec": {"readOnyl": True}}, "spec.readOnyl"),
        ("PUT", {"spec": {}, "bogus": True}, "bogus"),
        ("PUT", {"metadata": {"name": "other"}, "spec": {}}, "metadata.name"),
        ("PUT", {"kind": "ImagePruner", "spec": {}}, "kind"),
    ],
)
async def test_invalid_input_is_a_422_naming_the_field(client, method, body, field):
    r = await client.request(method, PATH, content=json.dumps(body), headers=MERGE if method == "PATCH" else {})
    status = assert_status(r, 422, "Invalid")
    assert status["details"]["kind"] == "Config" and status["details"]["name"] == "cluster"
    assert field in [c["field"] for c in status["details"]["causes"]], status
    assert (await get_ok(client, PATH))["metadata"]["generation"] == 1


async def test_storage_cannot_be_changed_here(client, registry_model):
    elsewhere = {"spec": {"storage": {"filesystem": {"path": "/somewhere/else"}}}}
    status = assert_status(await patch(client, elsewhere), 422, "Invalid")
    [cause] = status["details"]["causes"]
    assert cause["field"] == "spec.storage"
    assert "config file" in cause["message"] and "storage.filesystem.root" in cause["message"]
    assert registry_model.config.storage_root in cause["message"]  # what it is
    status = assert_status(await patch(client, {"spec": {"storage": {"s3": {"bucket": "b"}}}}), 422, "Invalid")
    assert "config file" in status["message"]
    # OpenShift's other storage kinds are refused the same way, not as unknown fields.
    status = assert_status(await patch(client, {"spec": {"storage": {"pvc": {"claim": "c"}}}}), 422, "Invalid")
    assert "config file" in status["message"]
    # The storage in effect, as read, is accepted.
    same = {"spec": {"storage": (await get_ok(client, PATH))["spec"]["storage"]}}
    assert (await patch(client, same)).status_code == 200


async def test_a_dry_run_validates_and_answers_the_result_storing_nothing(client):
    before = await get_ok(client, PATH)
    r = await patch(client, {"spec": {"logLevel": "Trace"}}, dryRun="All")
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["logLevel"] == "Trace"
    assert r.json()["metadata"]["generation"] == 2
    put = {"metadata": {"name": "cluster", "labels": {"a": "b"}}, "spec": {"readOnly": True}}
    r = await client.put(PATH, json=put, params={"dryRun": "All"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["readOnly"] is True and r.json()["metadata"]["labels"] == {"a": "b"}
    assert_status(await patch(client, {"spec": {"replicas": -2}}, dryRun="All"), 422, "Invalid")
    assert_status(await client.put(PATH, json={"spec": {"replicas": -2}}, params={"dryRun": "All"}), 422, "Invalid")
    after = await get_ok(client, PATH)
    assert after["metadata"] == before["metadata"] and after["spec"] == before["spec"]


async def test_other_names_are_not_found_statuses(client):
    for method in ("GET", "PUT", "PATCH"):
        body = b"{}" if method != "GET" else None
        r = await client.request(method, f"{COLLECTION}/other", content=body, headers=MERGE)
        status = assert_status(r, 404, "NotFound")
        assert status["message"] == 'configs.imageregistry.operator.openshift.io "other" not found'
        assert status["details"] == {"name": "other", "group": "imageregistry.operator.openshift.io", "kind": "configs"}


async def test_list_table_and_field_selector(client):
    listing = await get_ok(client, COLLECTION)
    assert (listing["kind"], listing["apiVersion"]) == ("ConfigList", "imageregistry.operator.openshift.io/v1")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["cluster"]
    assert listing["metadata"]["resourceVersion"] == listing["items"][0]["metadata"]["resourceVersion"]
    assert (await get_ok(client, COLLECTION, params={"fieldSelector": "metadata.name=other"}))["items"] == []
    for path in (COLLECTION, PATH):
        table = await get_ok(client, path, headers={"Accept": TABLE})
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
        assert [row["cells"][0] for row in table["rows"]] == ["cluster"]


async def test_a_watch_sees_a_patch_as_modified(client):
    before = rv(await get_ok(client, COLLECTION))
    assert (await patch(client, {"spec": {"disableRedirect": True}})).status_code == 200
    r = await client.get(COLLECTION, params={"watch": "true", "resourceVersion": str(before), "timeoutSeconds": "1"})
    assert r.status_code == 200, r.text
    events = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "cluster")]
    assert events[0]["object"]["spec"]["disableRedirect"] is True
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > before
    # Without a version: the object as it is, ADDED.
    r = await client.get(COLLECTION, params={"watch": "true", "timeoutSeconds": "0"})
    assert [json.loads(line)["type"] for line in r.text.splitlines() if line.strip()] == ["ADDED"]


# -- access (auth on) ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def auth_config_app(make_app):
    return await make_app(auth=AUTH)


async def test_only_cluster_admins_may_read_or_change_the_config(auth_config_app, connect):
    app = auth_config_app
    accounts = Accounts(app)
    admin = await accounts.user("root", ("cluster-admin", None))
    editor = await accounts.user("dev", ("registry-editor", "team"), ("admin", "team"))
    pruner = await accounts.service_account("openshift-image-registry/pruner", ("system:image-pruner", None))

    anonymous = connect(app)
    assert (await anonymous.get(PATH)).status_code == 401
    assert (await anonymous.patch(PATH, json={"spec": {"readOnly": True}}, headers=MERGE)).status_code == 401

    for person in (editor, pruner):
        c = connect(app, headers={"Authorization": f"Bearer {person.token}"})
        for method, path in (("GET", PATH), ("GET", COLLECTION), ("PUT", PATH), ("PATCH", PATH)):
            body = None if method == "GET" else b'{"spec": {"readOnly": true}}'
            r = await c.request(method, path, content=body, headers=MERGE)
            status = assert_status(r, 403, "Forbidden")
            assert status["message"].startswith("configs.imageregistry.operator.openshift.io"), status

    c = connect(app, headers={"Authorization": f"Bearer {admin.token}"})
    assert (await c.get(PATH)).status_code == 200
    r = await c.patch(PATH, json={"spec": {"logLevel": "Debug"}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["generation"] == 2
    # `kubectl auth can-i --list` shows it to the cluster-admin only.
    rules = await c.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", json={"spec": {}})
    listed = {
        (g, res)
        for rule in rules.json()["status"]["resourceRules"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    assert ("imageregistry.operator.openshift.io", "configs") in listed
    review = {
        "spec": {
            "resourceAttributes": {
                "group": "imageregistry.operator.openshift.io",
                "resource": "configs",
                "verb": "update",
            }
        }
    }
    as_editor = connect(app, headers={"Authorization": f"Bearer {editor.token}"})
    r = await as_editor.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert r.json()["status"]["allowed"] is False
    r = await c.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert r.json()["status"]["allowed"] is True
