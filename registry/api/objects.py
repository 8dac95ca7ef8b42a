"""The model's image streams, tags and images as image.openshift.io/v1 objects, and objects
sent by clients back into the model's terms (with every invalid field named)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from registry.errors import ResourceInvalid
from registry.kube import image_v1
from registry.kube.meta import MAX_ANNOTATIONS_BYTES, label_value_problem, qualified_name_problem, timestamp
from registry.model.images import Image, ImageSummary
from registry.model.streams import (
    FROM_KINDS,
    IMPORT_MODES,
    REFERENCE_POLICIES,
    StatusTag,
    Stream,
    StreamEdit,
    TagItem,
    TagReference,
)
from registry.names import TAG_RE

API_VERSION = image_v1.API_VERSION
MAX_TAGS_SHOWN = 4  # as `oc get is`: the newest tags, then "+ N more..."


def age(when: datetime, now: datetime | None = None) -> str:
    """`5 minutes ago`, as oc prints UPDATED."""
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


def short_age(when: datetime, now: datetime | None = None) -> str:
    """`45s`, `3m20s`, `5h`, `2d`: how kubectl prints an AGE column (HumanDuration)."""
    s = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def _metadata(
    name: str,
    namespace: str | None,
    uid: str,
    resource_version: int,
    created: datetime,
    generation: int | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["uid"] = uid
    if resource_version:  # 0: an object a dry-run create would make, not stored
        meta["resourceVersion"] = str(resource_version)
    if generation is not None:
        meta["generation"] = generation
    meta["creationTimestamp"] = timestamp(created)
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# -- image streams ---------------------------------------------------------------------------


def tag_reference(ref: TagReference) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name}
    if ref.annotations:
        out["annotations"] = dict(ref.annotations)
    if ref.from_kind:
        source: dict[str, Any] = {"kind": ref.from_kind, "name": ref.from_name or ""}
        if ref.from_namespace:
            source["namespace"] = ref.from_namespace
        out["from"] = source
    out["reference"] = ref.reference
    if ref.generation is not None:
        out["generation"] = ref.generation
    policy: dict[str, Any] = {"importMode": ref.import_mode}
    if ref.insecure:
        policy["insecure"] = True
    if ref.scheduled:
        policy["scheduled"] = True
    out["importPolicy"] = policy
    out["referencePolicy"] = {"type": ref.reference_policy}
    return out


def item_reference(stream: Stream, tag: str, item: TagItem, host: str) -> str:
    """Where consumers pull a tag's image from: the upstream pull spec for an imported image
    whose tag keeps referencePolicy Source, else this registry (pull-through serves it)."""
    spec = stream.spec_tag(tag)
    if item.reference and (spec is None or spec.reference_policy == "Source"):
        return item.reference
    return f"{host}/{stream.repository}@{item.image}"


def _status_tag(stream: Stream, t: StatusTag, host: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tag": t.tag,
        "items": [
            {
                "created": timestamp(item.created),
                "dockerImageReference": item_reference(stream, t.tag, item, host),
                "image": item.image,
                "generation": item.generation,
            }
            for item in t.items
        ],
    }
    if t.conditions:
        out["conditions"] = [
            {
                "type": c.type,
                "status": c.status,
                "lastTransitionTime": timestamp(c.last_transition),
                "reason": c.reason,
                "message": c.message,
                "generation": c.generation,
            }
            for c in t.conditions
        ]
    return out


def stream_object(stream: Stream, host: str, public_host: str = "") -> dict[str, Any]:
    """The ImageStream; references start with `host`, and with `public_host` (when there is
    one) in status.publicDockerImageRepository, as OpenShift's external route shows."""
    reference = f"{host}/{stream.repository}"
    spec: dict[str, Any] = {"lookupPolicy": {"local": stream.lookup_local}}
    if stream.spec_tags:
        spec["tags"] = [tag_reference(t) for t in stream.spec_tags]
    return {
        "kind": "ImageStream",
        "apiVersion": API_VERSION,
        "metadata": _metadata(
            stream.name,
            stream.namespace,
            stream.uid,
            stream.resource_version,
            stream.created,
            stream.generation,
            stream.labels,
            stream.annotations,
        ),
        "spec": spec,
        "status": {
            "dockerImageRepository": reference,
            **({"publicDockerImageRepository": f"{public_host}/{stream.repository}"} if public_host else {}),
            "tags": [_status_tag(stream, t, host) for t in stream.status_tags],
        },
    }


