"""authorization.k8s.io/v1: SelfSubjectAccessReview (`kubectl auth can-i VERB RESOURCE`) and
SelfSubjectRulesReview (`kubectl auth can-i --list`). client-go sends both as protobuf."""

from __future__ import annotations

from registry.kube.meta import META
from registry.kube.protobuf import Message
from registry.kube.resources import ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, obj, ref, string

GROUP = "authorization.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = "io.k8s.api.authorization.v1"

RESOURCE_ATTRIBUTES: Schema = obj(
    {
        "namespace": string(),
        "verb": string(),
        "group": string(),
        "version": string(),
        "resource": string(),
        "subresource": string(),
        "name": string(),
        "fieldSelector": free_form(),
        "labelSelector": free_form(),
    }
)

SELF_SUBJECT_ACCESS_REVIEW: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": ref(f"{META}.ObjectMeta"),
        "spec": obj(
            {
                "resourceAttributes": RESOURCE_ATTRIBUTES,
                "nonResourceAttributes": obj({"path": string(), "verb": string()}),
            }
        ),
        "status": obj({"allowed": boolean(), "denied": boolean(), "reason": string(), "evaluationError": string()}),
    },
    "Asks whether the caller may do something.",
)

_STRINGS = array(string())
SELF_SUBJECT_RULES_REVIEW: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": ref(f"{META}.ObjectMeta"),
        "spec": obj({"namespace": string()}),
        "status": obj(
            {
                "resourceRules": array(
                    obj({"verbs": _STRINGS, "apiGroups": _STRINGS, "resources": _STRINGS, "resourceNames": _STRINGS})
                ),
                "nonResourceRules": array(obj({"verbs": _STRINGS, "nonResourceURLs": _STRINGS})),
                "incomplete": boolean(),
                "evaluationError": string(),
            }
        ),
    },
    "Lists what the caller may do in a namespace.",
)

# k8s.io/api/authorization/v1/generated.proto
_SSAR_PROTO: Message = {
    2: (
        "spec",
        {
            1: (
                "resourceAttributes",
                {
                    1: ("namespace", "string"),
                    2: ("verb", "string"),
                    3: ("group", "string"),
                    4: ("version", "string"),
                    5: ("resource", "string"),
                    6: ("subresource", "string"),
                    7: ("name", "string"),
                },
            ),
            2: ("nonResourceAttributes", {1: ("path", "string"), 2: ("verb", "string")}),
        },
    )
}
_SSRR_PROTO: Message = {2: ("spec", {1: ("namespace", "string")})}

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.SelfSubjectAccessReview": SELF_SUBJECT_ACCESS_REVIEW,
    f"{PREFIX}.SelfSubjectRulesReview": SELF_SUBJECT_RULES_REVIEW,
}

SELF_SUBJECT_ACCESS_REVIEWS = ResourceDef(
    GROUP,
    VERSION,
    "SelfSubjectAccessReview",
    "selfsubjectaccessreviews",
    namespaced=False,
    verbs=("create",),
    schema=f"{PREFIX}.SelfSubjectAccessReview",
    protobuf=_SSAR_PROTO,
)
SELF_SUBJECT_RULES_REVIEWS = ResourceDef(
    GROUP,
    VERSION,
    "SelfSubjectRulesReview",
    "selfsubjectrulesreviews",
    namespaced=False,
    verbs=("create",),
    schema=f"{PREFIX}.SelfSubjectRulesReview",
    protobuf=_SSRR_PROTO,
)
AUTHORIZATION_RESOURCES = (SELF_SUBJECT_ACCESS_REVIEWS, SELF_SUBJECT_RULES_REVIEWS)
