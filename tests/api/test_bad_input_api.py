"""Bad input to the Kubernetes-style API is never a 500: every refusal is a Kubernetes Status
with the reason its code says (BadRequest, Invalid naming the field, NotFound, Conflict,
UnsupportedMediaType, MethodNotAllowed, RequestEntityTooLarge), and a refused write leaves
the stored objects, the registry's tags and the resourceVersion as they were. Covered: invalid
names, unknown fields under each fieldValidation mode (Warn answers Warning headers client-go
can parse), wrong types (whatever the mode), bodies that are no object or no JSON/YAML, tags
pointing at images that do not exist, at themselves, or at each other in a cycle, malformed
resourceVersions (objects, preconditions, list and watch queries), continue tokens, limits,
label and field selectors and other query parameters, and YAML aliases a dry run must not
expand into its answer."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support.backends import SQL_BACKENDS
from tests.support.http import assert_status, push_image
from tests.support.kube import (
    API,
    MERGE,
    TABLE,
    create_stream,
    get_ok,
    istag_body,
    istags,
    parse_warnings,
    rv,
    stream_body,
    streams,
    tag_ref,
)

# Validation happens before blob storage plays any part.
pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS)


class Unchanged:
    """`async with unchanged():` the streams, tags, images, repositories and the list's
    resourceVersion are the same on leaving the block as on entering it."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def snapshot(self) -> dict:
        c = self.client
        stream_list = await get_ok(c, f"{API}/imagestreams")
        return {
            "streams": stream_list["items"],
            "version": rv(stream_list),
            "tags": (await get_ok(c, f"{API}/imagestreamtags"))["items"],
            "images": (await get_ok(c, f"{API}/images"))["items"],
            "repositories": (await get_ok(c, "/v2/_catalog"))["repositories"],
        }

    async def __aenter__(self) -> Unchanged:
        self.before = await self.snapshot()
        return self

    async def __aexit__(self, *exc) -> None:
        if exc[0] is None:
            assert await self.snapshot() == self.before


@pytest.fixture
def unchanged(client):
    return lambda: Unchanged(client)


def causes(status: dict) -> list[str]:
    return [c["field"] for c in status["details"].get("causes", [])]


def names_field(status: dict, field: str) -> bool:
    """Whether a cause names `field` or a field enclosing it (`metadata.labels` for
    `metadata.labels.a`)."""
    return any(c == field or field.startswith((c + ".", c + "[")) or c.startswith(field) for c in causes(status))


def report(failures: list) -> str:
    return "\n".join(str(f) for f in failures)


def invalid(response: httpx.Response, field: str) -> dict:
    """422 Invalid with a cause naming `field`."""
    status = assert_status(response, 422, "Invalid")
    assert field in causes(status), status
    return status


@pytest.fixture
async def app_stream(client):
    """team/app with a pushed tag, labels and a spec tag: something to damage."""
    await push_image(client, "team/app", "v1")
    stream = await get_ok(client, streams("team", "app"))
    stream["metadata"]["labels"] = {"keep": "me"}
    stream["spec"]["tags"] = [tag_ref("alias", "ImageStreamTag", "v1")]
    r = await client.put(streams("team", "app"), json=stream)
    assert r.status_code == 200, r.text
    return r.json()


# -- names ---------------------------------------------------------------------------------------


async def test_invalid_stream_names_are_invalid_and_create_nothing(client, unchanged):
    async with unchanged():
        for name in ["Upper", "x" * 300, "..", ".", "a..b", "/a", "a/", "a//b", "../etc", "a:b", "a@b", "-a",
                     "a b", "é", "a%2Fb", "a\x00", "a\nb"]:  # fmt: skip
            status = invalid(await client.post(streams("team"), json=stream_body(name)), "metadata.name")
            assert status["details"]["kind"] == "ImageStream", name  # Invalid names the Kind
        for body in ({"metadata": {}}, {"metadata": {"name": ""}}, {"spec": {}}, {}):
            invalid(await client.post(streams("team"), json=body), "metadata.name")


