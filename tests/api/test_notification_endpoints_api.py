"""NotificationEndpoints through the API, as `kubectl apply/get/patch/delete` send them: every
verb, dry runs, resourceVersion and uid preconditions, invalid specs naming the field as the
object spells it, the secret sealed at rest and never returned, the config file's endpoints
listed read-only, delivery state in status, watches, and cluster-admins only; never a 500."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select

from registry.metadata.db import utcnow
from registry.metadata.schema import changes, notification_cursors, notification_endpoints
from registry.model import events
from registry.notifications import endpoints
from tests.support.auth import AUTH, Accounts
from tests.support.backends import SQL_BACKENDS
from tests.support.http import assert_status, push_image
from tests.support.kube import JSON_PATCH, MERGE, RFC3339, STRATEGIC, TABLE, get_ok, rv

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

ENDPOINTS = "/apis/notifications.okura.io/v1/notificationendpoints"
SECRET = "hmac-key-that-must-never-show"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SPEC = {
    "url": "https://ci.example.com/hook",
    "headers": {"Authorization": ["Bearer x"]},
    "timeout": "5s",
    "backoff": "1s",
    "maxBackoff": "5m",
    "ignore": {"mediaTypes": ["application/octet-stream"], "actions": ["pull", "mount"]},
    "pulls": False,
    "format": "distribution",
    "maxBatchEvents": 100,
    "maxBatchBytes": "1Mi",
    "disabled": False,
}


def body(name: str = "ci", secret: str | None = SECRET, **metadata) -> dict:
    spec = {**SPEC, **({"secret": secret} if secret is not None else {})}
    return {"apiVersion": "notifications.okura.io/v1", "kind": "NotificationEndpoint",
            "metadata": {"name": name, **metadata}, "spec": spec}  # fmt: skip


async def create(client, name: str = "ci", **kw) -> dict:
    r = await client.post(ENDPOINTS, json=body(name, **kw))
    assert r.status_code == 201, r.text
    return r.json()


def watch_events(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    found = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return [(e["type"], e["object"]["metadata"]["name"]) for e in found]


async def test_create_get_list_replace_patch_delete(client):
    made = await create(client)
    assert (made["kind"], made["apiVersion"]) == ("NotificationEndpoint", "notifications.okura.io/v1")
    assert made["spec"] == SPEC and made["status"] == {"signed": True}
    meta = made["metadata"]
    assert (meta["name"], meta["generation"]) == ("ci", 1) and RFC3339.match(meta["creationTimestamp"])
    assert "namespace" not in meta
    assert await get_ok(client, f"{ENDPOINTS}/ci") == made
    listing = await get_ok(client, ENDPOINTS)
    assert listing["kind"] == "NotificationEndpointList" and listing["items"] == [made]
    table = await get_ok(client, ENDPOINTS, headers={"Accept": TABLE})
    columns = [c["name"] for c in table["columnDefinitions"] if not c["priority"]]
    assert columns == ["Name", "URL", "Source", "Pending", "Failures", "Age"]
    assert table["rows"][0]["cells"][:5] == ["ci", SPEC["url"], "api", 0, 0]
    assert_status(await client.post(ENDPOINTS, json=body()), 409, "AlreadyExists")

    # A replace that leaves the secret out keeps it (responses never carry it to send back).
    replaced = body(secret=None, resourceVersion=meta["resourceVersion"])
    replaced["spec"]["timeout"] = "10s"
    r = await client.put(f"{ENDPOINTS}/ci", json=replaced)
    assert r.status_code == 200, r.text
    now = r.json()
    assert now["spec"]["timeout"] == "10s" and now["status"]["signed"] is True
    assert (now["metadata"]["generation"], now["metadata"]["uid"]) == (2, meta["uid"]) and rv(now) > rv(made)
    assert_status(await client.put(f"{ENDPOINTS}/ci", json=replaced), 409, "Conflict")  # now stale

    r = await client.patch(f"{ENDPOINTS}/ci", json={"metadata": {"labels": {"team": "ci"}}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["metadata"]["labels"] == {"team": "ci"}, r.text
    assert r.json()["metadata"]["generation"] == 2  # labels are no spec change
    ops = [{"op": "replace", "path": "/spec/format", "value": "cloudevents"}]
    r = await client.patch(f"{ENDPOINTS}/ci", json=ops, headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["spec"]["format"] == "cloudevents", r.text
    r = await client.patch(f"{ENDPOINTS}/ci", json={"spec": {"disabled": True}}, headers=STRATEGIC)
    assert r.status_code == 200, r.text
    assert (r.json()["spec"]["disabled"], r.json()["metadata"]["generation"]) == (True, 4)

    r = await client.delete(f"{ENDPOINTS}/ci")
    assert r.status_code == 200 and r.json()["status"] == "Success", r.text
    details = {"name": "ci", "group": "notifications.okura.io", "kind": "notificationendpoints", "uid": meta["uid"]}
    assert r.json()["details"] == details
    assert_status(await client.get(f"{ENDPOINTS}/ci"), 404, "NotFound")
    assert_status(await client.delete(f"{ENDPOINTS}/ci"), 404, "NotFound")
    assert_status(await client.put(f"{ENDPOINTS}/gone", json=body("gone")), 404, "NotFound")
    assert_status(await client.get(f"{ENDPOINTS}/Not_A_Label"), 404, "NotFound")


async def test_dry_runs_store_nothing(client):
    r = await client.post(ENDPOINTS, params={"dryRun": "All"}, json=body())
    assert r.status_code == 201 and "resourceVersion" not in r.json()["metadata"], r.text
    assert_status(await client.get(f"{ENDPOINTS}/ci"), 404, "NotFound")
    made = await create(client)
    for method, kw in [
        ("PUT", {"json": {**body(), "spec": {**SPEC, "timeout": "9s"}}}),
        ("PATCH", {"json": {"spec": {"timeout": "9s"}}, "headers": MERGE}),
        ("DELETE", {}),
    ]:
        r = await client.request(method, f"{ENDPOINTS}/ci", params={"dryRun": "All"}, **kw)
        assert r.status_code == 200, (method, r.text)
        assert await get_ok(client, f"{ENDPOINTS}/ci") == made, method
    # A dry run checks everything the write would: a taken name, a bad spec.
    assert_status(await client.post(ENDPOINTS, params={"dryRun": "All"}, json=body()), 409, "AlreadyExists")
    bad = {**body("other"), "spec": {"url": "ftp://x"}}
    assert_status(await client.post(ENDPOINTS, params={"dryRun": "All"}, json=bad), 422, "Invalid")


async def test_preconditions(client):
    made = await create(client)
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"timeout": "2s"}}
    assert_status(await client.patch(f"{ENDPOINTS}/ci", json=stale, headers=MERGE), 409, "Conflict")
    for preconditions in ({"resourceVersion": "1"}, {"uid": "00000000-0000-0000-0000-000000000000"}):
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions}
        r = await client.request("DELETE", f"{ENDPOINTS}/ci", json=options)
        assert_status(r, 409, "Conflict")
    meta = made["metadata"]
    options = {"preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}
    assert (await client.request("DELETE", f"{ENDPOINTS}/ci", json=options)).status_code == 200


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"url": None}, "spec.url"),
        ({"url": "ftp://ci.example.com"}, "spec.url"),
        ({"timeout": "soon"}, "spec.timeout"),
        ({"timeout": 5}, "spec.timeout"),  # a duration is a string, as metav1.Duration
        ({"backoff": "0s"}, "spec.backoff"),
        ({"maxBackoff": "10ms"}, "spec.maxBackoff"),  # below backoff: the parser names no field
        ({"ignore": {"actions": ["push", "fly"]}}, "spec.ignore.actions"),
        ({"ignore": {"mediaTypes": "text/plain"}}, "spec.ignore.mediaTypes"),
        ({"format": "xml"}, "spec.format"),
        ({"maxBatchEvents": 0}, "spec.maxBatchEvents"),
        ({"maxBatchBytes": "lots"}, "spec.maxBatchBytes"),
        ({"maxBatchBytes": 10}, "spec.maxBatchBytes"),
        ({"headers": {"X-Token": "not-a-list"}}, "spec.headers.X-Token"),
        ({"max_backoff": "1s"}, "spec.max_backoff"),  # the config file's spelling is an unknown field
    ],
)
async def test_invalid_specs_name_the_field(client, spec, field):
    sent = {**body(), "spec": {**SPEC, "secret": SECRET, **spec}}
    status = assert_status(await client.post(ENDPOINTS, json=sent), 422, "Invalid")
    causes = status["details"]["causes"]
    assert causes and all(c["field"].startswith(field) for c in causes), status
    assert SECRET not in json.dumps(status)
    assert (await get_ok(client, ENDPOINTS))["items"] == []


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"name": "Bad_Name"}, "metadata.name"),
        ({}, "metadata.name"),
        ({"name": "ci", "labels": {"a/b/c": "x"}}, "metadata.labels[a/b/c]"),
    ],
)
async def test_invalid_metadata_names_the_field(client, metadata, field):
    sent = {**body(), "metadata": metadata}
    status = assert_status(await client.post(ENDPOINTS, json=sent), 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == [field], status


async def test_the_secret_is_sealed_and_never_returned(client, registry_model):
    applied = json.dumps(body()) + "\n"  # what kubectl apply keeps in its annotation, secret and all
    made = await create(client, annotations={LAST_APPLIED: applied})
    assert SECRET not in json.dumps(made)
    for headers in ({}, {"Accept": TABLE}):
        assert SECRET not in json.dumps(await get_ok(client, ENDPOINTS, headers=headers))
        assert SECRET not in json.dumps(await get_ok(client, f"{ENDPOINTS}/ci", headers=headers))
    assert json.loads(made["metadata"]["annotations"][LAST_APPLIED])["spec"]["url"] == SPEC["url"]

    def stored(conn):
        return conn.execute(select(notification_endpoints)).one()

    row = await registry_model.db.read(stored)
    assert SECRET not in json.dumps(row._asdict(), default=str)
    assert set(row.spec["secret"]) == {"sealed"}
    assert row.spec["max_backoff"] == "5m" and row.spec["ignore"]["mediatypes"] == ["application/octet-stream"]
    # The deliverer gets it opened.
    [effective] = await endpoints.effective(registry_model)
    assert (effective.secret, effective.max_backoff, effective.ignore_actions) == (SECRET, 300.0, ("pull", "mount"))

    # The same key again changes nothing; another is a spec change; "" removes it.
    again = (await client.put(f"{ENDPOINTS}/ci", json=body())).json()
    assert again["metadata"]["generation"] == 1
    other = (await client.put(f"{ENDPOINTS}/ci", json=body(secret="another"))).json()
    assert (other["metadata"]["generation"], other["status"]["signed"]) == (2, True)
    assert (await endpoints.effective(registry_model))[0].secret == "another"
    cleared = (await client.put(f"{ENDPOINTS}/ci", json=body(secret=""))).json()
    assert (cleared["metadata"]["generation"], cleared["status"]["signed"]) == (3, False)
    assert (await endpoints.effective(registry_model))[0].secret == ""

    assert (await client.delete(f"{ENDPOINTS}/ci")).status_code == 200
    logged = await registry_model.db.read(lambda conn: conn.execute(select(changes.c.object)).scalars().all())
    assert SECRET not in json.dumps(logged) and "another" not in json.dumps(logged)


async def test_config_endpoints_are_listed_read_only(make_app, connect):
    config = {"name": "ci", "url": "https://config.example.com/hook", "secret": "config-secret", "timeout": "3s"}
    client = connect(await make_app(notifications={"endpoints": [config]}))
    await create(client, "mine")
    listing = await get_ok(client, ENDPOINTS)
    assert [i["metadata"]["name"] for i in listing["items"]] == ["ci", "mine"]
    ci = await get_ok(client, f"{ENDPOINTS}/ci")
    assert ci == listing["items"][0]
    assert ci["metadata"]["annotations"] == {"notifications.okura.io/source": "config"}
    assert (ci["spec"]["url"], ci["spec"]["timeout"], ci["status"]) == (config["url"], "3s", {"signed": True})
    table = await get_ok(client, ENDPOINTS, headers={"Accept": TABLE})
    assert [r["cells"][2] for r in table["rows"]] == ["config", "api"]

    status = assert_status(await client.post(ENDPOINTS, json=body("ci")), 409, "AlreadyExists")
    assert "config file" in status["message"]
    refusals = [
        await client.put(f"{ENDPOINTS}/ci", json=body("ci")),
        await client.patch(f"{ENDPOINTS}/ci", json={"spec": {"disabled": True}}, headers=MERGE),
        await client.delete(f"{ENDPOINTS}/ci"),
    ]
    for r in refusals:
        status = assert_status(r, 422, "Invalid")
        assert "managed in the config file" in status["message"], status
        assert status["details"]["causes"][0]["reason"] == "FieldValueForbidden"
    assert await get_ok(client, f"{ENDPOINTS}/ci") == ci
    for answer in (listing, ci, table, *[r.json() for r in refusals]):
        assert "config-secret" not in json.dumps(answer)


async def test_status_shows_the_delivery_state(client, registry_model):
    await create(client)
    assert (await get_ok(client, f"{ENDPOINTS}/ci"))["status"] == {"signed": True}  # no state yet
    await push_image(client, "team/app", "v1")
    newest = await registry_model.db.read(events.newest)
    assert newest > 1
    failed_at = utcnow()
    row = {"endpoint": "ci", "cursor": 1, "updated_at": failed_at, "last_error": "HTTP 500: 'down'"}
    row.update(last_error_at=failed_at, failures=2, delivered=1, dropped=0)
    await registry_model.db.write(lambda conn: conn.execute(insert(notification_cursors).values(**row)))
    status = (await get_ok(client, f"{ENDPOINTS}/ci"))["status"]
    assert RFC3339.match(status.pop("lastErrorTime")), status
    expected = {"signed": True, "cursor": 1, "pending": newest - 1, "delivered": 1, "dropped": 0, "failures": 2}
    assert status == {**expected, "lastError": "HTTP 500: 'down'"}  # no success yet: no lastSuccessTime
    # A deleted endpoint's state goes with it: one made again under the name starts afresh.
    assert (await client.delete(f"{ENDPOINTS}/ci")).status_code == 200
    assert (await create(client))["status"] == {"signed": True}


async def test_a_watch_sees_every_write(client):
    start = (await get_ok(client, ENDPOINTS))["metadata"]["resourceVersion"]
    await create(client)
    r = await client.patch(f"{ENDPOINTS}/ci", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    assert r.status_code == 200
    assert (await client.delete(f"{ENDPOINTS}/ci")).status_code == 200
    r = await client.get(ENDPOINTS, params={"watch": "true", "resourceVersion": start, "timeoutSeconds": "1"})
    assert watch_events(r) == [("ADDED", "ci"), ("MODIFIED", "ci"), ("DELETED", "ci")]
    assert SECRET not in r.text
    await create(client, "again")
    r = await client.get(ENDPOINTS, params={"watch": "true", "timeoutSeconds": "1"})  # from the current state
    assert watch_events(r) == [("ADDED", "again")]


async def test_only_cluster_admins_manage_endpoints(make_app, connect):
    app = await make_app(auth=AUTH)
    accounts = Accounts(app)
    people = {
        "editor": await accounts.user("editor", ("registry-editor", "team")),
        "admin": await accounts.user("admin", ("admin", "team")),
        "chief": await accounts.user("chief", ("cluster-admin", None)),
    }
    c = {who: connect(app, headers={"Authorization": f"Bearer {p.token}"}) for who, p in people.items()}
    assert_status(await connect(app).get(ENDPOINTS), 401, "Unauthorized")
    for who in ("editor", "admin"):
        status = assert_status(await c[who].post(ENDPOINTS, json=body()), 403, "Forbidden")
        assert "notificationendpoints" in status["message"]
        assert_status(await c[who].get(ENDPOINTS), 403, "Forbidden")
    assert (await c["chief"].post(ENDPOINTS, json=body())).status_code == 201
    for who in ("editor", "admin"):
        assert_status(await c[who].get(f"{ENDPOINTS}/ci"), 403, "Forbidden")
        assert_status(await c[who].delete(f"{ENDPOINTS}/ci"), 403, "Forbidden")
    assert (await c["chief"].delete(f"{ENDPOINTS}/ci")).status_code == 200