def deleted_stream_object(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What a watcher gets for a deleted stream: its last metadata."""
    return {
        "kind": "ImageStream",
        "apiVersion": API_VERSION,
        "metadata": _metadata(
            snapshot["name"],
            snapshot["namespace"],
            snapshot["uid"],
            snapshot["resourceVersion"],
            datetime.fromisoformat(snapshot["created"]),
            snapshot.get("generation"),
            snapshot.get("labels"),
            snapshot.get("annotations"),
        ),
        "spec": {"lookupPolicy": {"local": False}},
        "status": {"dockerImageRepository": ""},
    }


def stream_row(stream: Stream, host: str) -> list[Any]:
    """NAME, IMAGE REPOSITORY, TAGS, UPDATED, as `oc get is` prints them."""
    current = [t for t in stream.status_tags if t.items]
    current.sort(key=lambda t: t.items[0].created, reverse=True)
    names = ",".join(t.tag for t in current[:MAX_TAGS_SHOWN])
    if len(current) > MAX_TAGS_SHOWN:
        names += f" + {len(current) - MAX_TAGS_SHOWN} more..."
    updated = stream.updated()
    return [stream.name, f"{host}/{stream.repository}", names, age(updated) if updated else ""]


# -- image stream tags and images ------------------------------------------------------------


def image_object(image: Image | ImageSummary, host: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Image",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": image.digest,
            "uid": image_uid(image.digest),
            "resourceVersion": str(image.resource_version),
            "creationTimestamp": timestamp(image.created),
            "annotations": {
                "openshift.io/image.managed": "true",
                "image.openshift.io/dockerLayersOrder": "ascending",
            },
        },
        "dockerImageReference": f"{host}/{image.repository}@{image.digest}",
        "dockerImageManifestMediaType": image.media_type,
        "dockerImageMetadataVersion": "1.0",
    }
    if not isinstance(image, Image):
        return out
    metadata: dict[str, Any] = {"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0"}
    if image.is_index:
        out["dockerImageMetadata"] = metadata
        out["dockerImageLayers"] = []
        out["dockerImageManifests"] = [
            {
                "digest": m.digest,
                "mediaType": m.media_type,
                "manifestSize": m.size,
                "architecture": m.architecture,
                "os": m.os,
                **({"variant": m.variant} if m.variant else {}),
            }
            for m in image.manifests
        ]
        return out
    metadata["Id"] = image.config_digest
    if image.config:
        metadata.update(image.config)
    metadata["Size"] = image.size
    out["dockerImageMetadata"] = metadata
    out["dockerImageLayers"] = [{"name": la.digest, "size": la.size, "mediaType": la.media_type} for la in image.layers]
    return out


def image_uid(digest: str) -> str:
    """Images are named by content: a uid derived from the digest stays the same everywhere."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"image.openshift.io/{digest}"))


def image_row(image: Image | ImageSummary, host: str) -> list[Any]:
    return [image.digest, f"{host}/{image.repository}@{image.digest}"]


def stream_tag_object(stream: Stream, tag: str, image: Image | None, host: str) -> dict[str, Any]:
    status = stream.status_tag(tag)
    spec = stream.spec_tag(tag)
    item = status.items[0] if status and status.items else None
    out: dict[str, Any] = {
        "kind": "ImageStreamTag",
        "apiVersion": API_VERSION,
        "metadata": _metadata(
            f"{stream.name}:{tag}",
            stream.namespace,
            stream.uid,
            stream.resource_version,
            item.created if item else stream.created,
            labels=stream.labels,
            annotations=(spec.annotations if spec else None),
        ),
        "tag": tag_reference(spec) if spec else None,
        "generation": item.generation if item else (spec.generation if spec and spec.generation else stream.generation),
        "lookupPolicy": {"local": stream.lookup_local},
    }
    if status is not None and status.conditions:
        out["conditions"] = _status_tag(stream, status, host)["conditions"]
    if image is not None:
        out["image"] = image_object(image, host)
        if item is not None:
            out["image"]["dockerImageReference"] = item_reference(stream, tag, item, host)
    elif item is not None:  # lists and watches: the image's name and reference, not the whole image
        out["image"] = {
            "metadata": {"name": item.image},
            "dockerImageReference": item_reference(stream, tag, item, host),
        }
    return out


def stream_tag_row(stream: Stream, tag: str, host: str) -> list[Any]:
    status = stream.status_tag(tag)
    item = status.items[0] if status and status.items else None
    reference = item_reference(stream, tag, item, host) if item else ""
    return [f"{stream.name}:{tag}", reference, age(item.created) if item else ""]


def stream_image_object(stream: Stream, image: Image, host: str) -> dict[str, Any]:
    return {
        "kind": "ImageStreamImage",
        "apiVersion": API_VERSION,
        "metadata": _metadata(
            f"{stream.name}@{image.digest}", stream.namespace, stream.uid, stream.resource_version, image.created
        ),
        "image": image_object(image, host),
    }


# -- objects from clients --------------------------------------------------------------------


class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def invalid(self, kind: str, name: str) -> ResourceInvalid:
        causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in self.items]
        message = f'{kind}.{image_v1.GROUP} "{name}" is invalid: ' + "; ".join(f"{f}: {m}" for f, m in self.items)
        return ResourceInvalid(message, kind=kind, group=image_v1.GROUP, name=name, causes=causes)