async def test_invalid_image_stream_tag_names_are_invalid(client, unchanged, app_stream):
    async with unchanged():
        for name in ["app", "app:", ":v1", "App:v1", "app:bad tag", "app:" + "t" * 129, "app:v1:x:", "a..b:v1"]:
            body = istag_body(name, "ImageStreamTag", "v1")
            invalid(await client.post(istags("team"), json=body), "metadata.name")


async def test_invalid_namespaces_are_not_found(client, unchanged):
    async with unchanged():
        for namespace in ["Team", "te..am", "a_", "-x", "x%00"]:
            status = assert_status(await client.post(streams(namespace), json=stream_body("app")), 404, "NotFound")
            assert status["details"]["kind"] == "namespaces"
            assert_status(await client.get(streams(namespace)), 404, "NotFound")
            assert_status(await client.get(istags(namespace)), 404, "NotFound")
            assert_status(await client.get(streams(namespace, "app")), 404, "NotFound")


async def test_odd_names_in_paths_are_not_found(client, app_stream):
    for path in [
        streams("team", "%00"),
        streams("team", "a" * 10_000),
        streams("team", "UPPER"),
        istags("team", "a" * 5000 + ":" + "b" * 5000),
        istags("team", "app"),
        istags("team", "app:%00"),
        f"{API}/images/sha256:{'a' * 5000}",
        f"{API}/images/not-a-digest",
    ]:
        assert_status(await client.get(path), 404, "NotFound")
        assert_status(await client.delete(path), 404, "NotFound")
    assert_status(await client.get(f"{API}/namespaces/team/imagestreamimages/app@sha256:{'a' * 5000}"), 404, "NotFound")


async def test_names_in_the_body_must_match_the_path(client, unchanged, app_stream):
    async with unchanged():
        body = {**app_stream, "metadata": {**app_stream["metadata"], "name": "other"}}
        invalid(await client.put(streams("team", "app"), json=body), "metadata.name")
        body = {**app_stream, "metadata": {**app_stream["metadata"], "namespace": "other"}}
        invalid(await client.put(streams("team", "app"), json=body), "metadata.namespace")
        invalid(await client.post(streams("team"), json=stream_body("x", namespace="other")), "metadata.namespace")
        invalid(await client.post(streams("team"), json={**stream_body("x"), "kind": "ImageStreamTag"}), "kind")
        invalid(await client.post(streams("team"), json={**stream_body("x"), "apiVersion": "v1"}), "apiVersion")
        body = istag_body("app:v1", "ImageStreamTag", "v1")
        body["tag"]["name"] = "other"
        invalid(await client.put(istags("team", "app:v1"), json=body), "tag.name")
        body = istag_body("app:v2", "ImageStreamTag", "v1")
        invalid(await client.put(istags("team", "app:v1"), json=body), "metadata.name")


async def test_invalid_label_keys_and_values_are_invalid(client, unchanged):
    # As the API server validates them: qualified-name keys, values of at most 63 characters.
    async with unchanged():
        for labels in (
            {"bad key!": "x"},
            {"k": "bad value!"},
            {"k": "x" * 64},
            {"-k": "v"},
            {"a/b/c": "v"},
            {"Bad_Prefix/k": "v"},
        ):
            r = await client.post(streams("team"), json=stream_body("app", labels=labels))
            status = assert_status(r, 422, "Invalid")
            assert any(f.startswith("metadata.labels") for f in causes(status)), (labels, status)


# -- unknown fields and wrong types ----------------------------------------------------------


UNKNOWN = {
    **stream_body("app", tags=[{"name": "t", "form": {"kind": "DockerImage", "name": "q/x:1"}}]),
    "spek": {},
}
UNKNOWN["metadata"]["bogus"] = 1


