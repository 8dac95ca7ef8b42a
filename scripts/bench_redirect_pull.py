"""Blob pulls through S3 redirects (307 to a presigned URL), followed, on two registries
side by side: a 1 MiB blob at concurrency 16 for 8 s, and a 64 MiB blob 5 times (sha256
checked), twice each. regbench's load generators do not follow redirects, so this covers
what it cannot.

    .venv/bin/python scripts/bench_redirect_pull.py http://127.0.0.1:5000 http://127.0.0.1:5099
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time

import httpx

REPO = "bench/redirect"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push(c: httpx.AsyncClient, data: bytes) -> str:
    """POST then PUT (the form every registry accepts); keeps the session's query."""
    digest = digest_of(data)
    r = await c.post(f"/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    r = await c.put(location + ("&" if "?" in location else "?") + "digest=" + digest, content=data)
    assert r.status_code == 201, r.text
    return digest


async def measure(url: str, small: str, big: str) -> tuple[float, float, float]:
    """(small pulls per second, redirects per pull, MB/s of the median big pull)."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, follow_redirects=True, limits=limits) as c:
        pulls = redirects = 0
        deadline = time.monotonic() + 8

        async def worker() -> None:
            nonlocal pulls, redirects
            while time.monotonic() < deadline:
                r = await c.get(f"/v2/{REPO}/blobs/{small}")
                assert r.status_code == 200 and digest_of(r.content) == small
                redirects += len(r.history)
                pulls += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(16)))
        rate = pulls / (time.monotonic() - started)
        times = []
        for _ in range(5):
            started = time.monotonic()
            h = hashlib.sha256()
            size = 0
            async with c.stream("GET", f"/v2/{REPO}/blobs/{big}") as r:
                async for chunk in r.aiter_bytes(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
            assert "sha256:" + h.hexdigest() == big
            times.append(time.monotonic() - started)
        return rate, redirects / max(pulls, 1), size / 1e6 / sorted(times)[len(times) // 2]


async def main(a: str, b: str) -> None:
    small, big = os.urandom(1 << 20), os.urandom(64 << 20)
    digests = {}
    for url in (a, b):
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            digests = {"small": await push(c, small), "big": await push(c, big)}
    best: dict[str, list[float]] = {a: [0, 0, 0], b: [0, 0, 0]}
    for _ in range(2):
        for url in (a, b):
            rate, per_pull, mbs = await measure(url, digests["small"], digests["big"])
            best[url] = [max(best[url][0], rate), per_pull, max(best[url][2], mbs)]
    for url, (rate, per_pull, mbs) in best.items():
        print(f"{url}: 1 MiB pulls/s {rate:.0f} ({per_pull:.1f} redirects each), 64 MiB pull {mbs:.0f} MB/s")
    print(f"ratio A/B: 1 MiB pulls {best[a][0] / best[b][0]:.2f}, 64 MiB pull {best[a][2] / best[b][2]:.2f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
