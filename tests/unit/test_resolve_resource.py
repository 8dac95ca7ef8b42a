"""auth.roles.resolve_resource: the resource spellings `okura auth can-i/who-can` accept, as
kubectl users type them (short names, plural names, resource.group, subresources)."""

from __future__ import annotations

import pytest

from auth.roles import GROUPS, RESOURCES, SHORT_NAMES, resolve_resource


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_resource_resolves_to_itself(resource):
    assert resolve_resource(resource) == resource


@pytest.mark.parametrize(
    ("text", "resource"),
    [("is", "imagestreams"), ("istag", "imagestreamtags"), ("isimage", "imagestreamimages")],
)
def test_openshift_short_names(text, resource):
    assert resolve_resource(text) == resource


def test_the_short_names_are_those_of_oc_api_resources():
    """`oc api-resources`: is, istag, isimage and nothing else of the image group."""
    assert SHORT_NAMES == {"is": "imagestreams", "istag": "imagestreamtags", "isimage": "imagestreamimages"}


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("imagestreams.image.openshift.io", "imagestreams"),
        ("imagestreamtags.image.openshift.io", "imagestreamtags"),
        ("imagestreamimages.image.openshift.io", "imagestreamimages"),
        ("images.image.openshift.io", "images"),
        ("imagepruners.imageregistry.operator.openshift.io", "imagepruners"),
        ("rolebindings.rbac.authorization.k8s.io", "rolebindings"),
        # A short name qualified by its group, as kubectl allows (`kubectl get is.image.openshift.io`).
        ("is.image.openshift.io", "imagestreams"),
        ("istag.image.openshift.io", "imagestreamtags"),
        ("isimage.image.openshift.io", "imagestreamimages"),
    ],
)
def test_resource_dot_group(text, resource):
    assert resolve_resource(text) == resource


def test_every_grouped_resource_resolves_with_its_group():
    for group, resources in GROUPS.items():
        for resource in resources:
            assert resolve_resource(f"{resource}.{group}") == resource


@pytest.mark.parametrize(
    "text",
    ["imagestreams/layers", "is/layers", "imagestreams.image.openshift.io/layers", "is.image.openshift.io/layers"],
)
def test_the_layers_subresource_in_each_spelling(text):
    """What a pull (get) and a push (update) are checked against."""
    assert resolve_resource(text) == "imagestreams/layers"


def test_registry_metrics():
    assert resolve_resource("registry/metrics") == "registry/metrics"


@pytest.mark.parametrize(
    "text",
    [
        "imagestreams.apps",  # a group that does not exist
        "imagestreams.image.openshift.io.",  # a trailing dot makes another group
        "imagestreams.",  # an empty group
        "users.rbac.authorization.k8s.io",  # users are not in the RBAC group here
        "images.imageregistry.operator.openshift.io",  # a real resource in the wrong group
        "imagepruners.image.openshift.io",
        "rolebindings.image.openshift.io",
        "imagestreams.IMAGE.openshift.io",  # groups are case-sensitive
        "registry.image.openshift.io/metrics",
    ],
)
def test_a_known_resource_in_the_wrong_group_is_a_key_error(text):
    with pytest.raises(KeyError) as info:
        resolve_resource(text)
    assert "no resource" in info.value.args[0]
    assert text.partition("/")[0] in info.value.args[0]


@pytest.mark.parametrize(
    "text",
    [
        "deployments",
        "pods/exec",  # pods are checked, and their log, nothing else of them
        "",
        "/layers",
        "imagestreams/",  # an empty subresource is not the resource itself
        "imagestreams/status",  # a subresource the registry does not check
        "images/layers",  # layers is a subresource of image streams only
        "istag/layers",
        "registry",
        "metrics",
    ],
)
def test_an_unknown_resource_is_a_key_error_listing_the_known_ones(text):
    with pytest.raises(KeyError) as info:
        resolve_resource(text)
    message = info.value.args[0]
    assert message.startswith(f"unknown resource {text!r}")
    for known in (*RESOURCES, *SHORT_NAMES):
        assert known in message


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("imagestream", "imagestreams"),
        ("imagestreamtag", "imagestreamtags"),
        ("imagestreamimage", "imagestreamimages"),
        ("image", "images"),
        ("rolebinding", "rolebindings"),
        ("imagepruner", "imagepruners"),
        ("ImageStream", "imagestreams"),
        ("ImageStreamTag", "imagestreamtags"),
        ("Image", "images"),
        ("SubjectAccessReview", "subjectaccessreviews"),
        ("imagestream.image.openshift.io", "imagestreams"),
        ("ImageStream.image.openshift.io", "imagestreams"),
        ("imagestream/layers", "imagestreams/layers"),
        ("subjectaccessreviews.authorization.k8s.io", "subjectaccessreviews"),
    ],
)
def test_singular_and_kind_spellings_resolve_as_kubectl_takes_them(text, resource):
    """kubectl accepts `imagestream` and `ImageStream` for `imagestreams`; so does okura auth can-i."""
    assert resolve_resource(text) == resource


@pytest.mark.parametrize(
    "text", ["imagestream.imageregistry.operator.openshift.io", "Images.rbac.authorization.k8s.io"]
)
def test_singular_spellings_in_the_wrong_group_are_refused(text):
    with pytest.raises(KeyError):
        resolve_resource(text)
