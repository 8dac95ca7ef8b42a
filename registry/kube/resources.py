"""What the API serves: each resource's group, version, kind, names, verbs, schema and
table columns, from which discovery, OpenAPI documents and tables are built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "update", "patch", "delete")


@dataclass(frozen=True)
class Column:
    """A column of `kubectl get` (a Table column definition)."""

    name: str
    type: str = "string"
    description: str = ""
    format: str = ""
    priority: int = 0  # 1: shown with -o wide only


@dataclass(frozen=True)
class ResourceDef:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...]
    schema: str  # the name of its component schema
    short_names: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    description: str = ""
    # Fields of the object that selectors may name (besides metadata.name and .namespace).
    field_labels: tuple[str, ...] = field(default=())
    # The protobuf message of a type client-go sends as protobuf (registry.kube.protobuf).
    protobuf: Any = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def gvk(self) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "kind": self.kind}

    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None) -> str:
        where = f"/namespaces/{namespace}" if self.namespaced and namespace is not None else ""
        return f"{self.base_path()}{where}/{self.plural}"

    def qualified(self) -> str:
        """`imagestreams.image.openshift.io`, as messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry
