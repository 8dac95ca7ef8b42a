"""The registry's Config resource changes two running replicas (PostgreSQL + S3) live: a
change made through one replica takes effect on the other within the poll interval, without
a restart. readOnly, managementState (Removed, with a prune run that leaves storage alone),
logLevel, disableRedirect, routes; status readyReplicas, observedGeneration, conditions; and
a replica on a missing bucket."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.media_types import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from tests.support.processes import OKURA, okura_env
from tests.support.s3 import REPLICAS_BUCKET
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY
from tests.support.servers import OkuraServer, Replicas

pytestmark = pytest.mark.e2e

CONFIG = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"
MERGE = {"Content-Type": "application/merge-patch+json"}
DEADLINE = 10.0  # the poll interval is 0.3 s; a change must show well within this


def _env(seaweedfs: Any, pg_url: str, bucket: str = REPLICAS_BUCKET) -> dict[str, str]:
    return {
        "OKURA_DATABASE_URL": pg_url,
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": bucket,
        "OKURA_STORAGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
        "OKURA_STORAGE_S3_ROOT_PREFIX": "config-live",
        "OKURA_STORAGE_S3_REDIRECT": "true",
        "OKURA_INSTANCES_HEARTBEAT_INTERVAL": "0.5s",
        "OKURA_INSTANCES_HEARTBEAT_TIMEOUT": "2s",
        "OKURA_INSTANCES_CONFIG_POLL_INTERVAL": "0.3s",
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory, seaweedfs, pg_url) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("config-live")
    env = _env(seaweedfs, pg_url)
    a = OkuraServer(root / "a", env={**env, "OKURA_HTTP_INSTANCE_NAME": "registry-a"})
    b = OkuraServer(root / "b", env={**env, "OKURA_HTTP_INSTANCE_NAME": "registry-b"})
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        yield Replicas(a, b)
    finally:
        for server in (a, b):
            server.stop()


@pytest.fixture
def replicas(pair: Replicas) -> Iterator[Replicas]:
    """The pair, with the Config's spec put back to its defaults after each test."""
    yield pair
    r = httpx.put(f"{pair.a.url}{CONFIG}", json={"spec": {"replicas": 2}}, timeout=10)
    assert r.status_code == 200, r.text
    for server in pair:
        wait_for(lambda s=server: httpx.get(f"{s.url}/v2/", timeout=5).status_code == 200, "back to Managed")


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what}")
        time.sleep(0.1)


