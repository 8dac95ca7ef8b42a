"""Roles, subjects, the rate limiter and scope parsing: pure logic of auth/."""

from __future__ import annotations

import pytest

from auth import grants
from auth.access import Access
from auth.controller import checks_for, namespace_of, parse_scope
from auth.policy import Check
from auth.ratelimit import Attempt, FailureLimiter, attempt_keys
from auth.roles import ROLES, resolve_role
from auth.subjects import SubjectInvalid, identity_for, parse_subject
from registry.errors import NameInvalid


@pytest.mark.parametrize(
    ("role", "verb", "resource", "allowed"),
    [
        ("registry-viewer", "get", "imagestreams/layers", True),
        ("registry-viewer", "update", "imagestreams/layers", False),
        ("registry-viewer", "delete", "images", False),
        ("registry-editor", "get", "imagestreams/layers", True),
        ("registry-editor", "update", "imagestreams/layers", True),
        ("registry-editor", "create", "imagestreams", True),
        ("registry-editor", "delete", "images", True),
        ("registry-editor", "create", "rolebindings", False),
        ("admin", "delete", "images", True),
        ("admin", "create", "rolebindings", True),
        ("admin", "get", "registry/metrics", False),
        ("system:image-pruner", "delete", "images", True),
        ("system:image-pruner", "update", "imagestreams/layers", False),
        ("cluster-admin", "get", "registry/metrics", True),
        ("cluster-admin", "delete", "images", True),
    ],
)
def test_builtin_roles(role, verb, resource, allowed):
    assert ROLES[role].allows(verb, resource) is allowed


def test_openshift_role_names_are_aliases():
    assert resolve_role("system:image-puller").name == "registry-viewer"
    assert resolve_role("system:image-pusher").name == "registry-editor"
    with pytest.raises(KeyError):
        resolve_role("root")


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("alice", "alice"),
        ("team/robot", "system:serviceaccount:team:robot"),
        ("system:serviceaccount:team:robot", "system:serviceaccount:team:robot"),
        ("system:authenticated", "system:authenticated"),
        ("system:unauthenticated", "system:unauthenticated"),
    ],
)
def test_subjects_are_normalised(text, subject):
    assert parse_subject(text) == subject


@pytest.mark.parametrize("text", ["", "system:masters", "Team/robot", "team/Robot!", "a b", "../x", "x" * 300])
def test_bad_subjects_are_refused(text):
    with pytest.raises(SubjectInvalid):
        parse_subject(text)


def test_service_accounts_are_in_their_groups():
    ident = identity_for("system:serviceaccount:team:robot")
    assert "system:authenticated" in ident.subjects
    assert "system:serviceaccounts:team" in ident.subjects
    assert not ident.anonymous


def test_access_records_map_to_openshift_checks():
    assert checks_for(Access("repository", "team/app", "pull")) == [Check("get", "imagestreams/layers", "team")]
    assert checks_for(Access("repository", "team/app/sub", "push"), repository_exists=False) == [
        Check("update", "imagestreams/layers", "team"),
        Check("create", "imagestreams", "team"),
    ]
    assert checks_for(Access("repository", "team/app", "delete")) == [Check("delete", "images", "team")]
    assert checks_for(Access("registry", "catalog", "*")) == []
    assert checks_for(Access("registry", "metrics", "get")) == [Check("get", "registry/metrics", None)]
    # The admin API's scope stands for every admin operation, cluster-wide.
    admin = checks_for(Access("registry", "admin", "*"))
    assert Check("create", "rolebindings", None) in admin
    assert Check("create", "tokens", None) in admin
    assert Check("create", "subjectaccessreviews", None) in admin
    assert all(c.namespace is None for c in admin)
    assert Check("delete", "images", None) not in admin


@pytest.mark.parametrize("role", ["registry-viewer", "registry-editor", "admin", "system:image-pruner"])
def test_only_cluster_admin_manages_identities(role):
    for resource in ("users", "serviceaccounts", "tokens", "subjectaccessreviews"):
        for verb in ("create", "get", "list", "delete"):
            assert not ROLES[role].allows(verb, resource), (role, verb, resource)
            assert ROLES["cluster-admin"].allows(verb, resource)
    assert not ROLES[role].allows("create", "rolebindings") or role == "admin"


def test_granting_a_role_needs_every_permission_it_grants():
    needed = grants.to_grant("system:image-puller", "team")
    checks = [a.check for a in needed]
    assert checks[0] == Check("create", "rolebindings", "team")
    assert sorted((c.verb, c.resource) for c in checks[1:]) == sorted(
        [("get", "imagestreams/layers"), ("get", "images"), ("list", "images")]
        + [(verb, resource) for verb in ("get", "list", "watch")
           for resource in ("imagestreams", "imagestreamtags", "imagestreamimages")]
    )  # fmt: skip
    assert {c.namespace for c in checks} == {"team"}
    assert {a.purpose for a in needed[1:]} == {"grant role registry-viewer in namespace team"}
    assert all(a.scope == Access("registry", "admin", "*") for a in needed)
    cluster = grants.to_grant("cluster-admin", None)
    assert Check("create", "users", None) in [a.check for a in cluster]
    with pytest.raises(KeyError):
        grants.to_grant("root", "team")


def test_single_component_repositories_have_no_namespace():
    with pytest.raises(NameInvalid, match="namespace"):
        namespace_of("app")


@pytest.mark.parametrize(
    ("scope", "parsed"),
    [
        ("repository:team/app:pull,push", ("repository", "team/app", ["pull", "push"])),
        ("repository:team/app:*", ("repository", "team/app", ["*"])),
        ("registry:catalog:*", ("registry", "catalog", ["*"])),
        ("repository:team/app:pull,admin,push", ("repository", "team/app", ["pull", "push"])),
        ("repository:Team/App:pull", None),
        ("repository:../etc:pull", None),
        ("garbage", None),
        ("repository::pull", None),
    ],
)
def test_scope_parsing(scope, parsed):
    assert parse_scope(scope) == parsed


def test_failed_password_answers_are_slowed_more_and_more():
    limiter = FailureLimiter(None, slow_after=2, max_failures=6, window=900, lockout=300)  # type: ignore[arg-type]
    delays = [limiter.delay(Attempt(("client:c",), count)) for count in range(1, 7)]
    assert delays[:1] == [0.0] and delays[1] > 0 and delays[3] > delays[2] > delays[1]
    assert delays[-1] == 0.0  # the attempt that reaches the limit: the next one is refused anyway


def test_attempt_keys_are_the_client_and_the_account_in_a_fixed_order():
    assert attempt_keys("10.0.0.1", "alice") == ("account:alice", "client:10.0.0.1")
    assert attempt_keys("10.0.0.1", "x" * 1000) == ("account:" + "x" * 300, "client:10.0.0.1")
