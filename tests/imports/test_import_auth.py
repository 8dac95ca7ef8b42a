"""Imports with auth on (a real `okura serve`): importing needs `create imagestreamimports` in the
namespace (editors and above), pulling through needs only pull rights; pull secrets in the
`openshift` namespace serve every namespace, and the configured auth file plays the install pull
secret; a password is never in the server's log."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.registries import AuthRegistry, start_registry
from tests.support.upstreams import PASSWORD, USER, Distribution

API = "/apis/image.openshift.io/v1/namespaces"


def docker_config(host: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory, htpasswd_distribution: Distribution) -> Path:
    path = tmp_path_factory.mktemp("install-secret") / "config.json"
    path.write_text(json.dumps(docker_config(htpasswd_distribution.host)))
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[AuthRegistry]:
    for registry in start_registry(tmp_path_factory.mktemp("okura-import-auth"), auth=True):
        assert isinstance(registry, AuthRegistry)
        yield registry


def isi(name: str, source: str) -> dict[str, Any]:
    return {
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": name},
        "spec": {
            "import": True,
            "images": [
                {
                    "from": {"kind": "DockerImage", "name": source},
                    "to": {"name": "v1"},
                    "importPolicy": {"insecure": True},
                }
            ],
        },
    }


def test_editors_import_viewers_pull_through(registry: AuthRegistry, distribution: Distribution):
    editor = registry.account("importer", ("registry-editor", "team"))
    viewer = registry.account("reader", ("registry-viewer", "team"))
    source = f"{distribution.host}/test/app:v1"
    with registry.http(viewer) as c:
        r = c.post(f"{API}/team/imagestreamimports", json=isi("app", source))
        assert r.status_code == 403 and r.json()["kind"] == "Status", r.text
    with registry.http(editor) as c:
        r = c.post(f"{API}/team/imagestreamimports", json=isi("app", source))
        assert r.status_code == 201 and r.json()["status"]["images"][0]["status"]["status"] == "Success", r.text
        r = c.post(f"{API}/other/imagestreamimports", json=isi("app", source))
        assert r.status_code == 403, r.text  # no rights in another namespace
    layer = distribution.images["app"].layers[1]
    with registry.http(viewer) as c:
        r = c.get(f"/v2/team/app/blobs/{sha256(layer)}")
        assert r.status_code == 200 and r.content == layer
    with registry.http(anonymous=True) as c:
        assert c.get(f"/v2/team/app/blobs/{sha256(layer)}").status_code == 401


def test_openshift_namespace_secrets_serve_every_namespace(registry: AuthRegistry, htpasswd_distribution: Distribution):
    source = f"{htpasswd_distribution.host}/private/app:v1"
    with registry.http() as c:  # cluster-admin
        r = c.post(f"{API}/ns1/imagestreamimports", json=isi("private", source))
        assert r.json()["status"]["images"][0]["status"]["reason"] == "Unauthorized", r.text
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "samples-registry-credentials"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {
                ".dockerconfigjson": base64.b64encode(
                    json.dumps(docker_config(htpasswd_distribution.host)).encode()
                ).decode()
            },
        }
        assert c.post("/api/v1/namespaces/openshift/secrets", json=secret).status_code == 201
        for namespace in ("ns1", "ns2"):
            r = c.post(f"{API}/{namespace}/imagestreamimports", json=isi("private", source))
            assert r.json()["status"]["images"][0]["status"]["status"] == "Success", r.text
        assert c.delete("/api/v1/namespaces/openshift/secrets/samples-registry-credentials").status_code == 200
    registry.sync_log()
    assert PASSWORD not in registry.log_path.read_text()


def test_the_auth_file_plays_the_install_pull_secret(tmp_path, auth_file, htpasswd_distribution: Distribution):
    env = {"OKURA_IMPORTS_AUTH_FILE": str(auth_file)}
    for server in start_registry(tmp_path / "okura", env=env):
        source = f"{htpasswd_distribution.host}/private/app:v1"
        r = httpx.post(f"{server.url}{API}/any/imagestreamimports", json=isi("private", source), timeout=30)
        assert r.status_code == 201 and r.json()["status"]["images"][0]["status"]["status"] == "Success", r.text
        layer = htpasswd_distribution.images["app"].layers[0]
        r = httpx.get(f"{server.url}/v2/any/private/blobs/{sha256(layer)}", timeout=30)
        assert r.status_code == 200 and r.content == layer
