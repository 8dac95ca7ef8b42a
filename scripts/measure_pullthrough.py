"""Measure pull-through: a large layer pulled through Okura against the same layer pulled straight
from the upstream registry.

Starts CNCF distribution (the Debian `docker-registry` binary) and `okura serve` (SQLite +
filesystem) on loopback in a temporary directory, pushes an image with one random layer of
--size MiB to the upstream, imports it into Okura (POST imagestreamimports), then times, --rounds
times each (a fresh import into a new stream, so every first pull is a miss):
- direct: GET the blob from the upstream;
- through (miss): GET it through Okura, which streams it from the upstream while storing it;
- local (hit): GET it through Okura again, now from Okura's storage.
Every body is hashed and checked against the digest. Prints MiB/s and the ratios to direct.

    .venv/bin/python scripts/measure_pullthrough.py              # 256 MiB, 3 rounds
    .venv/bin/python scripts/measure_pullthrough.py --size 64 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: the server exited; log:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code in (200, 401):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} did not answer within 60 s")


def start_upstream(work: Path) -> tuple[subprocess.Popen, str]:
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed (apt install docker-registry)")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "upstream")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": os.urandom(8).hex()},
    }
    (work / "upstream.yml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    log = work / "upstream.log"
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(work / "upstream.yml")],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_for(f"http://127.0.0.1:{port}/v2/", proc, log)
    return proc, f"127.0.0.1:{port}"


def start_okura(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    env["OKURA_LOG_ACCESS_LOG"] = "false"
    log = work / "okura.log"
    argv = [str(ROOT / ".venv/bin/okura"), "serve", "--data-dir", str(work / "okura"), "--addr", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    wait_for(f"http://127.0.0.1:{port}/v2/", proc, log)
    return proc, f"127.0.0.1:{port}"


def push_blob_from_file(client: httpx.Client, repo: str, path: Path, digest: str) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    location = r.headers["Location"]
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"

    def body():
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    r = client.put(url, content=body(), headers={"Content-Length": str(path.stat().st_size)})
    r.raise_for_status()


def push_image(upstream: str, work: Path, size_mib: int) -> str:
    layer = work / "layer.bin"
    hasher = hashlib.sha256()
    with layer.open("wb") as f:
        for _ in range(size_mib):
            chunk = os.urandom(CHUNK)
            hasher.update(chunk)
            f.write(chunk)
    layer_digest = f"sha256:{hasher.hexdigest()}"
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    config_path = work / "config.json"
    config_path.write_bytes(config)
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    with httpx.Client(base_url=f"http://{upstream}", timeout=600) as client:
        push_blob_from_file(client, "bench/big", config_path, config_digest)
        push_blob_from_file(client, "bench/big", layer, layer_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer.stat().st_size,
                }
            ],
        }
        r = client.put(
            "/v2/bench/big/manifests/v1", content=json.dumps(manifest), headers={"Content-Type": OCI_MANIFEST}
        )
        r.raise_for_status()
    layer.unlink()
    return layer_digest


def timed_get(url: str, digest: str) -> float:
    hasher = hashlib.sha256()
    start = time.perf_counter()
    size = 0
    with httpx.stream("GET", url, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    elapsed = time.perf_counter() - start
    if f"sha256:{hasher.hexdigest()}" != digest:
        sys.exit(f"{url}: the body does not hash to {digest}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="layer size in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="okura-pullthrough-"))
    procs: list[subprocess.Popen] = []
    try:
        upstream_proc, upstream = start_upstream(work)
        procs.append(upstream_proc)
        okura_proc, okura = start_okura(work)
        procs.append(okura_proc)
        digest = push_image(upstream, work, args.size)
        times: dict[str, list[float]] = {"direct": [], "through (miss)": [], "local (hit)": []}
        for i in range(args.rounds):
            # A fresh stream each round, and the stored copy removed, so the first pull is a miss.
            stream = f"big{i}"
            body = {
                "kind": "ImageStreamImport",
                "apiVersion": "image.openshift.io/v1",
                "metadata": {"name": stream},
                "spec": {
                    "import": True,
                    "images": [
                        {
                            "from": {"kind": "DockerImage", "name": f"{upstream}/bench/big:v1"},
                            "to": {"name": "v1"},
                            "importPolicy": {"insecure": True},
                        }
                    ],
                },
            }
            r = httpx.post(f"http://{okura}/apis/image.openshift.io/v1/namespaces/bench/imagestreamimports", json=body)
            r.raise_for_status()
            status = r.json()["status"]["images"][0]["status"]
            if status["status"] != "Success":
                sys.exit(f"import failed: {status}")
            times["direct"].append(timed_get(f"http://{upstream}/v2/bench/big/blobs/{digest}", digest))
            times["through (miss)"].append(timed_get(f"http://{okura}/v2/bench/{stream}/blobs/{digest}", digest))
            times["local (hit)"].append(timed_get(f"http://{okura}/v2/bench/{stream}/blobs/{digest}", digest))
            stored = work / "okura" / "blobs"
            for path in stored.rglob(digest.partition(":")[2]):  # forget it: the next round misses again
                path.unlink()
            subprocess.run(
                [str(ROOT / ".venv/bin/python"), "-c", _FORGET, str(work / "okura" / "okura.db"), digest], check=True
            )
        direct = statistics.median(times["direct"])
        results = {}
        print(f"{args.size} MiB layer, {args.rounds} rounds, median of each (loopback, {os.cpu_count()} CPUs):")
        for name, values in times.items():
            median = statistics.median(values)
            rate = args.size / median
            results[name] = {"seconds": values, "median_s": median, "mib_per_s": rate, "vs_direct": direct / median}
            print(f"  {name:16s} {median:7.3f} s  {rate:8.1f} MiB/s  {direct / median:5.2f}x direct")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


# Drops the stored blob's rows (the file is gone): the next pull-through round is a miss again.
_FORGET = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("delete from repository_blobs where digest = ?", (sys.argv[2],))
db.execute("delete from blobs where digest = ?", (sys.argv[2],))
db.commit()
"""


if __name__ == "__main__":
    main()
