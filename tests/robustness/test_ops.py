"""Background purge of abandoned uploads, and the health endpoint."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.http import error_code

pytestmark = pytest.mark.e2e


def test_abandoned_uploads_are_purged(start_server):
    server = start_server(env={"OKURA_UPLOADS_PURGE_AGE": "1s", "OKURA_UPLOADS_PURGE_INTERVAL": "1s"})
    client = httpx.Client(base_url=server.url, timeout=30)

    r = client.post("/v2/purge/app/blobs/uploads/")
    assert r.status_code == 202
    abandoned = r.headers["Location"]
    abandoned_file = server.upload_dir / r.headers["Docker-Upload-UUID"]
    r = client.patch(abandoned, content=os.urandom(5000), headers={"Content-Range": "0-4999"})
    assert r.status_code == 202, r.text
    assert abandoned_file.stat().st_size == 5000

    # A session that keeps receiving chunks is not abandoned.
    r = client.post("/v2/purge/app/blobs/uploads/")
    active = r.headers["Location"]
    data = b""
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        part = os.urandom(1000)
        r = client.patch(active, content=part, headers={"Content-Range": f"{len(data)}-{len(data) + 999}"})
        assert r.status_code == 202, f"active upload lost after {len(data)} bytes: {r.text}"
        data += part
        active = r.headers["Location"]
        time.sleep(0.25)

    r = client.get(abandoned)
    assert r.status_code == 404, r.text
    assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert not abandoned_file.exists()
    r = client.patch(abandoned, content=b"late", headers={"Content-Range": "5000-5003"})
    assert r.status_code == 404

    r = client.put(active, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/purge/app/blobs/{sha256(data)}").content == data
    assert server.upload_files() == []
    client.close()


def test_healthz_reports_storage_failure(server):
    client = httpx.Client(base_url=server.url, timeout=30)
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"storage": "ok", "database": "ok"}}

    # The filesystem check needs <root>/blobs to be a directory and <root>/uploads writable;
    # chmod cannot take that away from root, so move the storage root aside.
    root = server.data_dir / "blobs"
    aside = server.data_dir / "blobs-aside"
    shutil.move(root, aside)
    try:
        start = time.monotonic()
        r = client.get("/healthz")
        assert time.monotonic() - start < 6
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["storage"].startswith("failed"), body
        assert body["checks"]["database"] == "ok"
        assert client.head("/healthz").status_code == 503
    finally:
        shutil.move(aside, root)

    r = client.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"storage": "ok", "database": "ok"}
    data = os.urandom(1000)  # and storage works again
    r = client.post("/v2/health/app/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    client.close()
