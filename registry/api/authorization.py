"""POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews: may I? (`kubectl auth can-i`),
and .../selfsubjectrulesreviews: what may I do here? (`kubectl auth can-i --list`). Both are
answered by the same authorizer that checks every request, so `okura auth can-i` agrees."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Check
from auth.roles import RESOURCES, VERBS
from registry.api import kubeapi
from registry.api.routing import RouteSpec, access_controller, no_access
from registry.errors import RequestInvalid
from registry.kube.authorization_v1 import (
    API_VERSION,
    COMPONENTS,
    SELF_SUBJECT_ACCESS_REVIEWS,
    SELF_SUBJECT_RULES_REVIEWS,
)

GROUPS = (
    "",
    "image.openshift.io",
    "imageregistry.operator.openshift.io",
    "rbac.authorization.k8s.io",
    "notifications.okura.io",
)
# What `kubectl auth can-i --list` shows: each resource with the API group it is served in.
LISTED = (
    *((r, "image.openshift.io") for r in ("imagestreams", "imagestreamtags", "imagestreamimages", "images")),
    ("imagestreams/layers", "image.openshift.io"),
    ("imagestreamimports", "image.openshift.io"),
    ("secrets", ""),
    ("imagepruners", "imageregistry.operator.openshift.io"),
    ("configs", "imageregistry.operator.openshift.io"),
    ("notificationendpoints", "notifications.okura.io"),
    ("pods", ""),
    ("pods/log", ""),
    ("rolebindings", "rbac.authorization.k8s.io"),
)


def _checks(attributes: dict[str, Any]) -> tuple[list[Check], str]:
    """The checks a review asks about, or none and why."""
    group = attributes.get("group") or ""
    resource = attributes.get("resource") or ""
    subresource = attributes.get("subresource") or ""
    key = f"{resource}/{subresource}" if subresource else resource
    verb = attributes.get("verb") or ""
    namespace = attributes.get("namespace") or None
    if group not in GROUPS or key not in RESOURCES:
        return [], f"this server has no resource {key or '(none)'} in group {group or 'core'}"
    if verb != "*" and verb not in VERBS:
        return [], f"unknown verb {verb!r}"
    verbs = VERBS if verb == "*" else (verb,)
    return [Check(v, key, namespace) for v in verbs], ""


async def review(request: Request) -> Response:
    obj, _ = await kubeapi.read_object(request, SELF_SUBJECT_ACCESS_REVIEWS, COMPONENTS)
    spec = obj.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    if not isinstance(attributes, dict):
        if spec.get("nonResourceAttributes"):
            status = {"allowed": False, "reason": "no non-resource URLs are authorized here"}
            return kubeapi.respond(request, _answer(obj, status), 201)
        raise RequestInvalid("spec.resourceAttributes is required")
    checks, why = _checks(attributes)
    access, identity = access_controller(request), request.state.identity
    allowed = bool(checks) and all([await access.allowed(identity, c) for c in checks])
    status: dict[str, Any] = {"allowed": allowed}
    if why:
        status["reason"] = why
    elif allowed:
        status["reason"] = f"allowed for {identity.name} by its role bindings"
    return kubeapi.respond(request, _answer(obj, status), 201)


async def rules(request: Request) -> Response:
    obj, _ = await kubeapi.read_object(request, SELF_SUBJECT_RULES_REVIEWS, COMPONENTS)
    namespace = (obj.get("spec") or {}).get("namespace") or None
    access, identity = access_controller(request), request.state.identity
    resource_rules = [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"]},
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectrulesreviews"]},
    ]
    for resource, group in LISTED:
        verbs = [v for v in VERBS if await access.allowed(identity, Check(v, resource, namespace))]
        if verbs:
            resource_rules.append({"verbs": verbs, "apiGroups": [group], "resources": [resource]})
    status = {"resourceRules": resource_rules, "nonResourceRules": [], "incomplete": False}
    return kubeapi.respond(request, _answer(obj, status, "SelfSubjectRulesReview"), 201)


def _answer(obj: dict[str, Any], status: dict[str, Any], kind: str = "SelfSubjectAccessReview") -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": API_VERSION,
        "metadata": {"creationTimestamp": None},
        "spec": obj.get("spec") or {},
        "status": status,
    }


ROUTES = [
    RouteSpec(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "selfsubjectaccessreviews",
        {"POST": (review, no_access)},
    ),
    RouteSpec(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        "selfsubjectrulesreviews",
        {"POST": (rules, no_access)},
    ),
]
