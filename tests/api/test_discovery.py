"""What kubectl reads before anything else: /version, the core and group discovery documents
(/api, /api/v1, /apis, /apis/GROUP, /apis/GROUP/VERSION: kinds, verbs, scopes, short names),
404 Status objects for groups and versions not served, the OpenAPI v3 index and every
document it points at (schemas carrying x-kubernetes-group-version-kind, every $ref
resolving, every discovered kind described), and the namespaces of /api/v1."""

from __future__ import annotations

import re

import pytest

from tests.support.http import assert_status
from tests.support.kube import API, RFC3339, TABLE, create_stream, get_ok, names

# Discovery does not depend on where blobs and metadata live.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

GROUPS = ["image.openshift.io", "imageregistry.operator.openshift.io", "authorization.k8s.io", "notifications.okura.io"]
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


async def test_version_is_a_kubernetes_version_info(client):
    version = await get_ok(client, "/version")
    assert (version["major"], version["minor"]) == ("1", "32")
    assert re.fullmatch(r"v1\.32\.\d+\+okura-\S+", version["gitVersion"]), version
    assert version["platform"] == "linux/amd64"
    assert {"gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler"} <= set(version)


async def test_core_api_versions_and_resources(client):
    versions = await get_ok(client, "/api")
    assert (versions["kind"], versions["apiVersion"], versions["versions"]) == ("APIVersions", "v1", ["v1"])
    assert versions["serverAddressByClientCIDRs"] == [{"clientCIDR": "0.0.0.0/0", "serverAddress": "registry"}]

    core = await get_ok(client, "/api/v1")
    assert (core["kind"], core["apiVersion"], core["groupVersion"]) == ("APIResourceList", "v1", "v1")
    assert core["resources"] == [
        {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": ["get", "list"],
            "shortNames": ["ns"],
        },
        {
            "name": "secrets",
            "singularName": "secret",
            "namespaced": True,
            "kind": "Secret",
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
        },
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list"],
            "shortNames": ["po"],
            "categories": ["all"],
        },
        # A subresource, as the API server lists it (kubectl's REST mapper skips those).
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ]


async def test_group_list_names_every_served_group_with_its_preferred_version(client):
    listing = await get_ok(client, "/apis")
    assert (listing["kind"], listing["apiVersion"]) == ("APIGroupList", "v1")
    assert [g["name"] for g in listing["groups"]] == GROUPS
    for group in listing["groups"]:
        version = {"groupVersion": f"{group['name']}/v1", "version": "v1"}
        assert group["versions"] == [version]
        assert group["preferredVersion"] == version
        # Each group answers on its own as an APIGroup, the same as in the list.
        single = await get_ok(client, f"/apis/{group['name']}")
        assert single == {"kind": "APIGroup", "apiVersion": "v1", **group}


async def test_aggregated_discovery_accept_header_gets_the_legacy_documents(client):
    # kubectl >= 1.30 asks for aggregated discovery first and falls back on plain JSON.
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    r = await client.get("/apis", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert r.json()["kind"] == "APIGroupList"


async def test_image_group_resources_kinds_verbs_scopes_and_short_names(client):
    listing = await get_ok(client, "/apis/image.openshift.io/v1")
    assert (listing["kind"], listing["apiVersion"]) == ("APIResourceList", "v1")
    assert listing["groupVersion"] == "image.openshift.io/v1"
    by_name = {r["name"]: r for r in listing["resources"]}
    assert list(by_name) == ["imagestreams", "imagestreamtags", "imagestreamimages", "images", "imagestreamimports"]
    assert by_name["imagestreamimports"] == {
        "name": "imagestreamimports",
        "singularName": "imagestreamimport",
        "namespaced": True,
        "kind": "ImageStreamImport",
        "verbs": ["create"],
    }
    assert by_name["imagestreams"] == {
        "name": "imagestreams",
        "singularName": "imagestream",
        "namespaced": True,
        "kind": "ImageStream",
        "verbs": ALL_VERBS,
        "shortNames": ["is"],
        "categories": ["all"],
    }
    assert by_name["imagestreamtags"] == {
        "name": "imagestreamtags",
        "singularName": "imagestreamtag",
        "namespaced": True,
        "kind": "ImageStreamTag",
        "verbs": ALL_VERBS,
        "shortNames": ["istag"],
    }
    assert by_name["imagestreamimages"] == {
        "name": "imagestreamimages",
        "singularName": "imagestreamimage",
        "namespaced": True,
        "kind": "ImageStreamImage",
        "verbs": ["get"],
        "shortNames": ["isimage"],
    }
    assert by_name["images"] == {
        "name": "images",
        "singularName": "image",
        "namespaced": False,
        "kind": "Image",
        "verbs": ["delete", "get", "list", "watch"],
    }


async def test_other_groups_resources(client):
    operator = await get_ok(client, "/apis/imageregistry.operator.openshift.io/v1")
    assert [(r["name"], r["kind"], r["namespaced"]) for r in operator["resources"]] == [
        ("imagepruners", "ImagePruner", False),
        ("configs", "Config", False),
    ]
    for resource in operator["resources"]:
        assert resource["verbs"] == ["get", "list", "patch", "update", "watch"]
    assert operator["resources"][1]["singularName"] == "config"

    authz = await get_ok(client, "/apis/authorization.k8s.io/v1")
    assert [(r["name"], r["kind"], r["namespaced"], r["verbs"]) for r in authz["resources"]] == [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"]),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, ["create"]),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/apis/nope.example.com",
        "/apis/nope.example.com/v1",
        "/apis/image.openshift.io/v2",
        "/apis/image.openshift.io/v1beta1",
        "/apis/image.openshift.io/v1/nothings",
        "/apis/image.openshift.io/v1/namespaces/team/nothings",
        "/apis/apps/v1",
    ],
)
async def test_groups_versions_and_resources_not_served_are_not_found_statuses(client, path):
    status = assert_status(await client.get(path), 404, "NotFound")
    assert status["message"] == "the server could not find the requested resource"


