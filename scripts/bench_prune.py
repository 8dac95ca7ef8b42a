"""Benchmark: prune 10,000 manifests across 1,000 repositories while clients push and pull.

Starts `okura serve` on a fresh data dir (SQLite, or PostgreSQL with --postgres URL),
seeds it over HTTP (per repository: 10 revisions of one tag, each a unique config, a
layer shared by the repository and a layer of its own), then measures client throughput
(manifest GETs, blob GETs and pushes of new images, 16 concurrent) for a few seconds while
idle, then again while `prune_images` runs (keep 3 revisions, nothing young), and prints
the run's duration and counts with both rates.

    .venv/bin/python scripts/bench_prune.py [--repos 1000] [--revisions 10] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from registry.app import build_registry
from registry.config import config_from_dict
from registry.pruning.images import PruneOptions, prune_images

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(c: httpx.AsyncClient, repo: str, data: bytes) -> dict:
    d = digest_of(data)
    r = await c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data)
    r.raise_for_status()
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)}


async def push_base(c: httpx.AsyncClient, repo: str) -> list[dict]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    cfg = await push_blob(c, repo, config)
    cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
    return [cfg, await push_blob(c, repo, os.urandom(2048))]


async def push_image(c: httpx.AsyncClient, repo: str, tag: str, base: list[dict]) -> str:
    """An image of the repository's config and shared layer (`base`, pushed once) plus a
    layer of its own."""
    layers = [base[1], await push_blob(c, repo, os.urandom(512))]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": base[0], "layers": layers}).encode()
    r = await c.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


async def seed(url: str, repos: int, revisions: int) -> None:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                repo = f"ns{i % 50}/repo{i}"
                base = await push_base(c, repo)
                for _ in range(revisions):
                    await push_image(c, repo, "latest", base)

        await asyncio.gather(*(one(i) for i in range(repos)))


async def load(url: str, repos: int, done: Callable[[], bool]) -> dict[str, float]:
    """Clients pulling manifests and blobs of the latest images and pushing new images,
    until done(); rates per second."""
    counts = {"pull_manifest": 0, "pull_blob": 0, "push_image": 0, "errors": 0}
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=16), timeout=60) as c:

        async def puller() -> None:
            while not done():
                repo = f"ns{(i := random.randrange(repos)) % 50}/repo{i}"
                r = await c.get(f"/v2/{repo}/manifests/latest", headers={"Accept": OCI_MANIFEST})
                if r.status_code != 200:
                    counts["errors"] += 1
                    continue
                counts["pull_manifest"] += 1
                for layer in r.json()["layers"]:
                    b = await c.get(f"/v2/{repo}/blobs/{layer['digest']}")
                    if b.status_code == 200 and digest_of(b.content) == layer["digest"]:
                        counts["pull_blob"] += 1
                    else:
                        counts["errors"] += 1

        async def pusher(n: int) -> None:
            base = await push_base(c, f"load/pusher{n}")
            while not done():
                try:
                    await push_image(c, f"load/pusher{n}", "latest", base)
                    counts["push_image"] += 1
                except httpx.HTTPStatusError:
                    counts["errors"] += 1

        started = time.monotonic()
        await asyncio.gather(*(puller() for _ in range(12)), *(pusher(n) for n in range(4)))
        elapsed = time.monotonic() - started
    return {"seconds": elapsed, **{k: (v / elapsed if k != "errors" else v) for k, v in counts.items()}}


def run_prune(data_dir: Path, db_url: str | None, out: dict) -> None:
    async def main() -> None:
        cfg = {"data_dir": str(data_dir)}
        if db_url:
            cfg["database"] = {"url": db_url}
        reg = build_registry(config_from_dict(cfg))
        await reg.storage.open()
        try:
            for confirm in (False, True):
                started = time.monotonic()
                options = PruneOptions(keep_tag_revisions=3, keep_younger_than=0, grace_period=60, confirm=confirm)
                report = await prune_images(reg, options)
                out["dry" if not confirm else "real"] = (time.monotonic() - started, report.counts())
        finally:
            await reg.storage.close()
            await reg.db.close()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--postgres", default="")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--load-seconds", type=float, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="okura-bench-prune-"))
    env = {**os.environ, "OKURA_LOG_ACCESS_LOG": "false"}
    if args.postgres:
        env["OKURA_DATABASE_URL"] = args.postgres
    server = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--data-dir", str(data_dir), "--addr", f"127.0.0.1:{args.port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        started = time.monotonic()
        asyncio.run(seed(url, args.repos, args.revisions))
        print(
            f"seeded {args.repos * args.revisions} manifests in {args.repos} repositories "
            f"in {time.monotonic() - started:.1f}s"
        )
        until = time.monotonic() + args.load_seconds
        idle = asyncio.run(load(url, args.repos, lambda: time.monotonic() > until))
        print("idle:   " + ", ".join(f"{k}={v:.1f}" for k, v in idle.items()))
        result: dict = {}
        pruner = threading.Thread(target=run_prune, args=(data_dir, args.postgres or None, result))
        pruner.start()
        during = asyncio.run(load(url, args.repos, lambda: not pruner.is_alive()))
        pruner.join()
        print("during: " + ", ".join(f"{k}={v:.1f}" for k, v in during.items()))
        for kind in ("dry", "real"):
            secs, counts = result[kind]
            print(f"prune {kind}: {secs:.2f}s {counts}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
