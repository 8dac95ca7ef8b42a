"""Pushing and pulling a 512 MiB blob must not grow the server's memory with the blob."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.support.blobs import MiB, PatternBlob
from tests.support.rss import RssSampler, rss_kib

pytestmark = pytest.mark.e2e

SIZE = 512 * MiB
CHUNK = 8 * MiB
PEAK_LIMIT_MIB = 150


def _stream(blob: PatternBlob, hasher) -> object:
    for piece in blob.blocks():
        hasher.update(piece)
        yield piece


def test_memory_stays_flat(server):
    client = httpx.Client(base_url=server.url, timeout=120)
    repo = "big/app"
    # Warm the server up (imports, pools, first transactions) before taking its baseline.
    for _ in range(3):
        assert client.post(f"/v2/{repo}/blobs/uploads/").status_code == 202
    assert client.get("/healthz").status_code == 200

    # 1. One streamed PATCH (chunked transfer encoding, no Content-Length).
    first = PatternBlob(SIZE, seed=1)
    baseline = round(rss_kib(server.pid) / 1024)
    with RssSampler(server.pid) as rss:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        hasher = hashlib.sha256()
        r = client.patch(r.headers["Location"], content=_stream(first, hasher))
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{SIZE - 1}"
        first_digest = "sha256:" + hasher.hexdigest()
        r = client.put(r.headers["Location"], params={"digest": first_digest})
        assert r.status_code == 201, r.text
    assert rss.samples, "no RSS samples"
    peaks = [round(rss.peak_mib)]
    assert rss.peak_mib < PEAK_LIMIT_MIB, f"peak RSS {rss.peak_mib:.0f} MiB (baseline {baseline} MiB) streaming a PATCH"

    # 2. 8 MiB PATCHes with Content-Range, then the closing PUT.
    second = PatternBlob(SIZE, seed=2)
    with RssSampler(server.pid) as rss:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        hasher = hashlib.sha256()
        for start in range(0, SIZE, CHUNK):
            chunk = b"".join(second.blocks(start, start + CHUNK))
            hasher.update(chunk)
            r = client.patch(
                location,
                content=chunk,
                headers={
                    "Content-Range": f"{start}-{start + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        second_digest = "sha256:" + hasher.hexdigest()
        r = client.put(location, params={"digest": second_digest})
        assert r.status_code == 201, r.text
    assert rss.peak_mib < PEAK_LIMIT_MIB, f"peak RSS {rss.peak_mib:.0f} MiB during chunked PATCHes"
    peaks.append(round(rss.peak_mib))

    # 3. Pull both back, streaming.
    with RssSampler(server.pid) as rss:
        for digest in (first_digest, second_digest):
            with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
                assert r.status_code == 200
                assert int(r.headers["Content-Length"]) == SIZE
                hasher = hashlib.sha256()
                received = 0
                for chunk in r.iter_bytes():
                    hasher.update(chunk)
                    received += len(chunk)
            assert received == SIZE
            assert "sha256:" + hasher.hexdigest() == digest
        # a range near the end
        r = client.get(f"/v2/{repo}/blobs/{first_digest}", headers={"Range": f"bytes={SIZE - 10}-"})
        assert r.status_code == 206
        assert r.content == b"".join(first.blocks(SIZE - 10))
    assert rss.peak_mib < PEAK_LIMIT_MIB, f"peak RSS {rss.peak_mib:.0f} MiB streaming GETs"
    print(f"server RSS: baseline {baseline} MiB, peaks {peaks} MiB, GET peak {rss.peak_mib:.0f} MiB")
    client.close()