def _string_map(value: Any, field: str, problems: Problems, labels: bool = False) -> dict[str, str]:
    """Labels or annotations: qualified-name keys; label values are short names too, and
    annotations may hold at most 256 KiB."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        problems.add(field, "must be a map of strings")
        return {}
    for key, item in value.items():
        problem = qualified_name_problem(key) or (label_value_problem(item) if labels else None)
        if problem:
            problems.add(f"{field}.{key[:320]}", problem)
    if not labels and sum(len(k) + len(v) for k, v in value.items()) > MAX_ANNOTATIONS_BYTES:
        problems.add(field, f"annotations may hold at most {MAX_ANNOTATIONS_BYTES} bytes")
    return dict(value)


def parse_tag_reference(data: Any, field: str, problems: Problems) -> TagReference | None:
    if not isinstance(data, dict):
        problems.add(field, "must be an object")
        return None
    name = data.get("name")
    if not isinstance(name, str) or not TAG_RE.fullmatch(name):
        problems.add(f"{field}.name", f"{name!r} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")
        return None
    source = data.get("from")
    from_kind = from_name = from_namespace = None
    if source is not None:
        if not isinstance(source, dict):
            problems.add(f"{field}.from", "must be an object")
        else:
            from_kind, from_name, from_namespace = source.get("kind"), source.get("name"), source.get("namespace")
            if from_kind not in FROM_KINDS:
                problems.add(f"{field}.from.kind", f"must be one of {', '.join(FROM_KINDS)}")
            if not isinstance(from_name, str) or not from_name:
                problems.add(f"{field}.from.name", "required")
            if from_namespace is not None and not isinstance(from_namespace, str):
                problems.add(f"{field}.from.namespace", "must be a string")
    policy = data.get("importPolicy") or {}
    mode = policy.get("importMode") or "Legacy" if isinstance(policy, dict) else "Legacy"
    if mode not in IMPORT_MODES:
        problems.add(f"{field}.importPolicy.importMode", f"must be one of {', '.join(IMPORT_MODES)}")
    reference_type = (data.get("referencePolicy") or {}).get("type") or "Source"
    if reference_type not in REFERENCE_POLICIES:
        problems.add(f"{field}.referencePolicy.type", f"must be one of {', '.join(REFERENCE_POLICIES)}")
    generation = data.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int) or generation < 0):
        problems.add(f"{field}.generation", "must be a non-negative integer")
        generation = None
    return TagReference(
        name=name,
        from_kind=from_kind,
        from_name=from_name,
        from_namespace=from_namespace or None,
        reference=bool(data.get("reference", False)),
        generation=generation,
        insecure=bool(policy.get("insecure", False)) if isinstance(policy, dict) else False,
        scheduled=bool(policy.get("scheduled", False)) if isinstance(policy, dict) else False,
        import_mode=mode if mode in IMPORT_MODES else "Legacy",
        reference_policy=reference_type if reference_type in REFERENCE_POLICIES else "Source",
        annotations=_string_map(data.get("annotations"), f"{field}.annotations", problems) or None,
    )


def parse_stream(obj: dict[str, Any], namespace: str, name: str) -> StreamEdit:
    """The labels, annotations and spec of an ImageStream object (create or update); raises
    Invalid naming every bad field. (Unknown fields were refused by the schema check.)"""
    problems = Problems()
    meta = obj.get("metadata") or {}
    if meta.get("name") not in (None, name):
        problems.add("metadata.name", f"must be {name!r}, the name in the URL")
    if meta.get("namespace") not in (None, "", namespace):
        problems.add("metadata.namespace", f"must be {namespace!r}, the namespace in the URL")
    if obj.get("kind") not in (None, "ImageStream"):
        problems.add("kind", "must be ImageStream")
    if obj.get("apiVersion") not in (None, API_VERSION):
        problems.add("apiVersion", f"must be {API_VERSION}")
    labels = _string_map(meta.get("labels"), "metadata.labels", problems, labels=True)
    annotations = _string_map(meta.get("annotations"), "metadata.annotations", problems)
    spec = obj.get("spec") or {}
    refs: list[TagReference] = []
    seen: set[str] = set()
    for i, data in enumerate(spec.get("tags") or []):
        ref = parse_tag_reference(data, f"spec.tags[{i}]", problems)
        if ref is None:
            continue
        if ref.name in seen:
            problems.add(f"spec.tags[{i}].name", f"duplicate tag {ref.name!r}")
        seen.add(ref.name)
        refs.append(ref)
    if spec.get("dockerImageRepository"):
        problems.add("spec.dockerImageRepository", "is not supported: list the tags to import in spec.tags")
    lookup = (spec.get("lookupPolicy") or {}).get("local", False)
    if problems.items:
        raise problems.invalid("ImageStream", name)
    return StreamEdit(labels=labels, annotations=annotations, spec_tags=tuple(refs), lookup_local=bool(lookup))


def edit_of(stream: Stream, host: str) -> dict[str, Any]:
    """The object a PATCH applies to: the stream as a client would PUT it back."""
    return stream_object(stream, host)
