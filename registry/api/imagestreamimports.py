"""Imports from other registries (image.openshift.io/v1 ImageStreamImport), create only:

POST /apis/image.openshift.io/v1/namespaces/{ns}/imagestreamimports

`metadata.name` names the stream (created when missing); `spec.images[]` lists images to
import (each `from` a DockerImage pull spec, `to` the tag; no `to`: only looked at),
`spec.repository` a whole upstream repository; `spec.import: false` is a dry run. The answer
is the object with its status: one entry per image (Success or Failure with reason and
message), the repository's, and the stream as the import left it. An upstream that fails
is not an error of the call: it is reported in the status and on the tag's condition.

Checked as `create imagestreamimports` in the namespace (editors and above).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api import kubeapi, objects
from registry.api.imagestreams import in_namespace, path_namespace
from registry.api.routing import RouteSpec, registry
from registry.kube import image_v1, meta
from registry.kube.image_v1 import IMAGE_STREAM_IMPORTS
from registry.model import images, imports, registry_config
from registry.model.imports import (
    FetchedImage,
    ImageOutcome,
    ImportRequest,
    ImportResult,
    ImportSource,
    RepositoryOutcome,
    RepositorySource,
)
from registry.model.streams import IMPORT_MODES, REFERENCE_POLICIES, valid_stream_name
from registry.names import TAG_RE

PREFIX = f"/apis/{image_v1.API_VERSION}"
KIND = "ImageStreamImport"


# -- reading the request ---------------------------------------------------------------------


def _bool(value: Any, field: str, problems: objects.Problems) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.add(field, "must be true or false")
        return False
    return value


def _policies(entry: dict[str, Any], field: str, problems: objects.Problems) -> tuple[bool, bool, Any, Any]:
    """importPolicy (insecure, scheduled, importMode) and referencePolicy.type."""
    policy = entry.get("importPolicy") or {}
    if not isinstance(policy, dict):
        problems.add(f"{field}.importPolicy", "must be an object")
        policy = {}
    mode = policy.get("importMode") or None
    if mode is not None and mode not in IMPORT_MODES:
        problems.add(f"{field}.importPolicy.importMode", f"must be one of {', '.join(IMPORT_MODES)}")
    reference = entry.get("referencePolicy") or {}
    kind = reference.get("type") if isinstance(reference, dict) else None
    if kind is not None and kind not in REFERENCE_POLICIES:
        problems.add(f"{field}.referencePolicy.type", f"must be one of {', '.join(REFERENCE_POLICIES)}")
    insecure = _bool(policy.get("insecure"), f"{field}.importPolicy.insecure", problems)
    scheduled = _bool(policy.get("scheduled"), f"{field}.importPolicy.scheduled", problems)
    return insecure, scheduled, mode, kind or None


def _from(entry: dict[str, Any], field: str, problems: objects.Problems) -> str:
    source = entry.get("from")
    if not isinstance(source, dict):
        problems.add(f"{field}.from", "Required value")
        return ""
    if source.get("kind") != "DockerImage":
        problems.add(f"{field}.from.kind", "only DockerImage is supported")
    name = source.get("name")
    if not isinstance(name, str) or not name:
        problems.add(f"{field}.from.name", "Required value")
        return ""
    return name


def parse_import(obj: dict[str, Any], namespace: str) -> ImportRequest:
    """The request, validated as the API server does (every problem at once)."""
    problems = objects.Problems()
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        problems.add("metadata.name", "name is required")
        name = ""
    elif not valid_stream_name(namespace, name):
        problems.add("metadata.name", "must be a repository name: lowercase letters, digits, separators")
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        problems.add("spec", "must be an object")
        spec = {}
    sources: list[ImportSource] = []
    seen: set[str] = set()
    for i, entry in enumerate(spec.get("images") or []):
        field = f"spec.images[{i}]"
        if not isinstance(entry, dict):
            problems.add(field, "must be an object")
            continue
        source = _from(entry, field, problems)
        to = entry.get("to")
        tag = None
        if to is not None:
            tag = to.get("name") if isinstance(to, dict) else None
            if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
                problems.add(f"{field}.to.name", "must be a tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
                tag = None
            elif tag in seen:
                problems.add(f"{field}.to.name", f"tag {tag} is imported twice")
            else:
                seen.add(tag)
        insecure, scheduled, mode, reference = _policies(entry, field, problems)
        sources.append(ImportSource(source, tag, insecure, scheduled, mode, reference))
    repository = None
    if spec.get("repository") is not None:
        entry = spec["repository"]
        if not isinstance(entry, dict):
            problems.add("spec.repository", "must be an object")
        else:
            source = _from(entry, "spec.repository", problems)
            insecure, scheduled, mode, reference = _policies(entry, "spec.repository", problems)
            repository = RepositorySource(source, insecure, scheduled, mode, reference)
    if not sources and repository is None:
        problems.add("spec", "you must specify at least one image or a repository import")
    store = _bool(spec.get("import"), "spec.import", problems)
    expected = kubeapi.expected_version(obj)
    uid = metadata.get("uid")
    if problems.items:
        raise problems.invalid(KIND, name)
    return ImportRequest(
        namespace,
        name,
        tuple(sources),
        repository,
        store=store,
        expected_version=expected,
        expected_uid=uid if isinstance(uid, str) and uid else None,
    )


# -- rendering the answer ----------------------------------------------------------------------


def _status(outcome: ImageOutcome | RepositoryOutcome) -> dict[str, Any]:
    if outcome.status == "Success":
        return {"metadata": {}, "status": "Success", "code": 200}
    return {
        "metadata": {},
        "status": "Failure",
        "message": outcome.message,
        "reason": outcome.reason,
        "code": outcome.code,
    }


def _image(fetched: FetchedImage, repository: str, host: str, include_manifest: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    made = images.image_from_manifest(
        fetched.digest, repository, now, 0, fetched.media_type, fetched.content, fetched.config
    )
    out = objects.image_object(made, host)
    out["metadata"]["annotations"].pop("openshift.io/image.managed", None)  # imported: not this registry's
    out["dockerImageReference"] = fetched.reference
    if include_manifest:
        out["dockerImageManifest"] = fetched.content.decode("utf-8", "replace")
    return out


def _image_status(outcome: ImageOutcome, repository: str, host: str, include: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"status": _status(outcome)}
    if outcome.source.to:
        out["tag"] = outcome.source.to
    if outcome.image is not None:
        out["image"] = _image(outcome.image, repository, host, include)
        if outcome.image.children:
            out["manifests"] = [_image(c, repository, host, include) for c in outcome.image.children]
    return out


def import_object(
    obj: dict[str, Any], request: ImportRequest, result: ImportResult, host: str, public_host: str
) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    include = [bool(isinstance(e, dict) and e.get("includeManifest")) for e in spec.get("images") or []]
    repository = f"{request.namespace}/{request.name}"
    status: dict[str, Any] = {
        "images": [
            _image_status(o, repository, host, include[i] if i < len(include) else False)
            for i, o in enumerate(result.images)
        ]
    }
    if result.repository is not None:
        include_repo = bool((spec.get("repository") or {}).get("includeManifest"))
        status["repository"] = {
            "status": _status(result.repository),
            "images": [_image_status(o, repository, host, include_repo) for o in result.repository.images],
            **(
                {"additionalTags": list(result.repository.additional_tags)} if result.repository.additional_tags else {}
            ),
        }
    if result.stream is not None:
        status["import"] = objects.stream_object(result.stream, host, public_host)
    metadata = dict(obj.get("metadata") or {})
    metadata["namespace"] = request.namespace
    metadata["creationTimestamp"] = meta.timestamp(datetime.now(UTC))
    if result.stream is not None:
        metadata["uid"] = result.stream.uid
        metadata["resourceVersion"] = str(result.stream.resource_version)
    return {"kind": KIND, "apiVersion": image_v1.API_VERSION, "metadata": metadata, "spec": spec, "status": status}


# -- the route -------------------------------------------------------------------------------------


async def create_import(request: Request) -> Response:
    namespace = path_namespace(request)
    obj, warnings = await kubeapi.read_object(request, IMAGE_STREAM_IMPORTS, image_v1.COMPONENTS)
    parsed = parse_import(obj, namespace)
    if kubeapi.dry_run(request):
        parsed = replace(parsed, store=False)
    reg = registry(request)
    parsed = replace(parsed, actor=request.state.identity.name)
    result = await imports.import_images(reg, parsed)
    host = kubeapi.registry_host(request)
    body = import_object(obj, parsed, result, host, registry_config.public_host(reg))
    return kubeapi.respond(request, body, 201, warnings)


ROUTES = [
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreamimports",
        "imagestreamimports",
        {"POST": (create_import, in_namespace("create", "imagestreamimports"))},
        image_writes=True,
    ),
]
