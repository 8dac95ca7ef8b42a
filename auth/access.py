"""The access hook. Each route declares the access records a request needs (as
distribution's appendAccessRecords does); the controller decides before the
handler runs. Handlers never check permissions themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import HTTPConnection

from auth.subjects import ANONYMOUS, Identity


@dataclass(frozen=True)
class Access:
    type: str  # "repository" or "registry"
    name: str  # repository name, or "catalog"
    action: str  # "pull", "push", "delete" or "*"


class AccessController(Protocol):
    async def authorize(self, conn: HTTPConnection, needed: list[Access]) -> Identity:
        """Return who is calling, or raise Unauthorized / Denied."""

    async def may_read(self, identity: Identity, repository: str) -> bool:
        """Whether the caller may pull from a repository it did not name in the request
        (cross-repository mounts, catalog filtering)."""

    async def may_list_all(self, identity: Identity) -> bool:
        """Whether the catalog may list every repository for this caller."""


class AllowAll:
    """Open registry: everyone may do everything (the embedded default)."""

    async def authorize(self, conn: HTTPConnection, needed: list[Access]) -> Identity:
        return ANONYMOUS

    async def may_read(self, identity: Identity, repository: str) -> bool:
        return True

    async def may_list_all(self, identity: Identity) -> bool:
        return True
