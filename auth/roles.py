"""Built-in roles, named and scoped as in OpenShift. A rule grants verbs on resources;
a binding grants a role to a subject in one namespace or cluster-wide."""

from __future__ import annotations

from dataclasses import dataclass

# What the registry checks (OpenShift's SubjectAccessReview attributes, image.openshift.io):
#   pull   -> get    imagestreams/layers        push -> update imagestreams/layers
#   new repository -> create imagestreams       delete manifests/tags/blobs -> delete images
#   catalog of everything -> list imagestreams (cluster)   metrics -> get registry/metrics
#   the ImagePruner resource -> get/update imagepruners (cluster; only cluster-admin has it)
#   the registry's Config resource -> get/update configs (cluster; only cluster-admin has it)
#   webhook endpoints -> every verb on notificationendpoints (cluster; only cluster-admin has it)
#   the server processes (pods, as OpenShift's registry pods) and their logs -> get/list pods and
#   get pods/log (namespace openshift-image-registry, checked cluster-wide; only cluster-admin has it)
# and the access-management API (/admin/v1), each operation its own verb and resource as
# Kubernetes RBAC has them: create/get/list/delete users, serviceaccounts, tokens (cluster)
# and rolebindings (in the binding's namespace), create subjectaccessreviews (can-i, who-can).
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
RESOURCES = (
    "imagestreams",
    "imagestreams/layers",
    "imagestreamtags",
    "imagestreamimages",
    "imagestreamimports",
    "images",
    "rolebindings",
    "registry/metrics",
    "users",
    "serviceaccounts",
    "tokens",
    "subjectaccessreviews",
    "imagepruners",
    "configs",
    "secrets",
    "notificationendpoints",
    "pods",
    "pods/log",
)
# Every operation of the access-management API, as (verb, resource); a bearer JWT carries the
# API's scope (registry:admin:*) only for callers allowed all of them cluster-wide.
ADMIN_OPERATIONS = (
    *(
        (verb, resource)
        for resource in ("users", "serviceaccounts", "tokens", "rolebindings")
        for verb in ("create", "get", "list", "delete")
    ),
    ("create", "subjectaccessreviews"),
)


@dataclass(frozen=True)
class Role:
    name: str
    rules: tuple[tuple[frozenset[str], frozenset[str]], ...]  # (verbs, resources)
    description: str = ""

    def allows(self, verb: str, resource: str) -> bool:
        return any(verb in verbs and resource in resources for verbs, resources in self.rules)


def _rule(verbs: str, resources: str) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(verbs.split()), frozenset(resources.split())


ALL_VERBS = " ".join(VERBS)

READ = "get list watch"
WRITE = "create update patch delete"
STREAMS = "imagestreams imagestreamtags imagestreamimages"

ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            "registry-viewer",
            (
                _rule("get", "imagestreams/layers"),
                _rule(READ, STREAMS),
                _rule("get list", "images"),
            ),
            description="pull images and read image streams (system:image-puller)",
        ),
        Role(
            "registry-editor",
            (
                _rule("get update", "imagestreams/layers"),
                _rule(f"{READ} {WRITE}", STREAMS),
                _rule("create", "imagestreamimports"),  # import images from other registries
                # OpenShift's registry-editor may delete image stream tags in its namespace;
                # here that is deleting tags, manifests and blob links (so an editor's
                # credentials pass the OCI conformance suite's content-management workflow).
                _rule("get list delete", "images"),
            ),
            description="pull, push, tag and delete images in a namespace (system:image-pusher)",
        ),
        Role(
            "admin",
            (_rule(ALL_VERBS, f"{STREAMS} imagestreamimports imagestreams/layers images rolebindings secrets"),),
            description="everything in a namespace, including deletes and role bindings",
        ),
        Role(
            "system:image-pruner",
            (
                _rule("get list watch delete", "images"),
                _rule("get list watch update", "imagestreams"),
                _rule("get", "imagestreams/layers"),
            ),
            description="prune images and image streams",
        ),
        Role("cluster-admin", (_rule(ALL_VERBS, " ".join(RESOURCES)),), description="everything, everywhere"),
    )
}
# kubectl's spellings of the resources: short names, singular and Kind names, and names
# qualified by their API group.
SHORT_NAMES = {"is": "imagestreams", "istag": "imagestreamtags", "isimage": "imagestreamimages"}
GROUPS = {
    "image.openshift.io": ("imagestreams", "imagestreamtags", "imagestreamimages", "imagestreamimports", "images"),
    "imageregistry.operator.openshift.io": ("imagepruners", "configs"),
    "notifications.okura.io": ("notificationendpoints",),
    "rbac.authorization.k8s.io": ("rolebindings",),
    "authorization.k8s.io": ("subjectaccessreviews",),
}


def resolve_resource(text: str) -> str:
    """`is`, `imagestreams.image.openshift.io`, `imagestreams.image.openshift.io/layers` ->
    the resource a check names; KeyError for one the registry does not know."""
    name, slash, sub = text.partition("/")
    base, dot, group = name.partition(".")
    base = SHORT_NAMES.get(base.lower(), base.lower())
    if base not in GROUPS.get(group, RESOURCES) and f"{base}s" in RESOURCES:
        base += "s"  # a singular or a Kind: imagestream, ImageStream
    if dot and base not in GROUPS.get(group, ()):
        raise KeyError(f"no resource {name!r}")
    resource = f"{base}{slash}{sub}"
    if resource not in RESOURCES:
        raise KeyError(f"unknown resource {text!r} (known: {', '.join([*RESOURCES, *SHORT_NAMES])})")
    return resource


# OpenShift's names for the same roles.
ALIASES = {"system:image-puller": "registry-viewer", "system:image-pusher": "registry-editor"}


def resolve_role(name: str) -> Role:
    role = ROLES.get(ALIASES.get(name, name))
    if role is None:
        raise KeyError(f"unknown role {name!r} (known: {', '.join([*ROLES, *ALIASES])})")
    return role