# -- OpenAPI v3 ------------------------------------------------------------------------------


async def openapi_documents(client) -> dict[str, dict]:
    index = await get_ok(client, "/openapi/v3")
    assert set(index) == {"paths"}
    assert sorted(index["paths"]) == [
        "api/v1",
        "apis/authorization.k8s.io/v1",
        "apis/image.openshift.io/v1",
        "apis/imageregistry.operator.openshift.io/v1",
        "apis/notifications.okura.io/v1",
    ]
    docs = {}
    for path, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert re.fullmatch(rf"/openapi/v3/{re.escape(path)}\?hash=[0-9A-F]{{32}}", url), url
        r = await client.get(url)  # the URL as the index gives it, hash and all
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].split(";")[0] == "application/json"
        assert "immutable" in r.headers.get("cache-control", "")
        docs[path] = r.json()
    return docs


def refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_openapi_index_points_at_a_complete_document_per_group_version(client):
    docs = await openapi_documents(client)
    for path, doc in docs.items():
        assert doc["openapi"].startswith("3."), path
        schemas = doc["components"]["schemas"]
        # Every reference resolves inside the document itself.
        dangling = sorted({r for r in refs(doc) if r.removeprefix("#/components/schemas/") not in schemas})
        assert dangling == [], path
        # Every path parameter in a template is declared.
        for template, item in doc["paths"].items():
            declared = {p["name"] for p in item.get("parameters", [])}
            for op in ("get", "put", "post", "patch", "delete"):
                if op in item:
                    declared |= {p["name"] for p in item[op].get("parameters", [])}
            assert set(re.findall(r"{(\w+)}", template)) <= declared, (path, template)


async def test_every_discovered_kind_has_a_schema_with_its_group_version_kind(client):
    docs = await openapi_documents(client)
    for group_version, path in [
        ("v1", "api/v1"),
        ("image.openshift.io/v1", "apis/image.openshift.io/v1"),
        ("imageregistry.operator.openshift.io/v1", "apis/imageregistry.operator.openshift.io/v1"),
        ("authorization.k8s.io/v1", "apis/authorization.k8s.io/v1"),
        ("notifications.okura.io/v1", "apis/notifications.okura.io/v1"),
    ]:
        discovery = await get_ok(client, "/api/v1" if group_version == "v1" else f"/apis/{group_version}")
        group, _, version = group_version.rpartition("/")
        gvks = {
            (g["group"], g["version"], g["kind"])
            for schema in docs[path]["components"]["schemas"].values()
            for g in schema.get("x-kubernetes-group-version-kind", [])
        }
        for resource in discovery["resources"]:
            assert (group, version, resource["kind"]) in gvks, (path, resource["kind"])