async def test_unknown_fields_are_invalid_naming_each_path(client, unchanged):
    async with unchanged():
        status = assert_status(await client.post(streams("team"), json=UNKNOWN), 422, "Invalid")
        assert sorted(causes(status)) == ["metadata.bogus", "spec.tags[0].form", "spek"]
        for cause in status["details"]["causes"]:
            assert cause["message"] == f'unknown field "{cause["field"]}"'
        for mode in ("Strict", ""):  # the default here is Strict
            same = await client.post(streams("team"), params={"fieldValidation": mode}, json=UNKNOWN)
            assert same.json() == status
        for mode in ("Loose", "1", "strict!"):
            r = await client.post(streams("team"), params={"fieldValidation": mode}, json=stream_body("x"))
            assert_status(r, 400, "BadRequest")


async def test_field_validation_warn_answers_warning_headers_client_go_can_parse(client):
    r = await client.post(streams("team"), params={"fieldValidation": "Warn"}, json=UNKNOWN)
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["name"] == "app"
    assert sorted(parse_warnings(r.headers["Warning"])) == [
        'unknown field "metadata.bogus"',
        'unknown field "spec.tags[0].form"',
        'unknown field "spek"',
    ]


async def test_field_validation_ignore_drops_unknown_fields_silently(client):
    r = await client.post(streams("team"), params={"fieldValidation": "Ignore"}, json=UNKNOWN)
    assert r.status_code == 201, r.text
    assert "Warning" not in r.headers
    stream = await get_ok(client, streams("team", "app"))
    assert "bogus" not in stream["metadata"] and "spek" not in stream
    assert [t["name"] for t in stream["spec"]["tags"]] == ["t"]


WRONG_TYPES = [
    ("metadata.name", {"metadata": {"name": 5}}),
    ("metadata.labels", {"metadata": {"name": "app", "labels": ["a"]}}),
    ("metadata.labels.a", {"metadata": {"name": "app", "labels": {"a": 1}}}),
    ("metadata.annotations.a", {"metadata": {"name": "app", "annotations": {"a": True}}}),
    ("spec.tags", {"metadata": {"name": "app"}, "spec": {"tags": {"name": "t"}}}),
    ("spec.tags[0]", {"metadata": {"name": "app"}, "spec": {"tags": ["t"]}}),
    ("spec.lookupPolicy.local", {"metadata": {"name": "app"}, "spec": {"lookupPolicy": {"local": "false"}}}),
    ("spec.tags[0].generation", {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "generation": "1"}]}}),
    ("spec.tags[0].generation", {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "generation": 2**64}]}}),
    ("spec.tags[0].reference", {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "reference": "yes"}]}}),
    ("spec.tags[0].from", {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "from": "x:y"}]}}),
    ("spec.tags[0].importPolicy.importMode",
     {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "importPolicy": {"importMode": "Eager"}}]}}),
    ("spec.tags[0].referencePolicy",
     {"metadata": {"name": "app"}, "spec": {"tags": [{"name": "t", "referencePolicy": "x"}]}}),
    ("spec.lookupPolicy", {"metadata": {"name": "app"}, "spec": {"lookupPolicy": "x"}}),
    ("spec", {"metadata": {"name": "app"}, "spec": "x"}),
]  # fmt: skip


async def test_wrong_types_are_invalid_naming_the_field(client, unchanged):
    async with unchanged():
        for field, body in WRONG_TYPES:
            invalid(await client.post(streams("team"), json=body), field)


async def test_metadata_that_is_no_object_is_invalid(client, unchanged, app_stream):
    async with unchanged():
        invalid(await client.post(streams("team"), json={"metadata": "app"}), "metadata")
        invalid(await client.post(istags("team"), json={"metadata": "app:x", "tag": {}}), "metadata")
        invalid(await client.put(streams("team", "app"), json={**app_stream, "metadata": ["app"]}), "metadata")


