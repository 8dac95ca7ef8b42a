"""Who may create, list and delete role bindings, with Kubernetes' escalation check: nobody
grants a permission they do not hold. Binding role R in a namespace (None: cluster-wide)
needs `create rolebindings` there and every verb on every resource R grants there."""

from __future__ import annotations

from auth.access import ADMIN_SCOPE, ApiAccess, Check
from auth.roles import VERBS, resolve_role


def _where(namespace: str | None) -> str:
    return f"in namespace {namespace}" if namespace else "cluster-wide"


def to_list(namespace: str | None) -> list[ApiAccess]:
    """Listing the bindings of one namespace, or (None) every binding."""
    return [ApiAccess(Check("list", "rolebindings", namespace), ADMIN_SCOPE)]


def to_delete(namespace: str | None) -> list[ApiAccess]:
    return [ApiAccess(Check("delete", "rolebindings", namespace), ADMIN_SCOPE)]


def to_grant(role_name: str, namespace: str | None) -> list[ApiAccess]:
    """Creating a binding of `role_name` in `namespace`; raises KeyError for an unknown role."""
    role = resolve_role(role_name)
    purpose = f"grant role {role.name} {_where(namespace)}"
    held = [
        Check(verb, resource, namespace)
        for verbs, resources in role.rules
        for resource in sorted(resources)
        for verb in VERBS
        if verb in verbs
    ]
    return [
        ApiAccess(Check("create", "rolebindings", namespace), ADMIN_SCOPE),
        *(ApiAccess(check, ADMIN_SCOPE, purpose) for check in dict.fromkeys(held)),
    ]


def describe_lacking(checks: list[Check]) -> str:
    """`get, list users; delete tokens in namespace team` for checks of one namespace."""
    verbs: dict[str, list[str]] = {}
    for check in checks:
        verbs.setdefault(check.resource, []).append(check.verb)
    listed = "; ".join(f"{', '.join(v)} {resource}" for resource, v in verbs.items())
    return f"{listed} {_where(checks[0].namespace)}" if checks else ""
