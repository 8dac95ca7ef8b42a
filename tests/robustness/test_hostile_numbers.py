"""Numbers far longer than any offset or size (5,000 digits, past Python's int-string
limit) in every place a client can put one: a precise 4xx, and the keep-alive
connection stays usable."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.support.digests import sha256

pytestmark = pytest.mark.e2e

HUGE = "9" * 5000


def test_hostile_numbers_get_4xx_and_the_connection_survives(server):
    data = os.urandom(1000)
    digest = sha256(data)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/num/app/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        session = client.post("/v2/num/app/blobs/uploads/").headers["Location"]
        manifest = json.dumps({"schemaVersion": 2, "config": {"size": 0}, "layers": []})
        cases = [
            ("GET", f"/v2/num/app/blobs/{digest}", {"Range": f"bytes=-{HUGE}"}, None, 416),
            ("GET", f"/v2/num/app/blobs/{digest}", {"Range": f"bytes={HUGE}-"}, None, 416),
            ("GET", f"/v2/num/app/blobs/{digest}", {"Range": f"bytes=0-{HUGE}"}, None, 416),
            ("PATCH", session, {"Content-Range": f"0-{HUGE}"}, b"abc", 416),
            ("PATCH", session, {"Content-Range": f"{HUGE}-{HUGE}"}, b"abc", 416),
            ("PUT", f"{session}?digest={sha256(b'abc')}", {"Content-Range": f"0-{HUGE}"}, b"abc", 416),
            ("GET", f"/v2/num/app/tags/list?n={HUGE}", {}, None, 400),
            ("GET", f"/v2/_catalog?n={HUGE}", {}, None, 400),
            (
                "PUT",
                "/v2/num/app/manifests/v1",
                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                manifest.replace('"size": 0', f'"size": {HUGE}').encode(),
                400,
            ),
            (
                "PUT",
                "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster",
                {"Content-Type": "application/yaml"},
                f"spec:\n  keepTagRevisions: {HUGE}\n".encode(),
                400,
            ),
            (
                "PATCH",
                "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster",
                {"Content-Type": "application/merge-patch+json"},
                f'{{"spec": {{"keepTagRevisions": {HUGE}}}}}'.encode(),
                400,
            ),
        ]
        for method, path, headers, body, status in cases:
            r = client.request(method, path, headers=headers, content=body)
            assert r.status_code == status, (method, path, headers, r.status_code, r.text[:300])
            assert client.get("/v2/").status_code == 200  # same connection, still usable
        # The session survived the refused chunks.
        r = client.get(session)
        assert r.status_code == 204 and r.headers["Range"] == "0-0"
    assert server.alive()
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
