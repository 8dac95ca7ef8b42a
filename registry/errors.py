"""Typed registry errors. Each carries its OCI error code and HTTP status and is
rendered into the `{"errors":[...]}` envelope in exactly one place (registry.api.errors)."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"
    reason: str | None = None  # a Kubernetes StatusReason, when the HTTP status does not say it

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a blob unknown to registry"


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestTooLarge(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 413, "manifest too large"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class TagInvalid(RegistryError):
    code, status, default_message = "TAG_INVALID", 400, "manifest tag did not match URI"


class RangeInvalid(RegistryError):
    code, status, default_message = "RANGE_INVALID", 416, "invalid content range"


class RangeNotSatisfiable(RegistryError):
    code, status, default_message = "RANGE_INVALID", 416, "requested range not satisfiable"


class PaginationNumberInvalid(RegistryError):
    code, status, default_message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class RouteUnknown(RegistryError):
    code, status, default_message = "NOT_FOUND", 404, "no such endpoint"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class RegistryReadOnly(RegistryError):
    """Config spec.readOnly: distribution's read-only maintenance mode has no write routes,
    so writes get 405 (with the methods still allowed)."""

    code, status = "UNSUPPORTED", 405
    default_message = (
        "the registry is in read-only mode (Config spec.readOnly): pushes, deletes and tag changes are refused"
    )
    reason = "MethodNotAllowed"

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"Allow": "GET, HEAD"})


class RegistryRemoved(RegistryError):
    """Config managementState Removed: the image API is gone, the metadata API stays."""

    code, status = "UNAVAILABLE", 503
    default_message = (
        "the registry is removed (Config managementState: Removed): image pulls and pushes are unavailable"
    )


class RequestInvalid(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "malformed request"


class Unavailable(RegistryError):
    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class InsufficientStorage(RegistryError):
    code, status, default_message = "UNAVAILABLE", 507, "insufficient storage"


# -- errors about API resources under /apis/ (rendered as Kubernetes Status objects) -------------


class ResourceError(RegistryError):
    """An error about one API resource (kind = the plural resource name, as Kubernetes puts
    it in a Status). Its `details` become the Status details under /apis/."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        group: str,
        name: str | None = None,
        causes: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        details: dict[str, Any] = {"name": name, "group": group, "kind": kind}
        if causes:
            details["causes"] = causes
        self.details = {k: v for k, v in details.items() if v}
        super().__init__(message, detail=self.details, headers=headers)


def _qualified(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind


class ResourceNotFound(ResourceError):
    code, status, default_message = "NOT_FOUND", 404, "not found"

    def __init__(self, kind: str, group: str, name: str):
        super().__init__(f'{_qualified(kind, group)} "{name}" not found', kind=kind, group=group, name=name)


class ResourceConflict(ResourceError):
    """409: the object changed since the caller read it (a stale resourceVersion)."""

    code, status, default_message = "CONFLICT", 409, "conflict"


class ResourceAlreadyExists(ResourceError):
    code, status, default_message = "CONFLICT", 409, "already exists"
    reason = "AlreadyExists"

    def __init__(self, kind: str, group: str, name: str):
        super().__init__(f'{_qualified(kind, group)} "{name}" already exists', kind=kind, group=group, name=name)


class ResourceExpired(RegistryError):
    """410: a watch or list continuation from a resourceVersion older than the kept log."""

    code, status, default_message = "GONE", 410, "too old resource version"
    reason = "Expired"


class ResourceInvalid(ResourceError):
    """422: the object fails validation; `causes` are [{"reason", "message", "field"}]."""

    code, status, default_message = "INVALID", 422, "invalid"


class PatchNotApplicable(RegistryError):
    """422: a well-formed patch that cannot apply to the object (a failed JSON patch `test`,
    a path that does not exist), as the API server answers it."""

    code, status, default_message = "INVALID", 422, "the patch cannot be applied"


class RequestTooLarge(RegistryError):
    code, status, default_message = "SIZE_INVALID", 413, "the request body is too large"
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(RegistryError):
    code, status, default_message = "UNSUPPORTED", 415, "unsupported media type"