@pytest.mark.parametrize("mode", ["Warn", "Ignore"])
async def test_wrong_types_are_invalid_whatever_the_field_validation(client, unchanged, mode):
    # fieldValidation says what to do about unknown fields; a value of the wrong type is never
    # stored (as "false" stored as true), and never a crash.
    async with unchanged():
        failures = []
        for i, (field, body) in enumerate(WRONG_TYPES):
            body = json.loads(json.dumps(body))
            if isinstance(body["metadata"].get("name"), str):
                body["metadata"]["name"] = f"app{i}"  # one accepted by mistake does not hide the next
            r = await client.post(streams("team"), params={"fieldValidation": mode}, json=body)
            if r.status_code != 422 or not names_field(r.json(), field):
                failures.append((field, r.status_code, r.text[:300]))
        assert not failures, report(failures)


@pytest.mark.parametrize("mode", ["Warn", "Ignore"])
async def test_wrong_types_in_updates_and_patches_are_invalid_whatever_the_field_validation(
    client, unchanged, app_stream, mode
):
    q = {"fieldValidation": mode}
    async with unchanged():
        failures = []
        for field, response in [
            ("metadata.resourceVersion", client.put(
                streams("team", "app"), params=q,
                json={**app_stream, "metadata": {**app_stream["metadata"], "resourceVersion": 5}})),
            ("spec", client.put(streams("team", "app"), params=q, json={**app_stream, "spec": "x"})),
            ("spec", client.patch(streams("team", "app"), params=q, json={"spec": "x"}, headers=MERGE)),
            ("metadata", client.patch(streams("team", "app"), params=q, json={"metadata": "x"}, headers=MERGE)),
            ("spec.lookupPolicy.local", client.patch(
                streams("team", "app"), params=q, json={"spec": {"lookupPolicy": {"local": "no"}}}, headers=MERGE)),
            ("tag", client.post(istags("team"), params=q, json={"metadata": {"name": "app:x"}, "tag": "x"})),
            ("metadata", client.post(istags("team"), params=q, json={"metadata": "app:x", "tag": {}})),
        ]:  # fmt: skip
            r = await response
            if r.status_code != 422 or not names_field(r.json(), field):
                failures.append((field, r.request.method, r.status_code, r.text[:300]))
        assert not failures, report(failures)


# -- bodies --------------------------------------------------------------------------------------


async def test_bodies_that_are_no_object_are_invalid(client, unchanged, app_stream):
    json_type = {"Content-Type": "application/json"}
    async with unchanged():
        for raw in (b"[1]", b'"app"', b"null", b"42", b"true", b"[]"):
            for method, path in (
                ("POST", streams("team")),
                ("PUT", streams("team", "app")),
                ("POST", istags("team")),
                ("PUT", istags("team", "app:v1")),
            ):
                r = await client.request(method, path, content=raw, headers=json_type)
                status = assert_status(r, 422, "Invalid")
                assert causes(status) == [""], (raw, method, path)
            # A patch must be an object (merge) or an array (JSON patch).
            r = await client.patch(streams("team", "app"), content=raw, headers=MERGE)
            assert_status(r, 400, "BadRequest")


async def test_bodies_that_are_no_json_or_yaml_are_bad_requests(client, unchanged, app_stream):
    async with unchanged():
        for raw, content_type in [
            (b"{", "application/json"),
            (b"not json", "application/json"),
            (b"\x00\xff\xfe", "application/json"),
            (b'{"metadata": {"name": "app"}', "application/json"),
            (b"{'metadata': {}}", "application/json"),
            (b"metadata: [\n", "application/yaml"),
            (b"metadata: {name: a}\n---\nmetadata: {name: b}\n", "application/yaml"),
            (b"\t- x", "application/yaml"),
            (b"   ", "application/json"),
            (b"", "application/json"),
            (b"[" * 5000, "application/json"),
            (b"a: " + b"[" * 5000, "application/yaml"),
        ]:
            for method, path in (("POST", streams("team")), ("PUT", streams("team", "app"))):
                r = await client.request(method, path, content=raw, headers={"Content-Type": content_type})
                assert_status(r, 400, "BadRequest")
            for headers in (MERGE, {"Content-Type": "application/json-patch+json"}):
                assert_status(
                    await client.patch(streams("team", "app"), content=raw, headers=headers), 400, "BadRequest"
                )


