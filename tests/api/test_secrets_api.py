"""Pull secrets through the core API, as `kubectl create secret docker-registry` and
`kubectl apply -f secret.yaml` send them: data in base64 or stringData in plain text, only
the docker config types, checked when written; versions, dry runs, patches and deletes as
for any object; never a 500."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.backends import SQL_BACKENDS
from tests.support.http import assert_status
from tests.support.kube import get_ok, rv

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

SECRETS = "/api/v1/namespaces/team/secrets"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
MERGE = {"Content-Type": "application/merge-patch+json"}


def dockerconfig(server: str = "quay.io", user: str = "robot", password: str = "pw") -> str:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": user, "password": password, "auth": auth}}})


def body(name: str = "pull", **fields) -> dict:
    data = {".dockerconfigjson": base64.b64encode(dockerconfig().encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson", "data": data, **fields}  # fmt: skip


def opened(obj: dict) -> dict:
    return json.loads(base64.b64decode(obj["data"][".dockerconfigjson"]))


async def test_create_get_list_replace_delete(client):
    r = await client.post(SECRETS, json=body())
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["kind"], made["type"], made["metadata"]["namespace"]) == (
        "Secret",
        "kubernetes.io/dockerconfigjson",
        "team",
    )
    assert opened(made)["auths"]["quay.io"]["username"] == "robot"
    assert await get_ok(client, f"{SECRETS}/pull") == made
    listing = await get_ok(client, SECRETS)
    assert [i["metadata"]["name"] for i in listing["items"]] == ["pull"] and listing["kind"] == "SecretList"
    table = await get_ok(client, SECRETS, headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"][:3] == ["pull", "kubernetes.io/dockerconfigjson", 1]

    assert_status(await client.post(SECRETS, json=body()), 409, "AlreadyExists")
    replaced = body(stringData={".dockerconfigjson": dockerconfig(password="new")})
    replaced["metadata"]["resourceVersion"] = made["metadata"]["resourceVersion"]
    r = await client.put(f"{SECRETS}/pull", json=replaced)
    assert r.status_code == 200, r.text
    assert opened(r.json())["auths"]["quay.io"]["password"] == "new"  # stringData over data
    assert rv(r.json()) > rv(made)
    assert_status(await client.put(f"{SECRETS}/pull", json=replaced), 409, "Conflict")  # now stale

    r = await client.patch(f"{SECRETS}/pull", json={"metadata": {"labels": {"use": "imports"}}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["metadata"]["labels"] == {"use": "imports"}, r.text
    r = await client.delete(f"{SECRETS}/pull")
    assert r.status_code == 200 and r.json()["status"] == "Success"
    assert_status(await client.get(f"{SECRETS}/pull"), 404, "NotFound")
    assert_status(await client.delete(f"{SECRETS}/pull"), 404, "NotFound")
    assert_status(await client.put(f"{SECRETS}/gone", json=body("gone")), 404, "NotFound")


async def test_dry_runs_store_nothing(client):
    r = await client.post(SECRETS, params={"dryRun": "All"}, json=body())
    assert r.status_code == 201 and "resourceVersion" not in r.json()["metadata"], r.text
    assert_status(await client.get(f"{SECRETS}/pull"), 404, "NotFound")
    made = (await client.post(SECRETS, json=body())).json()
    r = await client.delete(f"{SECRETS}/pull", params={"dryRun": "All"})
    assert r.status_code == 200
    assert await get_ok(client, f"{SECRETS}/pull") == made


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "Opaque"}, "type"),
        ({"type": "kubernetes.io/dockercfg"}, "data"),  # the document is under the other key
        ({"data": {".dockerconfigjson": "not base64!"}}, "data[.dockerconfigjson]"),
        ({"data": {".dockerconfigjson": base64.b64encode(b'{"auths": {"q.io": {"auth": "!!"}}}').decode()}},
         "data[.dockerconfigjson]"),
        ({"data": {}, "stringData": {".dockerconfigjson": "[]"}}, "data[.dockerconfigjson]"),
        ({"data": {".dockerconfigjson": 7}}, "data..dockerconfigjson"),
        ({"metadata": {"name": "Bad_Name"}}, "metadata.name"),
        ({"metadata": {}}, "metadata.name"),
    ],
)  # fmt: skip
async def test_bad_secrets_are_invalid_naming_the_field(client, changes, field):
    r = await client.post(SECRETS, json={**body(), **changes})
    status = assert_status(r, 422, "Invalid")
    assert any(c["field"].startswith(field.split("..")[0]) for c in status["details"]["causes"]), status
    assert "pw" not in status["message"]
    assert (await get_ok(client, SECRETS))["items"] == []
