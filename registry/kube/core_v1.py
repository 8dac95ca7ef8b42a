"""The core group's v1 as far as the registry serves it: Namespace, read-only (a namespace
exists while it holds image streams, as OpenShift's projects hold them), and Secret of the
docker config types (pull secrets for imports)."""

from __future__ import annotations

from registry.kube.meta import META, list_schema
from registry.kube.protobuf import OBJECT_META, Message
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, obj, ref, string, string_map

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

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.Namespace": NAMESPACE,
    f"{PREFIX}.NamespaceList": list_schema(f"{PREFIX}.Namespace", "Namespace"),
    f"{PREFIX}.Secret": SECRET,
    f"{PREFIX}.SecretList": list_schema(f"{PREFIX}.Secret", "Secret"),
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
RESOURCES = (NAMESPACES, SECRETS)
