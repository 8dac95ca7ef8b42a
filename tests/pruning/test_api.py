"""The ImagePruner resource over HTTP: GET/PUT/PATCH, defaults, generations, validation,
access and the install-status metric."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from tests.support.auth import AUTH
from tests.support.pruner import SEED_YAML

PATH = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest_asyncio.fixture
async def pruner_client(make_app, connect):
    return connect(await make_app())


async def get(c):
    r = await c.get(PATH)
    assert r.status_code == 200, r.text
    return r.json()


async def test_defaults_come_from_the_config(make_app, connect):
    app = await make_app(pruner={"schedule": "30 2 * * *", "keep_tag_revisions": 5, "keep_younger_than": "90m"})
    c = connect(app)
    obj = await get(c)
    assert obj["apiVersion"] == "imageregistry.operator.openshift.io/v1"
    assert obj["kind"] == "ImagePruner"
    assert obj["metadata"]["name"] == "cluster"
    assert obj["metadata"]["generation"] == 1
    assert obj["metadata"]["creationTimestamp"].endswith("Z")
    assert obj["spec"] == {
        "schedule": "30 2 * * *",
        "suspend": False,
        "keepTagRevisions": 5,
        "keepYoungerThanDuration": "1h30m0s",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "ignoreInvalidImageReferences": True,
        "pruneRegistry": True,
        "logLevel": "Normal",
    }
    status = obj["status"]
    assert status["observedGeneration"] == 1
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "Available": ("True", "AsExpected"),
        "Scheduled": ("True", "Scheduled"),
        "Failed": ("False", "Complete"),
    }
    assert status["runs"] == []
    assert status["nextScheduleTime"].endswith("T02:30:00Z")
    assert (await get(c))["metadata"] == obj["metadata"]  # reading does not change it


async def test_a_suspended_config_starts_suspended(make_app, connect):
    c = connect(await make_app(pruner={"suspend": True}))
    obj = await get(c)
    scheduled = next(x for x in obj["status"]["conditions"] if x["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Suspended")
    assert "nextScheduleTime" not in obj["status"]


async def test_put_replaces_the_spec_and_bumps_the_generation_only_on_change(pruner_client):
    c = pruner_client
    before = await get(c)
    body = {
        "apiVersion": "imageregistry.operator.openshift.io/v1",
        "kind": "ImagePruner",
        "metadata": {"name": "cluster", "generation": 99, "resourceVersion": before["metadata"]["resourceVersion"]},
        "spec": {"schedule": "15 3 * * 0", "keepTagRevisions": 1, "keepYoungerThanDuration": "2h"},
        "status": {"observedGeneration": 42, "conditions": []},
    }
    r = await c.put(PATH, json=body)
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["metadata"]["generation"] == 2
    assert obj["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    assert obj["spec"]["schedule"] == "15 3 * * 0"
    assert obj["spec"]["keepTagRevisions"] == 1
    assert obj["spec"]["keepYoungerThanDuration"] == "2h0m0s"
    assert obj["spec"]["successfulJobsHistoryLimit"] == 3  # omitted: the API default
    assert obj["spec"]["ignoreInvalidImageReferences"] is False  # omitted: OpenShift's type default
    assert obj["status"]["observedGeneration"] == 2  # the body's status is ignored
    assert len(obj["status"]["conditions"]) == 3

    # The version the body was read at is a precondition: it is no longer current.
    r = await c.put(PATH, json=body)
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "Conflict"

    # The same spec, spelled differently ("120m" is "2h0m0s"): no change, no new generation.
    body["spec"]["keepYoungerThanDuration"] = "120m"
    body["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
    r = await c.put(PATH, json=body)
    assert r.status_code == 200
    assert r.json()["metadata"]["generation"] == 2
    assert (await get(c))["metadata"]["generation"] == 2


async def test_the_openshift_yaml_is_accepted_as_is(pruner_client):
    c = pruner_client
    await c.patch(PATH, json={"spec": {"keepTagRevisions": 9}}, headers=MERGE)
    r = await c.put(PATH, content=SEED_YAML.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["keepTagRevisions"] == 3
    assert spec["keepYoungerThanDuration"] == "1h0m0s"
    assert spec["schedule"] == "0 0 * * *"
    assert spec["resources"] == {} and spec["affinity"] == {} and spec["nodeSelector"] == {}
    assert spec["tolerations"] == []
    assert r.json()["metadata"]["generation"] == 3
    # Without a content type, YAML is recognised too; unchanged, so the same generation.
    r = await c.put(PATH, content=SEED_YAML.encode())
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["generation"] == 3
    # And YAML out when asked for it.
    r = await c.get(PATH, headers={"Accept": "application/yaml"})
    assert r.headers["content-type"].startswith("application/yaml")
    assert "kind: ImagePruner" in r.text


async def test_placement_fields_are_kept(pruner_client):
    c = pruner_client
    placement = {
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "nodeSelector": {"node-role.kubernetes.io/infra": ""},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "logLevel": "Debug",
    }
    r = await c.patch(PATH, json={"spec": placement}, headers=MERGE)
    assert r.status_code == 200, r.text
    spec = (await get(c))["spec"]
    assert {k: spec[k] for k in placement} == placement


@pytest.mark.parametrize(
    "content_type", ["application/merge-patch+json", "application/json", "application/strategic-merge-patch+json"]
)
async def test_patch_is_a_merge_patch(pruner_client, content_type):
    c = pruner_client
    r = await c.patch(
        PATH, content=json.dumps({"spec": {"keepTagRevisions": 7}}), headers={"Content-Type": content_type}
    )
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["spec"]["keepTagRevisions"] == 7
    assert obj["spec"]["schedule"] == "0 0 * * *"  # untouched
    assert obj["metadata"]["generation"] == 2
    # The same patch again changes nothing.
    r = await c.patch(PATH, json={"spec": {"keepTagRevisions": 7}}, headers=MERGE)
    assert r.json()["metadata"]["generation"] == 2
    # null removes a field: the deprecated nanoseconds then rule.
    r = await c.patch(
        PATH,
        json={"spec": {"keepYoungerThanDuration": None, "keepYoungerThan": 7_200_000_000_000}},
        headers=MERGE,
    )
    spec = r.json()["spec"]
    assert "keepYoungerThanDuration" not in spec
    assert spec["keepYoungerThan"] == 7_200_000_000_000
    assert r.json()["metadata"]["generation"] == 3


async def test_a_json_patch_applies_its_operations_in_order(pruner_client):
    c = pruner_client
    ops = [
        {"op": "test", "path": "/spec/keepTagRevisions", "value": 3},
        {"op": "replace", "path": "/spec/suspend", "value": True},
        {"op": "add", "path": "/metadata/labels", "value": {"team": "infra"}},
    ]
    r = await c.patch(PATH, content=json.dumps(ops), headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["suspend"] is True
    assert r.json()["metadata"]["labels"] == {"team": "infra"}
    # A failing `test` applies nothing.
    ops = [{"op": "replace", "path": "/spec/suspend", "value": False}, ops[0] | {"value": 4}]
    r = await c.patch(PATH, content=json.dumps(ops), headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422, r.text
    assert (await get(c))["spec"]["suspend"] is True


async def test_other_patch_types_are_refused(pruner_client):
    r = await pruner_client.patch(
        PATH, content=b"spec: {suspend: true}", headers={"Content-Type": "application/apply-patch+yaml"}
    )
    assert r.status_code == 415
    r = await pruner_client.patch(PATH, content=b"suspend=true", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("PUT", {"spec": {"schedule": "every night"}}, "spec.schedule"),
        ("PATCH", {"spec": {"schedule": "0 0 * *"}}, "spec.schedule"),
        ("PATCH", {"spec": {"keepTagRevisions": -1}}, "spec.keepTagRevisions"),
        ("PATCH", {"spec": {"successfulJobsHistoryLimit": -3}}, "spec.successfulJobsHistoryLimit"),
        ("PATCH", {"spec": {"keepTagRevisions": "three"}}, "spec.keepTagRevisions"),
        ("PATCH", {"spec": {"keepYoungerThanDuration": "one hour"}}, "spec.keepYoungerThanDuration"),
        ("PATCH", {"spec": {"keepYoungerThanDuration": "1w"}}, "spec.keepYoungerThanDuration"),
        ("PATCH", {"spec": {"suspend": "true"}}, "spec.suspend"),
        ("PATCH", {"spec": {"pruneRegistry": 0}}, "spec.pruneRegistry"),
        ("PATCH", {"spec": {"keepTagRevisons": 3}}, "spec.keepTagRevisons"),
        ("PUT", {"spec": {}, "bogus": True}, "bogus"),
        ("PUT", {"metadata": {"name": "other"}, "spec": {}}, "metadata.name"),
        ("PUT", {"kind": "CronJob", "spec": {}}, "kind"),
        ("PUT", ["not", "an", "object"], "ImagePruner"),
        ("PATCH", {"spec": "nope"}, "spec"),
    ],
)
async def test_invalid_input_is_a_422_naming_the_field(pruner_client, method, body, field):
    c = pruner_client
    r = await c.request(method, PATH, content=json.dumps(body), headers=MERGE if method == "PATCH" else {})
    assert r.status_code == 422, r.text
    assert field in r.text
    status = r.json()
    assert (status["kind"], status["reason"]) == ("Status", "Invalid")
    assert status["details"]["kind"] == "ImagePruner" and status["details"]["name"] == "cluster"
    if field != "ImagePruner":  # a body that is no object at all has no field to blame
        assert status["details"]["causes"][0]["field"] == field
    assert (await get(c))["metadata"]["generation"] == 1


async def test_unparseable_bodies_are_a_400(pruner_client):
    c = pruner_client
    r = await c.put(PATH, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = await c.put(PATH, content=b"a: [b", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    r = await c.patch(PATH, content=b"", headers=MERGE)
    assert r.status_code == 400
    r = await c.patch(PATH, content=b"[1]", headers=MERGE)  # a merge patch is an object
    assert r.status_code == 400


async def test_other_names_are_not_found(pruner_client):
    r = await pruner_client.get("/apis/imageregistry.operator.openshift.io/v1/imagepruners/other")
    assert r.status_code == 404


def install_status(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("image_registry_operator_image_pruner_install_status "):
            return float(line.split()[1])
    raise AssertionError("install status gauge missing")


async def test_install_status_metric_follows_suspend_and_resume(pruner_client):
    c = pruner_client
    await get(c)
    assert install_status((await c.get("/metrics")).text) == 2
    r = await c.patch(PATH, json={"spec": {"suspend": True}}, headers=MERGE)
    assert r.status_code == 200
    assert install_status((await c.get("/metrics")).text) == 1
    await c.patch(PATH, json={"spec": {"suspend": False}}, headers=MERGE)
    assert install_status((await c.get("/metrics")).text) == 2


# -- access (auth on) ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def auth_pruner_app(make_app):
    return await make_app(auth=AUTH)


async def test_only_cluster_admins_may_read_or_change_the_pruner(auth_pruner_app, connect):
    from tests.support.auth import Accounts

    app = auth_pruner_app
    accounts = Accounts(app)
    admin = await accounts.user("root", ("cluster-admin", None))
    editor = await accounts.user("dev", ("registry-editor", "team"), ("admin", "team"))
    pruner_sa = await accounts.service_account("openshift-image-registry/pruner", ("system:image-pruner", None))

    anonymous = connect(app)
    assert (await anonymous.get(PATH)).status_code == 401
    assert (await anonymous.patch(PATH, json={"spec": {"suspend": True}}, headers=MERGE)).status_code == 401

    for person in (editor, pruner_sa):
        c = connect(app, headers={"Authorization": f"Bearer {person.token}"})
        assert (await c.get(PATH)).status_code == 403, person.name
        r = await c.put(PATH, json={"spec": {"suspend": True}})
        assert r.status_code == 403, person.name
        assert (await c.patch(PATH, json={"spec": {"suspend": True}}, headers=MERGE)).status_code == 403

    c = connect(app, headers={"Authorization": f"Bearer {admin.token}"})
    assert (await c.get(PATH)).status_code == 200
    r = await c.patch(PATH, json={"spec": {"suspend": True}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["suspend"] is True
    assert r.json()["metadata"]["generation"] == 2
