"""A full data disk is an error answer, never a crash: reads go on, writes are refused
with a clear error, nothing of a refused write stays behind, and service resumes once
space is freed."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.support.blobs import MiB
from tests.support.digests import sha256

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_is_an_error_not_a_crash(start_server, tmpfs, workers):
    server = start_server(workers=workers, data_dir=tmpfs.path / "data")
    small = os.urandom(3000)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/v2/full/app/blobs/uploads/", params={"digest": sha256(small)}, content=small)
        assert r.status_code == 201, r.text
        filler = tmpfs.fill()

        # Reads of what is stored, and of what is not, are answered.
        for _ in range(3):
            assert client.head(f"/v2/full/app/blobs/{sha256(small)}").status_code == 200
            assert client.get(f"/v2/full/app/blobs/{sha256(small)}").content == small
            assert client.head(f"/v2/full/other{_}/blobs/{sha256(b'x')}").status_code == 404
            assert client.get("/v2/full/app/tags/list").status_code in (200, 404)

        # Writes are refused with an OCI error, and leave nothing behind: with 16 MiB free,
        # a 24 MiB chunk fills the disk halfway through and is refused.
        os.truncate(filler, filler.stat().st_size - 16 * MiB)
        free = os.statvfs(tmpfs.path).f_bavail * os.statvfs(tmpfs.path).f_frsize
        big = os.urandom(24 * MiB)
        r = client.post("/v2/full/app/blobs/uploads/", params={"digest": sha256(big)}, content=big)
        assert r.status_code in (503, 507), r.text
        assert r.json()["errors"][0]["message"]
        r = client.post("/v2/full/app/blobs/uploads/")
        if r.status_code == 202:  # a session could be recorded; its chunk cannot be stored
            location = r.headers["Location"]
            r = client.patch(location, content=big, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code in (503, 507), r.text
            assert client.get(location).headers.get("Range") in (None, "0-0")
        else:
            assert r.status_code in (503, 507), r.text
        assert server.alive(), server.log_tail()
        assert tmpfs.used_by("data/blobs/uploads") < 64 * 1024, "a refused chunk kept its bytes"
        now_free = os.statvfs(tmpfs.path).f_bavail * os.statvfs(tmpfs.path).f_frsize
        assert now_free > free - MiB, f"{(free - now_free) // MiB} MiB of refused uploads stayed on disk"

        # Space comes back: so does service.
        filler.unlink()
        r = client.post("/v2/full/app/blobs/uploads/", params={"digest": sha256(big)}, content=big)
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/full/app/blobs/{sha256(big)}").content == big
    log = server.log_path.read_text(errors="replace")
    assert "Bus error" not in log and "Traceback" not in log, log[-3000:]
