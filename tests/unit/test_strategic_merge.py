"""Strategic merge patch as `kubectl apply` sends it, driven by the published schemas: an
image stream's spec.tags merge by name; lists without a merge key are replaced whole."""

from __future__ import annotations

import json

import pytest

from registry.errors import PatchNotApplicable, RequestInvalid
from registry.kube import image_v1, operator_v1
from registry.kube.patches import STRATEGIC, apply_patch, field_meta, strategic_merge_patch

STREAM = image_v1.COMPONENTS[image_v1.IMAGE_STREAMS.schema]


def tag(name: str, source: str = "base:v1", **extra) -> dict:
    return {"name": name, "from": {"kind": "ImageStreamTag", "name": source}, **extra}


def stream(*tags: dict, **metadata) -> dict:
    return {
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "app", "namespace": "team", **metadata},
        "spec": {"lookupPolicy": {"local": False}, "tags": list(tags)},
    }


def smp(target: dict, patch: dict) -> dict:
    return strategic_merge_patch(target, patch, STREAM, image_v1.COMPONENTS)


def names(obj: dict) -> list[str]:
    return [t["name"] for t in obj["spec"]["tags"]]


def test_the_schema_declares_tags_merged_by_name():
    spec_schema, _, _ = field_meta(STREAM, "spec", image_v1.COMPONENTS)
    tags, strategies, key = field_meta(spec_schema, "tags", image_v1.COMPONENTS)
    assert (strategies, key) == ({"merge"}, "name")
    assert tags["x-kubernetes-patch-merge-key"] == "name"
    assert tags["x-kubernetes-patch-strategy"] == "merge"
    assert tags["x-kubernetes-list-map-keys"] == ["name"]
    # status.tags is the server's: no merge key.
    status_schema, _, _ = field_meta(STREAM, "status", image_v1.COMPONENTS)
    assert field_meta(status_schema, "tags", image_v1.COMPONENTS)[1:] == (set(), "")


def test_reapply_keeps_tags_added_by_others_and_changes_its_own():
    live = stream(tag("stable"), tag("other", "base:v2"))
    patch = {
        "$setElementOrder/tags": [{"name": "stable"}, {"name": "new"}],
        "tags": [],  # a top-level field unknown to the schema: replaced as given
        "spec": {
            "$setElementOrder/tags": [{"name": "stable"}, {"name": "new"}],
            "tags": [{"name": "stable", "from": {"name": "base:v3"}}, tag("new")],
        },
    }
    result = smp(live, patch)
    # The applied tags in their order; a new one goes before the others' tags that follow it.
    assert names(result) == ["stable", "new", "other"]
    assert result["spec"]["tags"][0] == tag("stable", "base:v3")  # `kind` kept: merged, not replaced
    assert result["spec"]["tags"][2] == tag("other", "base:v2")
    assert result["tags"] == []
    assert live["spec"]["tags"][0] == tag("stable")  # the target is left as it was


def test_delete_directive_removes_just_that_tag():
    live = stream(tag("a"), tag("b"), tag("c"))
    patch = {"spec": {"$setElementOrder/tags": [{"name": "a"}], "tags": [{"name": "b", "$patch": "delete"}]}}
    assert names(smp(live, patch)) == ["a", "c"]
    # Deleting a tag that is not there is no error.
    assert names(smp(live, {"spec": {"tags": [{"name": "zz", "$patch": "delete"}]}})) == ["a", "b", "c"]


def test_set_element_order_reorders_and_keeps_unnamed_items_where_the_live_list_has_them():
    live = stream(tag("c"), tag("b"), tag("d"), tag("a"), tag("e"))
    patch = {"spec": {"$setElementOrder/tags": [{"name": "a"}, {"name": "b"}]}}
    # a and b in the wanted order; the others (no business of the patch) in their live order,
    # placed among them as the live list places them.
    assert names(smp(live, patch)) == ["c", "d", "a", "b", "e"]
    patch = {"spec": {"$setElementOrder/tags": [{"name": "b"}, {"name": "a"}, {"name": "x"}]}}
    assert names(smp(stream(tag("a"), tag("b")), patch)) == ["b", "a"]


def test_patch_list_order_is_kept_for_new_items_without_set_element_order():
    live = stream(tag("b"), tag("c"), tag("a"))
    patch = {"spec": {"tags": [tag("a", "x:1"), tag("b", "x:2"), tag("d")]}}
    assert names(smp(live, patch)) == ["c", "a", "b", "d"]


def test_nested_merge_within_a_tag():
    live = stream(tag("ext", importPolicy={"insecure": True, "scheduled": False}, referencePolicy={"type": "Source"}))
    patch = {"spec": {"tags": [{"name": "ext", "importPolicy": {"scheduled": True, "insecure": None}}]}}
    merged = smp(live, patch)["spec"]["tags"][0]
    assert merged["importPolicy"] == {"scheduled": True}
    assert merged["referencePolicy"] == {"type": "Source"}
    assert merged["from"] == {"kind": "ImageStreamTag", "name": "base:v1"}


