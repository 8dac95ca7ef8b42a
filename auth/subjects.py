"""Who can be named in role bindings and tokens, with OpenShift's spellings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from registry.names import NAME_COMPONENT

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
GROUPS = (AUTHENTICATED, UNAUTHENTICATED)
SA_PREFIX = "system:serviceaccount:"

USER_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._@-]{0,254}")
NAMESPACE_RE = re.compile(NAME_COMPONENT)  # a repository path component
SA_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class SubjectInvalid(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    """A caller: its name, the groups it belongs to, and, when it presented one of our
    bearer JWTs, that token's claims (which bound what it may do)."""

    name: str
    groups: tuple[str, ...] = field(default=(AUTHENTICATED,))
    anonymous: bool = False
    claims: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # When it presented a long-lived token: its id and expiry (epoch seconds), which bound the
    # JWTs the token endpoint mints for it.
    token_id: str | None = field(default=None, compare=False)
    token_expires: float | None = field(default=None, compare=False)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every name a role binding may use to reach this caller."""
        return (self.name, *self.groups)


ANONYMOUS = Identity(ANONYMOUS_USER, (UNAUTHENTICATED,), anonymous=True)


def service_account(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def parse_subject(text: str) -> str:
    """Normalise a SUBJECT as the CLI and API take it: a user name, `NS/NAME` or
    `system:serviceaccount:NS:NAME` for a service account, or a group."""
    if text in GROUPS:
        return text
    if text.startswith(SA_PREFIX):
        ns, _, name = text[len(SA_PREFIX) :].partition(":")
        return _service_account(ns, name)
    if "/" in text:
        ns, _, name = text.partition("/")
        return _service_account(ns, name)
    if text.startswith("system:"):
        raise SubjectInvalid(f"unknown system subject {text!r} (groups: {', '.join(GROUPS)})")
    if not USER_RE.fullmatch(text):
        raise SubjectInvalid(f"invalid user name {text!r}")
    return text


def parse_namespace(text: str) -> str:
    """A namespace as role bindings name it: a repository path component."""
    if not NAMESPACE_RE.fullmatch(text) or len(text) > 255:
        raise SubjectInvalid(f"invalid namespace {text!r}")
    return text


def _service_account(ns: str, name: str) -> str:
    if not NAMESPACE_RE.fullmatch(ns):
        raise SubjectInvalid(f"invalid namespace {ns!r}")
    if not SA_NAME_RE.fullmatch(name):
        raise SubjectInvalid(f"invalid service account name {name!r}")
    return service_account(ns, name)


def is_service_account(subject: str) -> bool:
    return subject.startswith(SA_PREFIX)


def service_account_parts(subject: str) -> tuple[str, str]:
    ns, _, name = subject[len(SA_PREFIX) :].partition(":")
    return ns, name


def identity_for(subject: str) -> Identity:
    if is_service_account(subject):
        ns, _ = service_account_parts(subject)
        return Identity(subject, (AUTHENTICATED, "system:serviceaccounts", f"system:serviceaccounts:{ns}"))
    return Identity(subject)
