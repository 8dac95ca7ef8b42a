"""The core group's v1 as far as the registry serves it: Namespace, read-only. A namespace
exists while it holds image streams (as OpenShift's projects hold them)."""

from __future__ import annotations

from registry.kube.meta import META, list_schema
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, obj, ref, string

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

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.Namespace": NAMESPACE,
    f"{PREFIX}.NamespaceList": list_schema(f"{PREFIX}.Namespace", "Namespace"),
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
RESOURCES = (NAMESPACES,)