def test_null_deletes_map_keys_and_unmatched_nulls_are_dropped():
    live = stream(labels={"a": "1", "b": "2"})
    result = smp(live, {"metadata": {"labels": {"a": None, "c": "3"}, "annotations": {"x": None, "y": "1"}}})
    assert result["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert result["metadata"]["annotations"] == {"y": "1"}
    assert "lookupPolicy" not in smp(live, {"spec": {"lookupPolicy": None}})["spec"]
    # A new tag is taken without the nulls and directives in it.
    result = smp(live, {"spec": {"tags": [{"name": "n", "reference": None, "importPolicy": {"insecure": None}}]}})
    assert result["spec"]["tags"] == [{"name": "n", "importPolicy": {}}]


def test_lists_without_a_merge_key_are_replaced():
    live = stream(tag("a"))
    live["status"] = {"tags": [{"tag": "a", "items": []}, {"tag": "b", "items": []}]}
    result = smp(live, {"status": {"tags": [{"tag": "c"}]}})
    assert result["status"]["tags"] == [{"tag": "c"}]
    # Without a schema every list is replaced, as by a merge patch.
    result = strategic_merge_patch(stream(tag("a"), tag("b")), {"spec": {"tags": [tag("c")]}})
    assert names(result) == ["c"]


def test_replace_directive_on_a_list_and_on_a_map():
    live = stream(tag("a"), tag("b"))
    result = smp(live, {"spec": {"tags": [{"$patch": "replace"}, tag("c")]}})
    assert names(result) == ["c"]
    result = smp(live, {"spec": {"$patch": "replace", "tags": [tag("z")]}})
    assert result["spec"] == {"tags": [tag("z")]}


def test_delete_directive_on_a_map_deletes_it():
    live = stream(tag("a"))
    assert "lookupPolicy" not in smp(live, {"spec": {"lookupPolicy": {"$patch": "delete"}}})["spec"]
    assert smp(live, {"$patch": "delete"}) == {}


def test_retain_keys_clears_the_fields_it_does_not_list():
    live = stream(tag("a", importPolicy={"insecure": True, "scheduled": True}))
    patch = {"spec": {"tags": [{"name": "a", "importPolicy": {"$retainKeys": ["scheduled"], "scheduled": False}}]}}
    assert smp(live, patch)["spec"]["tags"][0]["importPolicy"] == {"scheduled": False}
    with pytest.raises(RequestInvalid):
        smp(live, {"spec": {"$retainKeys": ["tags"], "lookupPolicy": {"local": True}}})


def test_delete_from_primitive_list():
    schema = {"type": "object", "properties": {"items": {"type": "array", "x-kubernetes-patch-strategy": "merge"}}}
    live = {"items": ["a", "b", "c"]}
    patch = {"$deleteFromPrimitiveList/items": ["b"], "items": ["d", "a"], "$setElementOrder/items": ["c", "a", "d"]}
    assert strategic_merge_patch(live, patch, schema) == {"items": ["c", "a", "d"]}
    # Merged once each; the patch's items in its order, among the live ones where those place them.
    assert strategic_merge_patch(live, {"items": ["b", "e", "a"]}, schema) == {"items": ["b", "e", "a", "c"]}
    assert strategic_merge_patch(live, {"items": ["b", "e"]}, schema) == {"items": ["a", "b", "e", "c"]}


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"$unknown": 1}},
        {"$setElementOrder/tags": "not a list"},
        {"spec": {"$deleteFromPrimitiveList/tags": {"a": 1}}},
        {"spec": {"$retainKeys": "tags"}},
        {"spec": {"$patch": "merge"}},
        {"spec": {"tags": [{"name": "a", "$patch": "bogus"}]}},
        {"spec": {"tags": [{"$patch": "delete"}]}},
        {"spec": {"tags": [{"from": {"name": "x"}}]}},
        {"spec": {"tags": ["a"]}},
        {"spec": {"$setElementOrder/tags": [{"nom": "a"}]}},
    ],
)
def test_malformed_directives_are_bad_requests(patch):
    with pytest.raises(RequestInvalid):
        smp(stream(tag("a")), patch)


def test_a_list_of_lists_does_not_apply():
    with pytest.raises(PatchNotApplicable):
        smp(stream(tag("a")), {"spec": {"tags": [["a"]]}})


def test_apply_patch_passes_the_schema_on():
    live = stream(tag("a"))
    body = json.dumps({"spec": {"tags": [tag("b")]}}).encode()
    assert sorted(names(apply_patch(live, body, STRATEGIC, STREAM, image_v1.COMPONENTS))) == ["a", "b"]
    assert names(apply_patch(live, body, STRATEGIC)) == ["b"]
    with pytest.raises(RequestInvalid):
        apply_patch(live, b'{"spec": {"$nope": 1}}', STRATEGIC, STREAM, image_v1.COMPONENTS)


def test_image_pruner_status_publishes_its_conditions():
    pruner = operator_v1.COMPONENTS[operator_v1.IMAGE_PRUNERS.schema]
    status, _, _ = field_meta(pruner, "status", operator_v1.COMPONENTS)
    conditions, _, _ = field_meta(status, "conditions", operator_v1.COMPONENTS)
    assert set(conditions["items"]["properties"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in status["properties"]