def patch(server: OkuraServer, spec: dict[str, Any]) -> dict[str, Any]:
    r = httpx.patch(f"{server.url}{CONFIG}", content=json.dumps({"spec": spec}), headers=MERGE, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def get_config(server: OkuraServer) -> dict[str, Any]:
    r = httpx.get(f"{server.url}{CONFIG}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def push_blob(server: OkuraServer, repo: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/{repo}/blobs/uploads/",
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )


def push_image(server: OkuraServer, repo: str, tag: str) -> tuple[str, list[str]]:
    """A small image (config + one layer); (manifest digest, blob digests)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    layer = os.urandom(4096)
    for data in (config, layer):
        assert push_blob(server, repo, data).status_code == 201
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    r = httpx.put(
        f"{server.url}/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}, timeout=30
    )
    assert r.status_code == 201, r.text
    return sha256(manifest), [sha256(config), sha256(layer)]


def oci_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    errors = r.json()["errors"]
    assert errors[0]["code"] == code, errors
    return errors[0]["message"]


def bucket_keys(seaweedfs: Any, bucket: str = REPLICAS_BUCKET) -> set[str]:
    client = seaweedfs.client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="config-live/"):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


# -- readOnly --------------------------------------------------------------------------------------


def test_read_only_refuses_writes_on_both_replicas_and_pulls_work(replicas):
    a, b = replicas
    digest, blobs = push_image(a, "live/ro", "v1")
    obj = patch(a, {"readOnly": True})
    assert obj["spec"]["readOnly"] is True

    # The replica the change went through refuses at once; the other within the poll interval.
    message = oci_error(push_blob(a, "live/ro", b"refused"), 405, "UNSUPPORTED")
    assert "read-only" in message
    wait_for(lambda: push_blob(b, "live/ro", b"refused").status_code == 405, "B read-only")
    for server in (a, b):
        r = push_blob(server, "live/ro", b"refused")
        oci_error(r, 405, "UNSUPPORTED")
        assert r.headers["Allow"] == "GET, HEAD"
        r = httpx.put(
            f"{server.url}/v2/live/ro/manifests/v2", content=b"{}", headers={"Content-Type": OCI_MANIFEST}, timeout=10
        )
        oci_error(r, 405, "UNSUPPORTED")
        oci_error(httpx.delete(f"{server.url}/v2/live/ro/manifests/{digest}", timeout=10), 405, "UNSUPPORTED")
        # Tag writes through the API are refused as a Kubernetes Status.
        r = httpx.post(
            f"{server.url}/apis/image.openshift.io/v1/namespaces/live/imagestreamtags",
            json={
                "apiVersion": "image.openshift.io/v1",
                "kind": "ImageStreamTag",
                "metadata": {"name": "ro:copy"},
                "tag": {"from": {"kind": "ImageStreamImage", "name": f"ro@{digest}"}},
            },
            timeout=10,
        )
        assert r.status_code == 405, r.text
        assert r.json()["kind"] == "Status" and r.json()["reason"] == "MethodNotAllowed"
        # Pulls and the metadata API keep working.
        r = httpx.get(f"{server.url}/v2/live/ro/manifests/v1", headers={"Accept": OCI_MANIFEST}, timeout=10)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        r = httpx.get(f"{server.url}/v2/live/ro/blobs/{blobs[1]}", timeout=10, follow_redirects=True)
        assert r.status_code == 200 and sha256(r.content) == blobs[1]
        assert httpx.get(f"{server.url}/apis/image.openshift.io/v1/namespaces/live/imagestreams/ro").status_code == 200

    patch(b, {"readOnly": False})
    wait_for(lambda: push_blob(a, "live/ro", b"accepted").status_code == 201, "A writable again")
    assert push_blob(b, "live/ro", b"accepted too").status_code == 201


# -- managementState -------------------------------------------------------------------------------


def test_removed_answers_503_keeps_the_api_and_prunes_metadata_only(replicas, seaweedfs, pg_url, tmp_path):
    a, b = replicas
    old, _ = push_image(a, "live/removed", "latest")
    new, _ = push_image(a, "live/removed", "latest")  # `old` is now an older revision of the tag
    assert old != new
    obj = patch(b, {"managementState": "Removed"})
    assert condition(obj, "Removed")["status"] == "True"

    for server in (b, a):
        wait_for(lambda s=server: httpx.get(f"{s.url}/v2/", timeout=5).status_code == 503, "registry removed")
        message = oci_error(httpx.get(f"{server.url}/v2/", timeout=5), 503, "UNAVAILABLE")
        assert "removed" in message
        r = httpx.get(f"{server.url}/v2/live/removed/manifests/latest", headers={"Accept": OCI_MANIFEST}, timeout=5)
        oci_error(r, 503, "UNAVAILABLE")
        oci_error(push_blob(server, "live/removed", b"x"), 503, "UNAVAILABLE")
        r = httpx.get(f"{server.url}/apis/image.openshift.io/v1/namespaces/live/imagestreams/removed", timeout=5)
        assert r.status_code == 200, r.text
        assert len(r.json()["status"]["tags"][0]["items"]) == 2

    obj = get_config(a)
    shown = {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}
    assert shown["Available"] == ("True", "Removed")
    assert shown["Progressing"] == ("False", "Removed")
    assert shown["Degraded"] == ("False", "Removed")
    assert shown["Removed"] == ("True", "Removed")

    # A confirmed prune run (the ImagePruner's pruneRegistry is true) prunes metadata only.
    before = bucket_keys(seaweedfs)
    env = okura_env(**_env(seaweedfs, pg_url), OKURA_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [OKURA, "prune", "images", "--confirm", "--keep-tag-revisions", "1", "--keep-younger-than", "0s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "storage is left untouched" in done.stderr
    assert bucket_keys(seaweedfs) == before
    r = httpx.get(f"{a.url}/apis/image.openshift.io/v1/namespaces/live/imagestreams/removed", timeout=5)
    items = r.json()["status"]["tags"][0]["items"]
    assert [i["image"] for i in items] == [new]  # the old revision's metadata went

    patch(a, {"managementState": "Managed"})
    for server in (a, b):
        wait_for(lambda s=server: httpx.get(f"{s.url}/v2/", timeout=5).status_code == 200, "managed again")
    r = httpx.get(f"{b.url}/v2/live/removed/manifests/latest", headers={"Accept": OCI_MANIFEST}, timeout=5)
    assert r.headers["Docker-Content-Digest"] == new


def test_unmanaged_stores_changes_without_applying_them(replicas):
    a, b = replicas
    patch(a, {"managementState": "Unmanaged", "readOnly": True})
    obj = get_config(b)
    assert obj["spec"]["readOnly"] is True
    assert condition(obj, "Available")["reason"] == "Unmanaged"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    time.sleep(1.0)  # three poll intervals: had it been applied, B would refuse pushes by now
    assert push_blob(b, "live/unmanaged", b"still writable").status_code == 201
    assert push_blob(a, "live/unmanaged", b"still writable here").status_code == 201
    patch(a, {"managementState": "Managed"})  # now it applies
    wait_for(lambda: push_blob(b, "live/unmanaged", b"x").status_code == 405, "readOnly applied on B")


# -- logLevel, disableRedirect, routes -------------------------------------------------------------


def _invalid_request(server: OkuraServer) -> None:
    """Something the server logs at debug level only (uvicorn's "Invalid HTTP request")."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            sock.recv(1024)


def test_log_level_changes_live(replicas):
    a, b = replicas
    _invalid_request(b)
    time.sleep(0.3)
    assert "level=debug" not in b.log_path.read_text()  # started at log level warning
    patch(a, {"logLevel": "Debug"})

    def debug_logged() -> bool:
        _invalid_request(b)
        time.sleep(0.1)
        return "Invalid HTTP request" in b.log_path.read_text()

    wait_for(debug_logged, "B logs at debug level")
    patch(a, {"logLevel": "Normal"})
    wait_for(lambda: get_config(b)["status"]["observedGeneration"] == get_config(b)["metadata"]["generation"], "B")
    size = b.log_path.stat().st_size
    _invalid_request(b)
    time.sleep(0.3)
    assert "level=debug" not in b.log_path.read_bytes()[size:].decode()


def test_disable_redirect_serves_blobs_through_the_registry(replicas):
    a, b = replicas
    data = os.urandom(100_000)
    assert push_blob(a, "live/redirect", data).status_code == 201
    url = f"{b.url}/v2/live/redirect/blobs/{sha256(data)}"
    assert httpx.get(url, timeout=10).status_code == 307
    patch(a, {"disableRedirect": True})

    def served() -> bool:
        r = httpx.get(url, timeout=10)
        return r.status_code == 200 and r.content == data

    wait_for(served, "B serves the bytes itself")
    patch(a, {"disableRedirect": False})
    wait_for(lambda: httpx.get(url, timeout=10).status_code == 307, "B redirects again")


def test_route_hostname_fills_public_references(replicas):
    a, b = replicas
    push_image(a, "live/public", "v1")
    stream = f"{b.url}/apis/image.openshift.io/v1/namespaces/live/imagestreams/public"
    assert "publicDockerImageRepository" not in httpx.get(stream, timeout=5).json()["status"]
    patch(a, {"routes": [{"name": "public-routes", "hostname": "registry.apps.example.com"}]})

    def public() -> str | None:
        return httpx.get(stream, timeout=5).json()["status"].get("publicDockerImageRepository")

    assert wait_for(public, "B shows the public route") == "registry.apps.example.com/live/public"


def wait_applied(server: OkuraServer, obj: dict[str, Any]) -> None:
    """Until every live replica has applied the object's generation (status.observedGeneration)."""
    generation = obj["metadata"]["generation"]
    wait_for(lambda: get_config(server)["status"]["observedGeneration"] == generation, "applied everywhere")


def test_request_limits_set_through_one_replica_hold_on_the_other(replicas):
    a, b = replicas
    wait_applied(b, patch(a, {"requests": {"write": {"maxRunning": 1, "maxInQueue": 0}}}))
    # An upload whose body never finishes holds B's one write slot.
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as holder:
        holder.sendall(
            f"POST /v2/live/limits/blobs/uploads/?digest={sha256(b'never sent')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{b.port}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\npartial".encode()
        )
        time.sleep(0.3)
        r = push_blob(b, "live/limits", b"second writer")
        oci_error(r, 429, "TOOMANYREQUESTS")
        assert int(r.headers["Retry-After"]) >= 1
        # Reads are not limited by the write limit, and A has slots of its own.
        assert httpx.get(f"{b.url}/v2/", timeout=5).status_code == 200
        assert push_blob(a, "live/limits", b"through A").status_code == 201
    wait_for(lambda: push_blob(b, "live/limits", b"after").status_code == 201, "the slot is given back")


# -- status ----------------------------------------------------------------------------------------


def test_status_counts_ready_replicas_and_observes_generations(replicas):
    a, b = replicas
    obj = patch(a, {"replicas": 2, "logLevel": "Debug"})
    generation = obj["metadata"]["generation"]

    def observed() -> dict[str, Any] | None:
        obj = get_config(b)
        return obj if obj["status"]["observedGeneration"] == generation else None

    obj = wait_for(observed, "both replicas applied the generation")
    assert obj["status"]["readyReplicas"] == 2
    assert obj["status"]["storage"]["s3"]["bucket"] == REPLICAS_BUCKET
    assert obj["status"]["storageManaged"] is False
    assert (condition(obj, "Available")["status"], condition(obj, "Available")["reason"]) == ("True", "Ready")
    assert condition(obj, "Progressing")["status"] == "False"
    assert condition(obj, "Degraded")["status"] == "False"
    assert condition(obj, "StorageExists")["status"] == "True"
    assert REPLICAS_BUCKET in condition(obj, "StorageExists")["message"]
    patch(a, {"replicas": 3})
    obj = wait_for(
        lambda: (o := get_config(a)) and condition(o, "Available")["reason"] == "MinimumAvailability" and o,
        "three wanted, two ready",
    )
    assert condition(obj, "Progressing")["status"] == "True"


def test_storage_cannot_be_changed_through_the_resource(replicas):
    a, _ = replicas
    r = httpx.patch(
        f"{a.url}{CONFIG}",
        content=json.dumps({"spec": {"storage": {"s3": {"bucket": "elsewhere"}}}}),
        headers=MERGE,
        timeout=10,
    )
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    assert "config file" in status["message"] and REPLICAS_BUCKET in status["message"]


def test_a_missing_bucket_shows_in_the_status_and_heals(tmp_path, seaweedfs, pg_url):
    """A third server on a bucket that does not exist (its own SQLite database): not ready,
    StorageExists False naming the bucket; once the bucket exists, it recovers by itself."""
    bucket = f"missing-{os.urandom(3).hex()}"
    env = _env(seaweedfs, pg_url, bucket)
    del env["OKURA_DATABASE_URL"]  # a database of its own
    server = OkuraServer(tmp_path / "lonely", env={**env, "OKURA_HTTP_INSTANCE_NAME": "lonely"})
    server.start(timeout=60)
    try:

        def storage_missing() -> dict[str, Any] | None:
            obj = get_config(server)
            return obj if condition(obj, "StorageExists")["status"] == "False" else None

        obj = wait_for(storage_missing, "StorageExists False")
        storage = condition(obj, "StorageExists")
        assert storage["reason"] == "NoSuchBucket"
        assert bucket in storage["message"]
        assert condition(obj, "Available")["status"] == "False"
        assert condition(obj, "Available")["reason"] == "NoReplicasAvailable"
        assert obj["status"]["readyReplicas"] == 0

        seaweedfs.client().create_bucket(Bucket=bucket)
        obj = wait_for(
            lambda: (o := get_config(server)) and condition(o, "StorageExists")["status"] == "True" and o,
            "StorageExists True once the bucket exists",
        )
        assert condition(obj, "Available")["reason"] == "Ready"
        assert obj["status"]["readyReplicas"] == 1
    finally:
        server.stop()
