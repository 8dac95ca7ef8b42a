"""Image streams and images as text, the way `oc describe` prints them: each tag with its
source, history and failed-import condition, and an image's layers and config."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from registry.model import imports


def describe_stream(stream: dict[str, Any], now: datetime) -> list[str]:
    meta, spec, status = stream["metadata"], stream["spec"], stream["status"]
    rows: list[tuple[str, list[str]]] = [
        ("Name", [meta["name"]]),
        ("Namespace", [meta["namespace"]]),
        ("Created", [f"{_ago(meta['creationTimestamp'], now)} ago"]),
        ("Labels", _pairs(meta.get("labels"))),
        ("Annotations", _pairs(meta.get("annotations"))),
        ("Image Repository", [status.get("publicDockerImageRepository") or status["dockerImageRepository"]]),
        ("Image Lookup", [f"local={str(spec['lookupPolicy']['local']).lower()}"]),
    ]
    spec_tags = {t["name"]: t for t in spec.get("tags", [])}
    status_tags = {t["tag"]: t for t in status.get("tags", [])}
    names = imports.prioritize_tags([*status_tags, *(t for t in spec_tags if t not in status_tags)])
    if not names:
        return _fields([*rows, ("Tags", [])])
    unique = {item["image"] for t in status_tags.values() for item in t["items"]}
    lines = _fields([*rows, ("Unique Images", [str(len(unique))]), ("Tags", [str(len(names))])])
    for tag in names:
        lines += ["", *_tag_lines(tag, spec_tags.get(tag), status_tags.get(tag), meta["namespace"], now)]
    return lines


def _tag_lines(
    tag: str, spec: dict[str, Any] | None, status: dict[str, Any] | None, namespace: str, now: datetime
) -> list[str]:
    lines = [tag, _source_line(spec, namespace)]
    policy = (spec or {}).get("importPolicy", {})
    if policy.get("insecure"):
        lines.append("    will use insecure HTTPS or HTTP connections")
    if (spec or {}).get("referencePolicy", {}).get("type") == "Local":
        lines.append("    prefer registry pullthrough when referencing this tag")
    lines.append("")
    items = (status or {}).get("items", [])
    conditions = [c for c in (status or {}).get("conditions", []) if c["type"] == "ImportSuccess"]
    observed = max([*(i["generation"] for i in items[:1]), *(c["generation"] for c in conditions), 0])
    if spec and not spec.get("reference") and spec.get("generation", 0) > observed:
        lines.append("  ~ importing latest image ...")
    for c in conditions:
        if c["status"] == "False":
            lines.append(f"  ! error: Import failed ({c['reason']}): {c['message']}")
            lines.append(f"      {_ago(c['lastTransitionTime'], now)} ago")
    for i, item in enumerate(items):
        reference = item["dockerImageReference"]
        lines.append(f"  {'*' if i == 0 else ' '} {reference}")
        # The image's name is worth showing only when the reference does not end with it.
        named = "" if reference.endswith(f"@{item['image']}") else f"  {item['image']}"
        lines.append(f"      {_ago(item['created'], now)} ago{named}")
    while lines[-1] == "":
        lines.pop()
    return lines


def _source_line(spec: dict[str, Any] | None, namespace: str) -> str:
    """Where the tag comes from, worded as oc's describe words it."""
    if spec is None:
        return "  no spec tag"
    source = spec.get("from")
    if source is None:
        return "  tag without source image"
    kind, name = source["kind"], source["name"]
    if source.get("namespace") and source["namespace"] != namespace:
        name = f"{source['namespace']}/{name}"
    reference, scheduled = spec.get("reference"), spec.get("importPolicy", {}).get("scheduled")
    where = {"DockerImage": "registry ", "ImageStreamTag": "", "ImageStreamImage": "image "}.get(kind, f"{kind} ")
    if reference:
        return f"  reference to {where}{name}"
    if scheduled and kind in ("DockerImage", "ImageStreamTag"):
        return f"  updates automatically from {where}{name}"
    if kind in ("DockerImage", "ImageStreamTag", "ImageStreamImage"):
        return f"  tagged from {name}"
    return f"  updates from {kind} {name}"


