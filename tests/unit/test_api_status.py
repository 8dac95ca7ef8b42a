"""Errors under /apis/ render as Kubernetes Status objects (reason per HTTP status, details naming
the resource, headers kept); everywhere else they stay in the OCI envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from registry.api.errors import render
from registry.api.objects import short_age
from registry.errors import (
    Denied,
    ManifestUnknown,
    RegistryError,
    RequestInvalid,
    ResourceConflict,
    ResourceInvalid,
    ResourceNotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unsupported,
)

PRUNER = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster"
STREAM = "/apis/image.openshift.io/v1/namespaces/team/imagestreams/app"


def request(path: str, method: str = "GET") -> Request:
    return Request({"type": "http", "method": method, "path": path, "headers": [], "query_string": b""})


def rendered(path: str, error: RegistryError, method: str = "GET") -> tuple[int, dict, dict]:
    response = render(request(path, method), error)
    body = json.loads(response.body) if response.body else {}
    return response.status_code, dict(response.headers), body


def internal() -> RegistryError:
    return RegistryError("internal server error")


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (RequestInvalid("bad"), 400, "BadRequest"),
        (Unauthorized(), 401, "Unauthorized"),
        (Denied("bob cannot get it"), 403, "Forbidden"),
        (ResourceNotFound("imagepruners", "imageregistry.operator.openshift.io", "cluster"), 404, "NotFound"),
        (Unsupported("no"), 405, "MethodNotAllowed"),
        (ResourceConflict("changed", kind="imagepruners", group="g", name="cluster"), 409, "Conflict"),
        (ResourceInvalid("invalid", kind="imagepruners", group="g", name="cluster"), 422, "Invalid"),
        (TooManyRequests(), 429, "TooManyRequests"),
        (internal(), 500, "InternalError"),
        (Unavailable(), 503, "ServiceUnavailable"),
    ],
)
def test_reason_follows_the_status(error, code, reason):
    status, headers, body = rendered(PRUNER, error)
    assert status == code
    assert headers["content-type"] == "application/json"
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["metadata"] == {}
    assert body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason)
    assert body["message"]


def test_not_found_names_the_resource():
    _, _, body = rendered(PRUNER, ResourceNotFound("imagepruners", "imageregistry.operator.openshift.io", "x"))
    assert body["message"] == 'imagepruners.imageregistry.operator.openshift.io "x" not found'
    assert body["details"] == {"name": "x", "group": "imageregistry.operator.openshift.io", "kind": "imagepruners"}


def test_invalid_carries_its_causes():
    causes = [{"reason": "FieldValueInvalid", "message": "must be >= 0", "field": "spec.keepTagRevisions"}]
    error = ResourceInvalid(
        'imagepruners "cluster" is invalid', kind="imagepruners", group="g", name="cluster", causes=causes
    )
    _, _, body = rendered(PRUNER, error)
    assert body["details"] == {"name": "cluster", "group": "g", "kind": "imagepruners", "causes": causes}


def test_forbidden_says_what_is_forbidden_as_the_api_server_does():
    _, _, body = rendered(STREAM, Denied("bob cannot get imagestreams/layers in namespace team"))
    assert body["message"] == (
        'imagestreams.image.openshift.io "app" is forbidden: bob cannot get imagestreams/layers in namespace team'
    )
    assert body["details"] == {"name": "app", "group": "image.openshift.io", "kind": "imagestreams"}
    _, _, body = rendered("/apis/image.openshift.io/v1/imagestreams", Denied("no"))
    assert body["message"] == "imagestreams.image.openshift.io is forbidden: no"
    assert body["details"] == {"group": "image.openshift.io", "kind": "imagestreams"}


def test_headers_are_kept_and_retry_after_is_a_detail():
    status, headers, body = rendered(STREAM, Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="r"'}))
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="r"'
    assert body["details"] == {}
    _, headers, body = rendered(STREAM, Unavailable("later", headers={"Retry-After": "5"}))
    assert headers["retry-after"] == "5" and body["details"] == {"retryAfterSeconds": 5}


def test_head_has_no_body():
    status, headers, body = rendered(STREAM, Denied("no"), method="HEAD")
    assert status == 403 and body == {} and int(headers["content-length"]) > 0


def test_other_paths_keep_the_oci_envelope():
    for path in ("/v2/team/app/manifests/v1", "/apisx", "/healthz"):
        status, _, body = rendered(path, ManifestUnknown(detail={"reference": "v1"}))
        assert status == 404
        assert body == {
            "errors": [
                {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown to registry", "detail": {"reference": "v1"}}
            ]
        }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (200, "3m20s"), (600, "10m"), (3 * 3600, "3h"),
     (5 * 3600 + 60, "5h1m"), (47 * 3600, "47h"), (49 * 3600, "2d1h"), (8 * 86400, "8d"), (800 * 86400, "2y")],
)  # fmt: skip
def test_short_age_reads_as_kubectl_prints_it(seconds, shown):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert short_age(now - timedelta(seconds=seconds), now) == shown
