"""Every route of the app with auth on, every method, against every kind of caller: who may call
it and who is refused. A route or method added without an entry in ROUTES fails the walk, so each
new endpoint's access is decided here on purpose.

"Allowed" means the answer is neither 401 nor 403 (a 404 or 409 after the access check is fine);
"refused" means 403, or 401 for anonymous callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio

from auth.jwt_tokens import Grant
from auth.subjects import identity_for
from tests.support.auth import Accounts, Connect
from tests.support.http import push_image
from tests.support.media_types import OCI_MANIFEST

ZERO = "sha256:" + "0" * 64
UPLOAD = "00000000-0000-4000-8000-000000000000"
ADMIN = "/admin/v1"
IMAGES = "/apis/image.openshift.io/v1"
PRUNER = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster"
CONFIGS = "/apis/imageregistry.operator.openshift.io/v1/configs"

CALLERS = ("anonymous", "viewer", "editor", "admin", "other-admin", "pruner", "cluster-admin", "pruner-jwt")
AUTHENTICATED = frozenset(CALLERS) - {"anonymous"}
EVERYONE = frozenset(CALLERS)
PULL = frozenset({"viewer", "editor", "admin", "pruner", "cluster-admin", "pruner-jwt"})
PUSH = frozenset({"editor", "admin", "cluster-admin"})
DELETE = frozenset({"editor", "admin", "pruner", "cluster-admin", "pruner-jwt"})
TEAM_ADMIN = frozenset({"admin", "cluster-admin"})
OTHER_ADMIN = frozenset({"other-admin", "cluster-admin"})
CLUSTER_ADMIN = frozenset({"cluster-admin"})
# The Kubernetes-style API: each verb on each resource, as the roles grant it in namespace team.
STREAM_READ = frozenset({"viewer", "editor", "admin", "pruner", "cluster-admin"})
STREAM_UPDATE = frozenset({"editor", "admin", "pruner", "cluster-admin"})
NAMESPACE_READ = frozenset({"viewer", "editor", "admin", "cluster-admin"})
NAMESPACE_WRITE = frozenset({"editor", "admin", "cluster-admin"})
IMAGE_ADMIN = frozenset({"pruner", "cluster-admin"})
STREAM = f"{IMAGES}/namespaces/team/imagestreams"
TAGS = f"{IMAGES}/namespaces/team/imagestreamtags"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
SECRETS = "/api/v1/namespaces/team/secrets"
PODS = "/api/v1/namespaces/openshift-image-registry/pods"
SECRET_BODY = {
    "metadata": {"name": "pull"},
    "type": "kubernetes.io/dockerconfigjson",
    "stringData": {".dockerconfigjson": '{"auths": {"quay.io": {"auth": "dTpw"}}}'},
}
REVIEWS = "/apis/authorization.k8s.io/v1"
ENDPOINTS = "/apis/notifications.okura.io/v1/notificationendpoints"
ENDPOINT_BODY = {"metadata": {"name": "hook"}, "spec": {"url": "http://127.0.0.1:9/hook"}}


@dataclass(frozen=True)
class Case:
    """One request and the callers allowed to make it; `refused` overrides the expected refusal
    status of some callers (default: 401 for anonymous, 403 for everyone else)."""

    url: str
    allowed: frozenset[str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    refused: dict[str, int] = field(default_factory=dict)


def cases(*items: Case) -> list[Case]:
    return list(items)


def api(url: str, allowed: frozenset[str], **kw: Any) -> Case:
    """A request the Kubernetes-style API checks as a verb on a resource. A bearer JWT must carry
    the API scope (registry:api:*) for that: without it, a JWT of a subject the roles allow gets
    a 401 whose challenge asks for the scope (a new token would do), any other a 403."""
    return Case(url, allowed, refused={"pruner-jwt": 401} if "pruner" in allowed else {}, **kw)


def same_for_head(table: dict[tuple[str, str], list[Case]]) -> dict[tuple[str, str], list[Case]]:
    """Starlette answers HEAD on every GET route; so must the access check, with the same rule."""
    return {**table, **{("HEAD", path): c for (method, path), c in table.items() if method == "GET"}}


# (method, route path) -> the requests made on it. Keys must match the app's routes exactly.
ROUTES: dict[tuple[str, str], list[Case]] = same_for_head(
    {
        ("GET", "/v2/"): cases(Case("/v2/", AUTHENTICATED)),
        ("GET", "/v2"): cases(Case("/v2", AUTHENTICATED)),
        ("GET", "/v2/_catalog"): cases(Case("/v2/_catalog", AUTHENTICATED)),
        ("GET", "/v2/{name:path}/tags/list"): cases(Case("/v2/team/app/tags/list", PULL)),
        ("GET", "/v2/{name:path}/referrers/{digest}"): cases(Case(f"/v2/team/app/referrers/{ZERO}", PULL)),
        ("GET", "/v2/{name:path}/manifests/{reference}"): cases(Case("/v2/team/app/manifests/v1", PULL)),
        ("PUT", "/v2/{name:path}/manifests/{reference}"): cases(
            Case("/v2/team/app/manifests/v9", PUSH, content=b"{}", headers={"Content-Type": OCI_MANIFEST})
        ),
        ("DELETE", "/v2/{name:path}/manifests/{reference}"): cases(Case(f"/v2/team/app/manifests/{ZERO}", DELETE)),
        ("POST", "/v2/{name:path}/blobs/uploads/"): cases(Case("/v2/team/app/blobs/uploads/", PUSH)),
        ("POST", "/v2/{name:path}/blobs/uploads"): cases(Case("/v2/team/app/blobs/uploads", PUSH)),
        ("GET", "/v2/{name:path}/blobs/uploads/{uuid}"): cases(Case(f"/v2/team/app/blobs/uploads/{UPLOAD}", PUSH)),
        ("PATCH", "/v2/{name:path}/blobs/uploads/{uuid}"): cases(
            Case(f"/v2/team/app/blobs/uploads/{UPLOAD}", PUSH, content=b"data")
        ),
        ("PUT", "/v2/{name:path}/blobs/uploads/{uuid}"): cases(
            Case(f"/v2/team/app/blobs/uploads/{UPLOAD}?digest={ZERO}", PUSH)
        ),
        ("DELETE", "/v2/{name:path}/blobs/uploads/{uuid}"): cases(Case(f"/v2/team/app/blobs/uploads/{UPLOAD}", PUSH)),
        ("GET", "/v2/{name:path}/blobs/{digest}"): cases(Case(f"/v2/team/app/blobs/{ZERO}", PULL)),
        ("DELETE", "/v2/{name:path}/blobs/{digest}"): cases(Case(f"/v2/team/app/blobs/{ZERO}", DELETE)),
        ("GET", "/healthz"): cases(Case("/healthz", EVERYONE)),
        ("GET", "/livez"): cases(Case("/livez", EVERYONE)),
        ("GET", "/readyz"): cases(Case("/readyz", EVERYONE)),
        ("GET", "/metrics"): cases(Case("/metrics", CLUSTER_ADMIN)),
        ("GET", "/version"): cases(Case("/version", EVERYONE)),
        ("GET", "/api"): cases(Case("/api", AUTHENTICATED)),
        ("GET", "/api/v1"): cases(Case("/api/v1", AUTHENTICATED)),
        ("GET", "/apis"): cases(Case("/apis", AUTHENTICATED)),
        ("GET", "/apis/{group}"): cases(Case("/apis/image.openshift.io", AUTHENTICATED)),
        ("GET", "/apis/{group}/{version}"): cases(Case(IMAGES, AUTHENTICATED)),
        ("GET", "/openapi/v3"): cases(Case("/openapi/v3", AUTHENTICATED)),
        ("GET", "/openapi/v3/{path:path}"): cases(Case("/openapi/v3/apis/image.openshift.io/v1", AUTHENTICATED)),
        ("GET", "/api/v1/namespaces"): cases(Case("/api/v1/namespaces", AUTHENTICATED)),
        ("GET", "/api/v1/namespaces/{name}"): cases(api("/api/v1/namespaces/team", STREAM_READ)),
        # Pull secrets: the namespace's admins and cluster-admins only.
        ("GET", "/api/v1/namespaces/{namespace}/secrets"): cases(api(SECRETS, TEAM_ADMIN)),
        ("POST", "/api/v1/namespaces/{namespace}/secrets"): cases(api(SECRETS, TEAM_ADMIN, body=SECRET_BODY)),
        ("GET", "/api/v1/namespaces/{namespace}/secrets/{name}"): cases(api(f"{SECRETS}/pull", TEAM_ADMIN)),
        ("PUT", "/api/v1/namespaces/{namespace}/secrets/{name}"): cases(
            api(f"{SECRETS}/pull", TEAM_ADMIN, body=SECRET_BODY)
        ),
        ("PATCH", "/api/v1/namespaces/{namespace}/secrets/{name}"): cases(
            api(f"{SECRETS}/pull", TEAM_ADMIN, content=b"{}", headers=MERGE_PATCH)
        ),
        ("DELETE", "/api/v1/namespaces/{namespace}/secrets/{name}"): cases(api(f"{SECRETS}/pull", TEAM_ADMIN)),
        # The server processes (as OpenShift's registry pods) and their logs: cluster-admins only.
        ("GET", "/api/v1/pods"): cases(Case("/api/v1/pods", CLUSTER_ADMIN)),
        ("GET", "/api/v1/namespaces/{namespace}/pods"): cases(
            Case(PODS, CLUSTER_ADMIN), Case("/api/v1/namespaces/team/pods", CLUSTER_ADMIN)
        ),
        ("GET", "/api/v1/namespaces/{namespace}/pods/{name}"): cases(Case(f"{PODS}/replica-a", CLUSTER_ADMIN)),
        ("GET", "/api/v1/namespaces/{namespace}/pods/{name}/log"): cases(
            Case(f"{PODS}/replica-a/log", CLUSTER_ADMIN), Case(f"{PODS}/replica-a/log?tailLines=x", CLUSTER_ADMIN)
        ),
        # Lists across namespaces answer anyone, keeping the namespaces where the caller may list.
        ("GET", f"{IMAGES}/imagestreams"): cases(Case(f"{IMAGES}/imagestreams", AUTHENTICATED)),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreams"): cases(
            api(STREAM, STREAM_READ), api(f"{STREAM}?watch=true&timeoutSeconds=0", STREAM_READ)
        ),
        ("POST", f"{IMAGES}/namespaces/{{namespace}}/imagestreams"): cases(
            api(f"{STREAM}?dryRun=All", NAMESPACE_WRITE, body={"metadata": {"name": "new"}})
        ),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreams/{{name:path}}"): cases(
            api(f"{STREAM}/app", STREAM_READ)
        ),
        ("PUT", f"{IMAGES}/namespaces/{{namespace}}/imagestreams/{{name:path}}"): cases(
            api(f"{STREAM}/app?dryRun=All", STREAM_UPDATE, body={"metadata": {"name": "app"}})
        ),
        ("PATCH", f"{IMAGES}/namespaces/{{namespace}}/imagestreams/{{name:path}}"): cases(
            api(f"{STREAM}/app?dryRun=All", NAMESPACE_WRITE, content=b"{}", headers=MERGE_PATCH)
        ),
        ("DELETE", f"{IMAGES}/namespaces/{{namespace}}/imagestreams/{{name:path}}"): cases(
            api(f"{STREAM}/missing", NAMESPACE_WRITE)
        ),
        ("GET", f"{IMAGES}/imagestreamtags"): cases(Case(f"{IMAGES}/imagestreamtags", AUTHENTICATED)),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags"): cases(api(TAGS, NAMESPACE_READ)),
        ("POST", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags"): cases(
            api(f"{TAGS}?dryRun=All", NAMESPACE_WRITE, body={"metadata": {"name": "app:x"}})
        ),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags/{{name:path}}"): cases(
            api(f"{TAGS}/app:v1", NAMESPACE_READ)
        ),
        ("PUT", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags/{{name:path}}"): cases(
            api(f"{TAGS}/app:v1?dryRun=All", NAMESPACE_WRITE, body={"metadata": {"name": "app:v1"}})
        ),
        ("PATCH", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags/{{name:path}}"): cases(
            api(f"{TAGS}/app:v1?dryRun=All", NAMESPACE_WRITE, content=b"{}", headers=MERGE_PATCH)
        ),
        ("DELETE", f"{IMAGES}/namespaces/{{namespace}}/imagestreamtags/{{name:path}}"): cases(
            api(f"{TAGS}/app:missing", NAMESPACE_WRITE)
        ),
        ("POST", f"{IMAGES}/namespaces/{{namespace}}/imagestreamimports"): cases(
            # Invalid (no image, no repository) for those allowed: nothing is fetched
            api(f"{IMAGES}/namespaces/team/imagestreamimports", NAMESPACE_WRITE, body={"metadata": {"name": "app"}})
        ),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreamimages"): cases(
            api(f"{IMAGES}/namespaces/team/imagestreamimages", NAMESPACE_READ)  # then 405: get by name only
        ),
        ("GET", f"{IMAGES}/namespaces/{{namespace}}/imagestreamimages/{{name:path}}"): cases(
            api(f"{IMAGES}/namespaces/team/imagestreamimages/app@{ZERO}", NAMESPACE_READ)
        ),
        ("GET", f"{IMAGES}/images"): cases(api(f"{IMAGES}/images", IMAGE_ADMIN)),
        ("GET", f"{IMAGES}/images/{{digest}}"): cases(api(f"{IMAGES}/images/{ZERO}", IMAGE_ADMIN)),
        ("DELETE", f"{IMAGES}/images/{{digest}}"): cases(api(f"{IMAGES}/images/{ZERO}", IMAGE_ADMIN)),
        ("POST", f"{REVIEWS}/selfsubjectaccessreviews"): cases(
            Case(
                f"{REVIEWS}/selfsubjectaccessreviews",
                AUTHENTICATED,
                body={"spec": {"resourceAttributes": {"verb": "get", "resource": "imagestreams"}}},
            )
        ),
        ("POST", f"{REVIEWS}/selfsubjectrulesreviews"): cases(
            Case(f"{REVIEWS}/selfsubjectrulesreviews", AUTHENTICATED, body={"spec": {"namespace": "team"}})
        ),
        ("GET", "/apis/imageregistry.operator.openshift.io/v1/imagepruners"): cases(
            Case("/apis/imageregistry.operator.openshift.io/v1/imagepruners", CLUSTER_ADMIN)
        ),
        ("GET", PRUNER): cases(Case(PRUNER, CLUSTER_ADMIN)),
        ("PUT", PRUNER): cases(Case(PRUNER, CLUSTER_ADMIN, content=b"{", headers={"Content-Type": "application/json"})),
        ("PATCH", PRUNER): cases(
            Case(PRUNER, CLUSTER_ADMIN, content=b"{}", headers={"Content-Type": "application/merge-patch+json"})
        ),
        # The registry's Config: cluster-admins only (dry runs: read-only mode would refuse later cases).
        ("GET", CONFIGS): cases(
            Case(CONFIGS, CLUSTER_ADMIN), Case(f"{CONFIGS}?watch=true&timeoutSeconds=0", CLUSTER_ADMIN)
        ),
        ("GET", f"{CONFIGS}/{{name}}"): cases(Case(f"{CONFIGS}/cluster", CLUSTER_ADMIN)),
        ("PUT", f"{CONFIGS}/{{name}}"): cases(
            Case(f"{CONFIGS}/cluster?dryRun=All", CLUSTER_ADMIN, body={"spec": {"readOnly": True}})
        ),
        ("PATCH", f"{CONFIGS}/{{name}}"): cases(
            Case(
                f"{CONFIGS}/cluster?dryRun=All",
                CLUSTER_ADMIN,
                content=b'{"spec": {"readOnly": true}}',
                headers=MERGE_PATCH,
            )
        ),
        # Webhook endpoints: cluster-admins only (dry runs: nothing is made for the later cases).
        ("GET", ENDPOINTS): cases(
            Case(ENDPOINTS, CLUSTER_ADMIN), Case(f"{ENDPOINTS}?watch=true&timeoutSeconds=0", CLUSTER_ADMIN)
        ),
        ("POST", ENDPOINTS): cases(Case(f"{ENDPOINTS}?dryRun=All", CLUSTER_ADMIN, body=ENDPOINT_BODY)),
        ("GET", f"{ENDPOINTS}/{{name}}"): cases(Case(f"{ENDPOINTS}/hook", CLUSTER_ADMIN)),
        ("PUT", f"{ENDPOINTS}/{{name}}"): cases(
            Case(f"{ENDPOINTS}/hook?dryRun=All", CLUSTER_ADMIN, body=ENDPOINT_BODY)
        ),
        ("PATCH", f"{ENDPOINTS}/{{name}}"): cases(
            Case(f"{ENDPOINTS}/hook?dryRun=All", CLUSTER_ADMIN, content=b"{}", headers=MERGE_PATCH)
        ),
        ("DELETE", f"{ENDPOINTS}/{{name}}"): cases(Case(f"{ENDPOINTS}/hook?dryRun=All", CLUSTER_ADMIN)),
        # The token endpoint is open, but a bearer JWT is never exchanged for another one.
        ("GET", "/openshift/token"): cases(
            Case("/openshift/token", EVERYONE - {"pruner-jwt"}, refused={"pruner-jwt": 401})
        ),
        ("GET", f"{ADMIN}/users"): cases(Case(f"{ADMIN}/users", CLUSTER_ADMIN)),
        ("POST", f"{ADMIN}/users"): cases(Case(f"{ADMIN}/users", CLUSTER_ADMIN, body={"name": "walker"})),
        ("GET", f"{ADMIN}/serviceaccounts"): cases(Case(f"{ADMIN}/serviceaccounts", CLUSTER_ADMIN)),
        ("POST", f"{ADMIN}/serviceaccounts"): cases(
            Case(f"{ADMIN}/serviceaccounts", CLUSTER_ADMIN, body={"name": "team/walker"})
        ),
        ("GET", f"{ADMIN}/tokens"): cases(Case(f"{ADMIN}/tokens", CLUSTER_ADMIN)),
        ("POST", f"{ADMIN}/tokens"): cases(Case(f"{ADMIN}/tokens", CLUSTER_ADMIN, body={"subject": "viewer"})),
        ("DELETE", f"{ADMIN}/tokens/{{token_id}}"): cases(Case(f"{ADMIN}/tokens/0123456789abcdef", CLUSTER_ADMIN)),
        ("GET", f"{ADMIN}/rolebindings"): cases(
            Case(f"{ADMIN}/rolebindings", CLUSTER_ADMIN),
            Case(f"{ADMIN}/rolebindings?namespace=team", TEAM_ADMIN),
            Case(f"{ADMIN}/rolebindings?namespace=other", OTHER_ADMIN),
        ),
        ("POST", f"{ADMIN}/rolebindings"): cases(
            Case(f"{ADMIN}/rolebindings", CLUSTER_ADMIN, body={"role": "cluster-admin", "subject": "p"}),
            Case(f"{ADMIN}/rolebindings", CLUSTER_ADMIN, body={"role": "registry-viewer", "subject": "p"}),
            Case(
                f"{ADMIN}/rolebindings",
                CLUSTER_ADMIN,
                body={"role": "cluster-admin", "subject": "p", "namespace": "team"},
            ),
            Case(
                f"{ADMIN}/rolebindings",
                TEAM_ADMIN,
                body={"role": "registry-editor", "subject": "p", "namespace": "team"},
            ),
            Case(f"{ADMIN}/rolebindings", TEAM_ADMIN, body={"role": "admin", "subject": "p", "namespace": "team"}),
            Case(
                f"{ADMIN}/rolebindings",
                OTHER_ADMIN,
                body={"role": "registry-viewer", "subject": "p", "namespace": "other"},
            ),
        ),
        ("DELETE", f"{ADMIN}/rolebindings"): cases(
            Case(f"{ADMIN}/rolebindings", CLUSTER_ADMIN, body={"role": "registry-viewer", "subject": "q"}),
            Case(
                f"{ADMIN}/rolebindings",
                TEAM_ADMIN,
                body={"role": "registry-viewer", "subject": "q", "namespace": "team"},
            ),
            Case(
                f"{ADMIN}/rolebindings",
                OTHER_ADMIN,
                body={"role": "registry-viewer", "subject": "q", "namespace": "other"},
            ),
        ),
        ("GET", f"{ADMIN}/can-i"): cases(
            Case(f"{ADMIN}/can-i?verb=get&resource=imagestreams/layers&namespace=team&as=viewer", CLUSTER_ADMIN)
        ),
        ("GET", f"{ADMIN}/who-can"): cases(
            Case(f"{ADMIN}/who-can?verb=get&resource=imagestreams/layers&namespace=team", CLUSTER_ADMIN)
        ),
    }
)


@pytest_asyncio.fixture
async def callers(auth_app, accounts: Accounts, connect: Connect, root) -> dict[str, httpx.AsyncClient]:
    """A client per caller, with static tokens; the pruner's JWT carries every scope it could ever be
    granted, registry:admin:* included (as the token endpoint once granted it)."""
    await push_image(root, "team/app", "v1")
    await push_image(root, "other/app", "v1")
    people = {
        "viewer": await accounts.user("viewer", ("registry-viewer", "team")),
        "editor": await accounts.user("editor", ("registry-editor", "team")),
        "admin": await accounts.user("admin", ("admin", "team")),
        "other-admin": await accounts.user("other-admin", ("admin", "other")),
        "pruner": await accounts.user("pruner", ("system:image-pruner", None)),
        "cluster-admin": await accounts.user("chief", ("cluster-admin", None)),
    }
    clients = {name: connect(auth_app, headers={"Authorization": f"Bearer {p.token}"}) for name, p in people.items()}
    clients["anonymous"] = connect(auth_app)
    scopes = [
        "repository:team/app:pull,push,delete,*",
        "registry:catalog:*",
        "registry:metrics:get",
        "registry:imagepruners:get,*",
    ]
    controller = accounts.controller
    grants = await controller.grants_for(identity_for("pruner"), scopes)
    token, _, _ = await controller.issuer.mint("pruner", [*grants, Grant("registry", "admin", ("*",))])
    clients["pruner-jwt"] = connect(auth_app, headers={"Authorization": f"Bearer {token}"})
    return clients


def app_routes(app: Any) -> set[tuple[str, str]]:
    while not hasattr(app, "routes"):  # through the middleware to the Starlette app
        app = app.app
    return {(method, route.path) for route in app.routes for method in route.methods}


async def test_the_table_covers_every_route_and_method(auth_app):
    assert app_routes(auth_app) == set(ROUTES), "add the new routes or methods to ROUTES with who may call them"


async def test_who_may_call_each_route(auth_app, callers):
    assert app_routes(auth_app) == set(ROUTES)
    wrong = []
    for (method, _path), route_cases in ROUTES.items():
        for case in route_cases:
            for caller in CALLERS:
                client = callers[caller]
                r = await client.request(
                    method, case.url, json=case.body, content=case.content, headers=case.headers or None
                )
                assert r.status_code < 500, (caller, method, case.url, r.text)
                if caller in case.allowed:
                    ok = r.status_code not in (401, 403)
                else:
                    ok = r.status_code == case.refused.get(caller, 401 if caller == "anonymous" else 403)
                if not ok:
                    expected = "allowed" if caller in case.allowed else "refused"
                    body = case.body if case.body is not None else ""
                    wrong.append(f"{caller:>13} {method} {case.url} {body}: {r.status_code}, expected {expected}")
    assert not wrong, "\n" + "\n".join(wrong)