async def test_bodies_of_other_media_types_are_unsupported(client, unchanged):
    async with unchanged():
        for content_type in ["text/plain", "application/xml", "application/vnd.kubernetes.protobuf", "image/png"]:
            body = b'{"metadata": {"name": "app"}}'
            r = await client.post(streams("team"), content=body, headers={"Content-Type": content_type})
            assert_status(r, 415, "UnsupportedMediaType")


async def test_yaml_values_that_are_no_json_types_are_invalid(client, unchanged):
    yaml_type = {"Content-Type": "application/yaml"}
    async with unchanged():
        for raw, field in [
            (b"metadata: {name: app, labels: {when: 2024-01-01}}\n", "metadata.labels.when"),
            (b"metadata: {name: 2024-01-01}\n", "metadata.name"),
            (b"metadata: {name: app, annotations: {a: !!binary aGVsbG8=}}\n", "metadata.annotations.a"),
            (b"metadata: {name: app, labels: {1: a}}\n", "metadata.labels"),
        ]:
            status = assert_status(await client.post(streams("team"), content=raw, headers=yaml_type), 422, "Invalid")
            assert any(f.startswith(field) for f in causes(status)), status


async def test_yaml_aliases_do_not_blow_a_small_body_up_in_a_dry_run_answer(client, unchanged):
    # 417 bytes of YAML whose aliases expand to about 600,000 strings, under a field the
    # stored object does not keep; a dry run answers what a create would (a small object),
    # never the expanded body. (Nine more levels of aliases would exhaust the server's memory.)
    levels = [
        'a0: &a0 ["xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx","xxxxxxxx"]'
    ]
    levels += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 6)]
    body = "metadata:\n  name: bomb\n  ownerReferences:\n    - " + "\n      ".join(levels) + "\n"
    async with unchanged():
        r = await client.post(
            streams("team"),
            params={"dryRun": "All"},
            content=body.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        size = len(r.content)
        assert r.status_code in (201, 400, 422), r.status_code
        assert size < 64 * 1024, f"a {len(body)}-byte body answered with {size} bytes"


async def test_a_body_over_3_mib_is_request_entity_too_large(client, unchanged):
    big = json.dumps({**stream_body("app"), "x": "a" * (3 << 20)}).encode()
    async with unchanged():
        r = await client.post(streams("team"), content=big, headers={"Content-Type": "application/json"})
        status = assert_status(r, 413, "RequestEntityTooLarge")
        assert "3145728" in status["message"]


async def test_methods_a_resource_does_not_take_are_method_not_allowed(client, unchanged):
    async with unchanged():
        for method, path in [
            ("PUT", streams("team")),
            ("DELETE", streams("team")),
            ("PATCH", streams("team")),
            ("POST", streams("team", "app")),
            ("POST", f"{API}/namespaces/team/imagestreamimages/app@sha256:{'0' * 64}"),
            ("DELETE", f"{API}/namespaces/team/imagestreamimages/app@sha256:{'0' * 64}"),
            ("POST", f"{API}/images"),
            ("PUT", f"{API}/images/sha256:{'0' * 64}"),
            ("POST", f"{API}/imagestreams"),
            ("POST", f"{API}/imagestreamtags"),
        ]:
            r = await client.request(method, path, json=stream_body("app"))
            assert_status(r, 405, "MethodNotAllowed")


# -- what tags point at --------------------------------------------------------------------------


async def test_tags_pointing_at_images_that_do_not_exist_are_invalid(client, unchanged, app_stream):
    async with unchanged():
        for source, field in [
            (tag_ref("t", "ImageStreamTag", "app:nope"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamTag", "nostream:v1"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamTag", "app:v1", namespace="elsewhere"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamImage", f"app@sha256:{'1' * 64}"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamImage", "app@notadigest"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamImage", "app@sha256:abc"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamTag", "a:b:c"), "spec.tags[0].from.name"),
            (tag_ref("t", "ImageStreamTag", ""), "spec.tags[0].from.name"),
            (tag_ref("t", "Image", "whatever"), "spec.tags[0].from.kind"),
            ({"name": "t", "from": {"kind": "ImageStreamTag"}}, "spec.tags[0].from.name"),
        ]:
            # On create no stream is made at all; on update nothing changes.
            status = invalid(await client.post(streams("team"), json=stream_body("new", tags=[source])), field)
            assert status["details"]["name"] == "new"
            body = json.loads(json.dumps(app_stream))
            body["spec"]["tags"] = [source]
            invalid(await client.put(streams("team", "app"), json=body), field)


async def test_image_stream_tags_pointing_at_nothing_are_invalid_and_create_no_stream(client, unchanged, app_stream):
    async with unchanged():
        for source in (
            {"kind": "ImageStreamTag", "name": "app:nope"},
            {"kind": "ImageStreamTag", "name": "nostream:v1"},
            {"kind": "ImageStreamImage", "name": f"app@sha256:{'1' * 64}"},
            {"kind": "ImageStreamImage", "name": "app@latest"},
        ):
            status = assert_status(
                await client.post(istags("team"), json={"metadata": {"name": "fresh:t"}, "tag": {"from": source}}),
                422,
                "Invalid",
            )
            assert status["details"]["causes"], status
            body = {"metadata": {"name": "app:v1"}, "tag": {"from": source}}
            assert_status(await client.put(istags("team", "app:v1"), json=body), 422, "Invalid")
        # An istag must point somewhere.
        for tag in (None, {}, {"name": "t"}):
            r = await client.post(istags("team"), json={"metadata": {"name": "fresh:t"}, "tag": tag})
            assert_status(r, 422, "Invalid")


async def test_a_tag_pointing_at_itself_is_invalid(client, unchanged, app_stream):
    async with unchanged():
        for tags in (
            [tag_ref("a", "ImageStreamTag", "a")],
            [tag_ref("a", "ImageStreamTag", "app:a")],
            [tag_ref("a", "ImageStreamTag", "app:a", namespace="team")],
        ):
            body = json.loads(json.dumps(app_stream))
            body["spec"]["tags"] = tags
            status = invalid(await client.put(streams("team", "app"), json=body), "spec.tags[0].from")
            assert "itself" in status["message"]
            source = tags[0]["from"]
            r = await client.post(istags("team"), json=istag_body("app:a", source["kind"], source["name"]))
            invalid(r, "spec.tags[0].from")


CYCLES = [
    [tag_ref("a", "ImageStreamTag", "b"), tag_ref("b", "ImageStreamTag", "a")],
    [tag_ref("a", "ImageStreamTag", "b"), tag_ref("b", "ImageStreamTag", "c"), tag_ref("c", "ImageStreamTag", "a")],
    [tag_ref("a", "ImageStreamTag", "b"), tag_ref("b", "ImageStreamTag", "c"), tag_ref("c", "ImageStreamTag", "b")],
]


async def test_tags_referring_to_each_other_in_a_cycle_are_invalid(client, unchanged, app_stream):
    async with unchanged():
        for tags in CYCLES:
            body = json.loads(json.dumps(app_stream))
            body["spec"]["tags"] = tags
            invalid(await client.put(streams("team", "app"), json=body), "spec.tags[0].from")
            invalid(await client.post(streams("team"), json=stream_body("new", tags=tags)), "spec.tags[0].from")


async def test_a_cycle_is_reported_as_a_cycle(client, unchanged, app_stream):
    # None of these tags points at itself: the message must say what is wrong.
    async with unchanged():
        for tags in CYCLES:
            body = json.loads(json.dumps(app_stream))
            body["spec"]["tags"] = tags
            status = invalid(await client.put(streams("team", "app"), json=body), "spec.tags[0].from")
            assert "cycle" in status["message"], status["message"]


# -- resourceVersions ----------------------------------------------------------------------------


BAD_VERSIONS = ["abc", "-1", "1.5", "1e5", " 7", "7 ", "0x10", "+7", "99999999999999999999", "9223372036854775808"]
LISTS = [streams("team"), f"{API}/imagestreams", istags("team"), f"{API}/imagestreamtags", f"{API}/images"]


async def test_malformed_resource_versions_in_objects_are_bad_requests(client, unchanged, app_stream):
    async with unchanged():
        for version in BAD_VERSIONS:
            body = {**app_stream, "metadata": {**app_stream["metadata"], "resourceVersion": version}}
            assert_status(await client.put(streams("team", "app"), json=body), 400, "BadRequest")
            patch = {"metadata": {"resourceVersion": version, "labels": {"x": "y"}}}
            assert_status(await client.patch(streams("team", "app"), json=patch, headers=MERGE), 400, "BadRequest")
            tag = istag_body("app:v1", "ImageStreamTag", "v1", resourceVersion=version)
            assert_status(await client.put(istags("team", "app:v1"), json=tag), 400, "BadRequest")
            options = {"preconditions": {"resourceVersion": version}}
            assert_status(await client.request("DELETE", streams("team", "app"), json=options), 400, "BadRequest")


async def test_malformed_resource_versions_in_list_and_watch_queries_are_bad_requests(client, app_stream):
    for version in BAD_VERSIONS:
        for path in LISTS:
            for extra in ({}, {"watch": "true"}):
                r = await client.get(path, params={"resourceVersion": version, **extra})
                assert_status(r, 400, "BadRequest")


async def test_numbers_in_other_scripts_are_no_resource_versions_or_limits(client, unchanged, app_stream):
    # Arabic-Indic 12 and 1: Python's \d and isdigit() take them, Kubernetes does not.
    twelve, one = "\u0661\u0662", "\u0661"
    async with unchanged():
        body = {**app_stream, "metadata": {**app_stream["metadata"], "resourceVersion": twelve}}
        assert_status(await client.put(streams("team", "app"), json=body), 400, "BadRequest")
        assert_status(await client.get(streams("team"), params={"resourceVersion": twelve}), 400, "BadRequest")
        assert_status(await client.get(streams("team"), params={"limit": one}), 400, "BadRequest")


async def test_malformed_delete_options_are_refused(client, unchanged, app_stream):
    async with unchanged():
        failures = []
        for options in (
            {"preconditions": {"resourceVersion": 5}},
            {"preconditions": "x"},
            {"preconditions": ["x"]},
            {"preconditions": {"uid": 7}},
        ):
            r = await client.request("DELETE", streams("team", "app"), json=options)
            if r.status_code not in (400, 422) or r.json().get("reason") not in ("BadRequest", "Invalid"):
                failures.append((options, r.status_code, r.text[:300]))
        assert not failures, report(failures)


async def test_delete_with_a_uid_precondition_of_another_object_is_a_conflict(client, unchanged, app_stream):
    # A controller deleting the object it saw must not delete one re-created under its name.
    async with unchanged():
        options = {"preconditions": {"uid": "6f1e0b7a-0000-4000-8000-000000000000"}}
        assert_status(await client.request("DELETE", streams("team", "app"), json=options), 409, "Conflict")
    options = {"preconditions": {"uid": app_stream["metadata"]["uid"]}}
    r = await client.request("DELETE", streams("team", "app"), json=options)
    assert r.status_code == 200, r.text


# -- list parameters -----------------------------------------------------------------------------


def token(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_garbage_continue_tokens_are_bad_requests(client, app_stream):
    for value in [
        "garbage",
        "%%%",
        "é",
        token(b"\xff\xfe"),
        token([1]),
        token({"rv": "x", "start": "a"}),
        token({"rv": -1, "start": "a"}),
        token({"rv": 1}),
        token({"start": "a"}),
        token({"rv": 1, "start": 5}),
        token({"rv": 1.5, "start": "a"}),
        "x" * 10_000,
    ]:
        for path in LISTS:
            assert_status(await client.get(path, params={"continue": value, "limit": "1"}), 400, "BadRequest")


async def test_a_continue_token_with_a_boolean_version_is_a_bad_request(client, app_stream):
    assert_status(
        await client.get(streams("team"), params={"continue": token({"rv": True, "start": "a"})}), 400, "BadRequest"
    )


async def test_garbage_limits_are_bad_requests(client):
    for value in ["abc", "-1", "1.5", "1e3", " 1", "0x1", "+1"]:
        for path in LISTS:
            assert_status(await client.get(path, params={"limit": value}), 400, "BadRequest")


async def test_garbage_label_selectors_are_bad_requests(client, app_stream):
    for selector in [
        "a in (x,y",
        "a in ()",
        "a in x",
        "=b",
        "a!",
        "!",
        ",",
        "a,,b",
        "a b",
        "a=b=c",
        "a===b",
        "!a=b",
        "a=" + "x" * 64,
        "k" * 64 + "=v",
        "bad key!=v",
        "(",
        "a notin",
        "x" * 5000,
    ]:
        for path in LISTS:
            assert_status(await client.get(path, params={"labelSelector": selector}), 400, "BadRequest")


async def test_garbage_field_selectors_and_list_parameters_are_bad_requests(client, app_stream):
    for selector in ["metadata.name", "spec.tags=x", "status=1", "metadata.labels=a", "=x", ","]:
        for path in LISTS:
            assert_status(await client.get(path, params={"fieldSelector": selector}), 400, "BadRequest")
    for params in (
        {"watch": "true", "timeoutSeconds": "abc"},
        {"watch": "true", "timeoutSeconds": "-1"},
        {"watch": "true", "timeoutSeconds": "1e3"},
        {"includeObject": "Everything"},
    ):
        assert_status(await client.get(streams("team"), params=params, headers={"Accept": TABLE}), 400, "BadRequest")


async def test_garbage_dry_run_values_are_bad_requests(client, unchanged, app_stream):
    async with unchanged():
        for value in ["Yes", "true", "all", "None"]:
            q = {"dryRun": value}
            assert_status(await client.post(streams("team"), params=q, json=stream_body("new")), 400, "BadRequest")
            assert_status(await client.put(streams("team", "app"), params=q, json=app_stream), 400, "BadRequest")
            r = await client.patch(streams("team", "app"), params=q, json={"metadata": {"labels": {}}}, headers=MERGE)
            assert_status(r, 400, "BadRequest")
            assert_status(await client.delete(streams("team", "app"), params=q), 400, "BadRequest")
            assert_status(await client.delete(istags("team", "app:v1"), params=q), 400, "BadRequest")


async def test_refusals_of_one_stream_leave_the_others_untouched(client, unchanged, app_stream):
    await create_stream(client, "team", "other", labels={"a": "b"})
    async with unchanged():
        assert_status(await client.post(streams("team"), json=stream_body("other")), 409, "AlreadyExists")
        # Validation comes first, as in Kubernetes.
        bad_source = stream_body("other", tags=[tag_ref("x", "ImageStreamTag", "nope:nope")])
        invalid(await client.post(streams("team"), json=bad_source), "spec.tags[0].from.name")
        stale = stream_body("other", resourceVersion=app_stream["metadata"]["resourceVersion"])
        assert_status(await client.put(streams("team", "other"), json=stale), 409, "Conflict")