def describe_image(image: dict[str, Any], image_name: str, now: datetime) -> list[str]:
    """oc's `describe image` of an Image object (an ImageStreamImport answer's)."""
    meta = image.get("dockerImageMetadata") or {}
    rows: list[tuple[str, list[str]]] = [
        ("Image Name", [image_name]),
        ("Docker Image", [image["dockerImageReference"]]),
        ("Name", [image["metadata"]["name"]]),
        ("Created", [f"{_ago(image['metadata']['creationTimestamp'], now)} ago"]),
    ]
    if image["metadata"].get("annotations"):
        rows.append(("Annotations", _pairs(image["metadata"]["annotations"])))
    if "dockerImageManifests" in image:  # an index imported whole (PreserveOriginal)
        rows.append(("Manifests", [_platform(m) for m in image["dockerImageManifests"]]))
        return _fields(rows)
    layers = image.get("dockerImageLayers") or []
    rows.append(("Image Size", [f"{human_size(meta.get('Size', 0))} in {len(layers)} layers"]))
    rows.append(("Layers", [f"{human_size(layer['size']):<9} {layer['name']}" for layer in layers]))
    if meta.get("Created"):
        rows.append(("Image Created", [f"{_ago(meta['Created'], now)} ago"]))
    for key, label in (("Author", "Author"), ("Architecture", "Arch"), ("Os", "OS")):
        if meta.get(key):
            rows.append((label, [meta[key]]))
    return _fields(rows + _config_rows(meta.get("Config") or {}))


def _config_rows(config: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The container config's fields that the image sets."""
    shown = [
        ("Entrypoint", " ".join(config.get("Entrypoint") or [])),
        ("Command", " ".join(config.get("Cmd") or [])),
        ("Working Dir", config.get("WorkingDir") or ""),
        ("User", config.get("User") or ""),
        ("Exposed Ports", ", ".join(sorted(config.get("ExposedPorts") or {}))),
    ]
    rows = [(label, [value]) for label, value in shown if value]
    for label, values in (
        ("Docker Labels", _pairs(config.get("Labels")) if config.get("Labels") else []),
        ("Environment", list(config.get("Env") or [])),
        ("Volumes", sorted(config.get("Volumes") or {})),
    ):
        if values:
            rows.append((label, values))
    return rows


def _platform(manifest: dict[str, Any]) -> str:
    platform = "/".join(p for p in (manifest.get("os"), manifest.get("architecture"), manifest.get("variant")) if p)
    return f"{platform or 'unknown':<14} {manifest['digest']}"


def _fields(rows: list[tuple[str, list[str]]]) -> list[str]:
    """`Label:  value` lines, values aligned (oc aligns them with a tabwriter); a value of
    several lines continues under the first; no value is `<none>`."""
    width = max(len(label) for label, _ in rows) + 3
    lines = []
    for label, values in rows:
        values = values or ["<none>"]
        lines.append(f"{label + ':':<{width}}{values[0]}")
        lines += [" " * width + value for value in values[1:]]
    return lines


def _pairs(mapping: dict[str, str] | None) -> list[str]:
    return [f"{key}={value}" for key, value in sorted((mapping or {}).items())]


def _ago(timestamp: str, now: datetime) -> str:
    when = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return human_duration((now - when).total_seconds())


def human_duration(seconds: float) -> str:
    """How long ago, as oc describes it (go-units HumanDuration): `Less than a second`,
    `About a minute`, `3 hours`, `2 weeks`."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    minutes = whole // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """A size in decimal units, four significant digits, as oc prints image sizes (go-units
    HumanSize): `3.146MB`, `1.024kB`."""
    unit = 0
    while size >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.4g}{_DECIMAL_UNITS[unit]}"
