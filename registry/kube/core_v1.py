"""The core group's v1 as far as the registry serves it: Namespace, read-only (a namespace
exists while it holds image streams, as OpenShift's projects hold them), Secret of the
docker config types (pull secrets for imports), and Pod, read-only: the registry's server
processes, as OpenShift's registry pods in openshift-image-registry (and their logs)."""

from __future__ import annotations

from registry.kube.meta import META, list_schema
from registry.kube.protobuf import OBJECT_META, Message
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

PREFIX = "io.k8s.api.core.v1"

NAMESPACE: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": ref(f"{META}.ObjectMeta"),
        "spec": obj({"finalizers": array(string())}),
        "status": obj({"phase": string("Active.")}),
    },
    "A namespace of image streams.",
)

SECRET: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": ref(f"{META}.ObjectMeta"),
        "type": string(
            "kubernetes.io/dockerconfigjson (data key .dockerconfigjson) or kubernetes.io/dockercfg (.dockercfg).",
            enum=("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"),
        ),
        "data": string_map("The data, each value base64."),
        "stringData": string_map("Write-only data in plain text, merged over data."),
        "immutable": boolean("Ignored."),
    },
    "A pull secret: credentials for other registries, sealed at rest.",
)

_TIME = "date-time"
POD_CONDITION: Schema = obj(
    {
        "type": string("Ready."),
        "status": string("True or False.", enum=("True", "False", "Unknown")),
        "reason": string("Why it is not ready."),
        "message": string(),
        "lastProbeTime": string(fmt=_TIME),
        "lastTransitionTime": string(fmt=_TIME),
    },
    "A condition of the server.",
)
CONTAINER_STATUS: Schema = obj(
    {
        "name": string("registry."),
        "ready": boolean("Its database and storage answer and it is not draining."),
        "started": boolean(),
        "restartCount": integer("How many times a server of this name started again."),
        "image": string("okura:VERSION."),
        "imageID": string(),
        "state": free_form("running: {startedAt}."),
    },
    "The status of the server's one container.",
)
POD: Schema = obj(
    {
        "kind": string(),
        "apiVersion": string(),
        "metadata": ref(f"{META}.ObjectMeta"),
        "spec": obj(
            {
                "containers": array(obj({"name": string(), "image": string()}), "The one container, registry."),
                "nodeName": string("The host the server runs on."),
            }
        ),
        "status": obj(
            {
                "phase": string("Running, or Unknown when it stopped reporting.", enum=("Running", "Unknown")),
                "conditions": array(POD_CONDITION),
                "podIP": string("The host of the address it listens on."),
                "startTime": string(fmt=_TIME),
                "containerStatuses": array(CONTAINER_STATUS),
            }
        ),
    },
    "A registry server process (a replica), as OpenShift's registry pods.",
)

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.Namespace": NAMESPACE,
    f"{PREFIX}.NamespaceList": list_schema(f"{PREFIX}.Namespace", "Namespace"),
    f"{PREFIX}.Secret": SECRET,
    f"{PREFIX}.SecretList": list_schema(f"{PREFIX}.Secret", "Secret"),
    f"{PREFIX}.Pod": POD,
    f"{PREFIX}.PodList": list_schema(f"{PREFIX}.Pod", "Pod"),
}

NAMESPACES = ResourceDef(
    "",
    "v1",
    "Namespace",
    "namespaces",
    namespaced=False,
    verbs=("get", "list"),
    schema=f"{PREFIX}.Namespace",
    short_names=("ns",),
    columns=(
        Column("Name", format="name", description="The namespace"),
        Column("Status", description="Active"),
        Column("Age", description="Since its first image stream"),
    ),
)
# k8s.io/api/core/v1/generated.proto: kubectl create secret sends Secrets as protobuf.
_SECRET_PROTO: Message = {
    1: ("metadata", OBJECT_META),
    2: ("data", "map:base64"),
    3: ("type", "string"),
    4: ("stringData", "map:string"),
    5: ("immutable", "bool"),
}

SECRETS = ResourceDef(
    "",
    "v1",
    "Secret",
    "secrets",
    namespaced=True,
    verbs=("get", "list", "create", "update", "patch", "delete"),
    schema=f"{PREFIX}.Secret",
    protobuf=_SECRET_PROTO,
    columns=(
        Column("Name", format="name", description="The secret"),
        Column("Type", description="Its type"),
        Column("Data", type="integer", description="How many data keys"),
        Column("Age", description="Since it was made"),
    ),
)

PODS = ResourceDef(
    "",
    "v1",
    "Pod",
    "pods",
    namespaced=True,
    verbs=("get", "list"),
    schema=f"{PREFIX}.Pod",
    short_names=("po",),
    categories=("all",),
    columns=(
        Column("Name", format="name", description="The server's instance name"),
        Column("Ready", description="Ready containers / containers"),
        Column("Status", description="Running, NotReady, Terminating or Unknown (no heartbeat)"),
        Column("Restarts", type="integer", description="How many times it started again"),
        Column("Age", description="Since it started"),
        Column("IP", description="The host of the address it listens on", priority=1),
        Column("Node", description="The host it runs on", priority=1),
    ),
)
RESOURCES = (NAMESPACES, SECRETS, PODS)
# Subresources, listed in discovery after the resources (kubectl logs reads pods/log).
SUBRESOURCES = ({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},)
