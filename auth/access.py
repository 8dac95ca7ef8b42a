"""The access hook. Each route declares the access a request needs (as distribution's
appendAccessRecords does); the controller decides before the handler runs. Handlers
never check permissions themselves.

A route declares either docker scopes (`Access`, for /v2/: each maps to checks the
way OpenShift's registry maps them) or exact API checks (`ApiAccess`: one verb on one
resource in one namespace, as a Kubernetes SubjectAccessReview asks it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import HTTPConnection

from auth.subjects import ANONYMOUS, Identity


@dataclass(frozen=True)
class Access:
    """A docker scope: `type:name:action`."""

    type: str  # "repository" or "registry"
    name: str  # repository name, or "catalog", "metrics", "admin", "imagepruners", "configs"
    action: str  # "pull", "push", "delete", "get" or "*"


@dataclass(frozen=True)
class Check:
    """The SubjectAccessReview question: may the caller do `verb` on `resource` in `namespace`?"""

    verb: str
    resource: str
    namespace: str | None  # None: cluster-wide

    def describe(self) -> str:
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.resource} {where}"


@dataclass(frozen=True)
class ApiAccess:
    """An exact API check a route needs, decided on every request. `scope` is the docker scope
    that challenges name and that a bearer JWT must carry for it (the check still decides).
    Checks sharing a `purpose` are refused together, naming all that is lacking."""

    check: Check
    scope: Access
    purpose: str = ""


Needed = Access | ApiAccess

# Bearer JWTs carry the access-management API (/admin/v1) under this one scope.
ADMIN_SCOPE = Access("registry", "admin", "*")
# ...and the Kubernetes-style API (/apis, /api) under this one: any caller may hold it (the
# token endpoint grants it to anyone who asks), the exact check of each request decides.
# A JWT minted for pulls alone does not reach the API.
API_SCOPE = Access("registry", "api", "*")


class AccessController(Protocol):
    async def authorize(self, conn: HTTPConnection, needed: list[Needed]) -> Identity:
        """Return who is calling, or raise Unauthorized / Denied."""

    async def may_read(self, identity: Identity, repository: str) -> bool:
        """Whether the caller may pull from a repository it did not name in the request
        (cross-repository mounts, catalog filtering)."""

    async def may_list_all(self, identity: Identity) -> bool:
        """Whether the catalog may list every repository for this caller."""

    async def allowed(self, identity: Identity, check: Check) -> bool:
        """The SubjectAccessReview question for a caller (lists across namespaces keep what
        the caller may see; SelfSubjectAccessReview)."""


class AllowAll:
    """Open registry: everyone may do everything (the embedded default)."""

    async def authorize(self, conn: HTTPConnection, needed: list[Needed]) -> Identity:
        return ANONYMOUS

    async def may_read(self, identity: Identity, repository: str) -> bool:
        return True

    async def may_list_all(self, identity: Identity) -> bool:
        return True

    async def allowed(self, identity: Identity, check: Check) -> bool:
        return True
