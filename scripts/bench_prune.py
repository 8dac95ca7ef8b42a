"""Benchmark: prune 10,000 manifests across 1,000 repositories while clients push and pull.

Seeds a fresh data dir (SQLite, or PostgreSQL with --postgres URL) through the model: per
repository, 10 revisions of one tag, each with the repository's config and shared layer
and a layer of its own. Then starts `okura serve` on it and measures client throughput
(manifest GETs, blob GETs and pushes of new images, 16 concurrent) for a few seconds while
idle, then while `okura prune images` runs (keep 3 revisions, nothing young), as a dry run
and confirmed, and prints each run's wall time and summary with the rates.

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
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from registry.config import Config, load_config
from registry.model.context import Registry
from registry.model.manifests import put_manifest
from registry.model.uploads import monolithic_upload
from registry.runtime import open_runtime

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


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


async def seed(config: Config, repos: int, revisions: int) -> None:
    """Through the model (the code paths the HTTP handlers call), without HTTP: quicker."""
    async with open_runtime(config) as runtime:
        await _seed(runtime.registry, repos, revisions)


async def _seed(reg: Registry, repos: int, revisions: int) -> None:

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def blob(repo: str, data: bytes, media_type: str = LAYER) -> dict:
        digest = digest_of(data)
        await monolithic_upload(reg, repo, digest, body(data), len(data))
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            repo = f"ns{i % 50}/repo{i}"
            config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
            cfg = await blob(repo, config, "application/vnd.oci.image.config.v1+json")
            shared = await blob(repo, os.urandom(2048))
            for _ in range(revisions):
                layers = [shared, await blob(repo, os.urandom(512))]
                manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}
                await put_manifest(reg, repo, "latest", json.dumps(manifest).encode(), OCI_MANIFEST)

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--postgres", default="")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--load-seconds", type=float, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="okura-bench-prune-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    env["OKURA_LOG_ACCESS_LOG"] = "false"
    if args.postgres:
        env["OKURA_DATABASE_URL"] = args.postgres
    config = load_config(environ=env, overrides={"data_dir": str(data_dir)})
    started = time.monotonic()
    asyncio.run(seed(config, args.repos, args.revisions))
    print(
        f"seeded {args.repos * args.revisions} manifests in {args.repos} repositories "
        f"in {time.monotonic() - started:.1f}s"
    )
    okura = [sys.executable, "-m", "registry"]
    server = subprocess.Popen(
        [*okura, "serve", "--data-dir", str(data_dir), "--addr", f"127.0.0.1:{args.port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{args.port}"
    prune = [*okura, "prune", "images", "--data-dir", str(data_dir), "--keep-tag-revisions", "3"]
    prune += ["--keep-younger-than", "0s"]
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        until = time.monotonic() + args.load_seconds
        idle = asyncio.run(load(url, args.repos, lambda: time.monotonic() > until))
        print("idle:   " + ", ".join(f"{k}={v:.1f}" for k, v in idle.items()))
        for confirm in ([], ["--confirm"]):
            started = time.monotonic()
            with tempfile.TemporaryFile("w+") as output:  # a pipe could fill up and stall the run
                run = subprocess.Popen([*prune, *confirm], env=env, stdout=output, text=True)
                during = asyncio.run(load(url, args.repos, lambda run=run: run.poll() is not None))
                output.seek(0)
                out = output.read().strip().splitlines()
            kind = "real" if confirm else "dry run"
            print(f"prune ({kind}): {time.monotonic() - started:.2f}s wall incl. start-up; {out[-1]}")
            print("during: " + ", ".join(f"{k}={v:.1f}" for k, v in during.items()))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
