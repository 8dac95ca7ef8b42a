"""`okura get imagestreams|imagestream|image` as a subprocess on the database (and blob storage)
of an app the test filled over HTTP: tables for people, and `-o json` / `-o yaml` print exactly
the objects the API answers."""

from __future__ import annotations

import json

import httpx
import pytest_asyncio
import yaml

from tests.support.digests import sha256
from tests.support.http import push_image, put_manifest
from tests.support.media_types import OCI_INDEX, OCI_MANIFEST
from tests.support.processes import okura_on

API = "/apis/image.openshift.io/v1"
BASE_URL = "https://registry.example:5000"
HOST = "registry.example:5000"


@pytest_asyncio.fixture
async def served(make_app):
    """(app, client) with http.base_url set, so the API and the CLI name the same host."""
    app = await make_app(http={"base_url": BASE_URL, "public_url": "https://registry.apps.example"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        yield app, client


async def ok(app, *args: str) -> str:
    result = await okura_on(app, *args)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout


async def api(client, path: str) -> dict:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    return r.json()


def lines_with(text: str, *needles: str) -> list[int]:
    """Index of the first line holding each needle."""
    lines = text.splitlines()
    found = []
    for needle in needles:
        hits = [i for i, line in enumerate(lines) if needle in line]
        assert hits, (needle, text)
        found.append(hits[0])
    return found


async def test_get_imagestreams(served):
    app, client = served
    first, _ = await push_image(client, "team/app", "latest")
    v1, _ = await push_image(client, "team/app", "v1")
    second, _ = await push_image(client, "team/app", "latest")
    await push_image(client, "other/tool", "stable")

    # All namespaces: oc's columns, with NAMESPACE first.
    out = await ok(app, "get", "imagestreams")
    header, *rows = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "IMAGE", "REPOSITORY", "TAGS", "UPDATED"]
    assert rows[0].split()[:4] == ["other", "tool", f"{HOST}/other/tool", "stable"]
    assert rows[1].split()[:4] == ["team", "app", f"{HOST}/team/app", "latest,v1"]  # newest tag first
    assert all(row.endswith(" ago") for row in rows), rows

    out = await ok(app, "get", "is", "-n", "team")
    header, *rows = out.splitlines()
    assert header.split()[0] == "NAME" and len(rows) == 1 and rows[0].split()[0] == "app"

    # One stream: each tag, its current image first, then its history.
    out = await ok(app, "get", "imagestream", "team/app")
    assert f"{HOST}/team/app" in out
    current, previous, tagged = lines_with(out, second, first, v1)
    assert current < previous < tagged
    lines = out.splitlines()
    assert lines[current].split()[0] == "latest" and lines[tagged].split()[0] == "v1"
    assert lines[previous].split()[0] != "latest"  # a history row under its tag

    # -o json / -o yaml are the API objects.
    assert json.loads(await ok(app, "get", "imagestreams", "-o", "json")) == await api(client, f"{API}/imagestreams")
    stream = await api(client, f"{API}/namespaces/team/imagestreams/app")
    # The internal host (base_url) and the public one (public_url), as OpenShift shows both.
    assert stream["status"]["dockerImageRepository"] == f"{HOST}/team/app"
    assert stream["status"]["publicDockerImageRepository"] == "registry.apps.example/team/app"
    assert json.loads(await ok(app, "get", "is", "app", "-n", "team", "-o", "json")) == stream
    assert yaml.safe_load(await ok(app, "get", "imagestream", "team/app", "-o", "yaml")) == stream


async def test_get_image(served):
    app, client = served
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Labels": {"org.example.team": "blue"}},
        }
    ).encode()
    digest, body = await push_image(client, "team/app", "v1", layers=2, config=config)
    layers = [layer["digest"] for layer in json.loads(body)["layers"]]

    out = await ok(app, "get", "image", digest)
    assert digest in out and f"{HOST}/team/app@{digest}" in out
    assert "2024-01-02T03:04:05Z" in out and "linux/amd64" in out
    assert "org.example.team=blue" in out and sha256(config) in out
    assert lines_with(out, *layers) == sorted(lines_with(out, *layers))
    # The config comes from blob storage, so labels in JSON prove the CLI read it there.
    image = json.loads(await ok(app, "get", "image", digest, "-o", "json"))
    assert image == await api(client, f"{API}/images/{digest}")
    assert image["dockerImageMetadata"]["Config"]["Labels"] == {"org.example.team": "blue"}

    arm, arm_body = await push_image(client, "team/app")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm,
                    "size": len(arm_body),
                    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                }
            ],
        }
    ).encode()
    assert (await put_manifest(client, "team/app", "multi", index, OCI_INDEX)).status_code == 201
    out = await ok(app, "get", "image", sha256(index))
    assert arm in out and "linux/arm64/v8" in out


async def test_get_unknown_streams_and_images(served):
    app, client = served
    await push_image(client, "team/app", "v1")

    result = await okura_on(app, "get", "imagestream", "team/nope")
    assert result.returncode == 1 and result.stdout == ""
    assert 'imagestreams.image.openshift.io "nope" not found' in result.stderr

    missing = sha256(b"never pushed")
    result = await okura_on(app, "get", "image", missing)
    assert result.returncode == 1 and result.stdout == ""
    assert f'images.image.openshift.io "{missing}" not found' in result.stderr

    # An empty namespace is no error (as `oc get is`), a bare name without -n is a usage error.
    result = await okura_on(app, "get", "is", "-n", "empty")
    assert result.returncode == 0 and result.stdout == ""
    assert "No resources found in empty namespace." in result.stderr
    result = await okura_on(app, "get", "is", "app")
    assert result.returncode == 2 and "NS/NAME" in result.stderr