async def test_image_stream_schema_and_operations_as_kubectl_explain_and_apply_read_them(client):
    doc = (await openapi_documents(client))["apis/image.openshift.io/v1"]
    schemas = doc["components"]["schemas"]
    stream = schemas["com.github.openshift.api.image.v1.ImageStream"]
    assert stream["x-kubernetes-group-version-kind"] == [
        {"group": "image.openshift.io", "version": "v1", "kind": "ImageStream"}
    ]
    assert set(stream["properties"]) == {"kind", "apiVersion", "metadata", "spec", "status"}
    assert {"tags", "lookupPolicy"} <= set(stream["properties"]["spec"]["properties"])
    for kind in ("ImageStreamList", "ImageStreamTag", "ImageStreamTagList", "ImageStreamImage", "Image", "ImageList"):
        gvk = schemas[f"com.github.openshift.api.image.v1.{kind}"]["x-kubernetes-group-version-kind"]
        assert gvk == [{"group": "image.openshift.io", "version": "v1", "kind": kind}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas

    collection = doc["paths"][f"{API}/namespaces/{{namespace}}/imagestreams"]
    assert {"get", "post"} <= set(collection)
    item = doc["paths"][f"{API}/namespaces/{{namespace}}/imagestreams/{{name}}"]
    assert {"get", "put", "patch", "delete"} <= set(item)
    # kubectl apply validates on the server when PATCH takes fieldValidation.
    assert "fieldValidation" in {p["name"] for p in item["patch"]["parameters"]}
    assert set(item["patch"]["requestBody"]["content"]) == {
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
    }
    assert item["get"]["x-kubernetes-group-version-kind"]["kind"] == "ImageStream"
    assert f"{API}/imagestreams" in doc["paths"]  # the list across namespaces
    images = doc["paths"][f"{API}/images/{{name}}"]
    assert {"get", "delete"} <= set(images) and "put" not in images
    assert set(doc["paths"][f"{API}/namespaces/{{namespace}}/imagestreamimages/{{name}}"]) == {"parameters", "get"}


async def test_config_schema_and_operations_as_kubectl_explain_reads_them(client):
    """The Config's spec and status (the storage's fields too), its list kind and operations;
    that it carries its group-version-kind is checked above."""
    doc = (await openapi_documents(client))["apis/imageregistry.operator.openshift.io/v1"]
    schemas = doc["components"]["schemas"]
    config = schemas["com.github.openshift.api.imageregistry.v1.Config"]["properties"]
    spec = config["spec"]["properties"]
    assert {"managementState", "logLevel", "readOnly", "disableRedirect", "requests", "routes", "replicas"} <= set(spec)
    assert spec["managementState"]["enum"] == ["Managed", "Unmanaged", "Removed"]
    storage = spec["storage"]["properties"]
    s3 = set(storage["s3"]["properties"])
    assert {"bucket", "region", "regionEndpoint", "rootDirectory", "virtualHostedStyle"} <= s3
    assert {"managementState", "s3", "filesystem"} <= set(storage)
    assert set(storage["filesystem"]["properties"]) == {"path"}
    assert config["status"]["properties"]["storage"] == spec["storage"]
    listed = schemas["com.github.openshift.api.imageregistry.v1.ConfigList"]["x-kubernetes-group-version-kind"]
    assert [g["kind"] for g in listed] == ["ConfigList"]
    collection = "/apis/imageregistry.operator.openshift.io/v1/configs"
    assert set(doc["paths"][collection]) == {"parameters", "get"}
    assert set(doc["paths"][f"{collection}/{{name}}"]) == {"parameters", "get", "put", "patch"}


async def test_unknown_openapi_document_is_not_found(client):
    for path in ("/openapi/v3/apis/nope.example.com/v1", "/openapi/v3/apis/image.openshift.io/v2"):
        assert (await client.get(path)).status_code == 404


# -- namespaces ------------------------------------------------------------------------------


async def test_namespaces_are_those_holding_streams(client):
    assert (await get_ok(client, "/api/v1/namespaces"))["items"] == []
    await create_stream(client, "beta", "app")
    await create_stream(client, "alpha", "one")
    await create_stream(client, "alpha", "two")

    listing = await get_ok(client, "/api/v1/namespaces")
    assert (listing["kind"], listing["apiVersion"]) == ("NamespaceList", "v1")
    assert names(listing) == ["alpha", "beta"]
    alpha = await get_ok(client, "/api/v1/namespaces/alpha")
    assert alpha == listing["items"][0]
    assert (alpha["kind"], alpha["apiVersion"]) == ("Namespace", "v1")
    assert alpha["metadata"]["labels"] == {"kubernetes.io/metadata.name": "alpha"}
    assert RFC3339.match(alpha["metadata"]["creationTimestamp"])
    assert alpha["status"] == {"phase": "Active"}
    # Its uid is derived from its name: the same on every read.
    assert (await get_ok(client, "/api/v1/namespaces/alpha"))["metadata"]["uid"] == alpha["metadata"]["uid"]

    table = await get_ok(client, "/api/v1/namespaces", headers={"Accept": TABLE})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert [row["cells"][:2] for row in table["rows"]] == [["alpha", "Active"], ["beta", "Active"]]


async def test_unknown_namespace_is_a_not_found_status(client):
    # kubectl decodes the body of an error under /api/ as a Status, as under /apis/.
    await create_stream(client, "alpha", "one")
    status = assert_status(await client.get("/api/v1/namespaces/gamma"), 404, "NotFound")
    assert status["message"] == 'namespaces "gamma" not found'
    assert status["details"] == {"name": "gamma", "kind": "namespaces"}
    assert_status(await client.get("/api/v1/namespaces/NOT_VALID"), 404, "NotFound")
    assert_status(await client.get("/api/v1/nothings"), 404, "NotFound")
