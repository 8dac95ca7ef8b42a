"""Measure webhook delivery: latency from commit to receipt under a steady push rate, and how
fast a backlog drains once a receiver comes back.

Starts `okura serve` (SQLite + filesystem, or --database-url) in a temporary directory with one
webhook endpoint pointing at a receiver in this process (an asyncio HTTP server that timestamps
every event it gets). Then:
- latency: PUTs manifests (one image, new tags t0, t1, ...) at --rate per second for --seconds;
  each push event's latency is its receipt time minus its `timestamp` (the time it was appended,
  in the transaction that committed it; same clock). Reports p50, p99 and max.
- backlog: the receiver answers 503 while --backlog manifests are pushed as fast as possible,
  then 200; reports how many events per second arrive until the log is drained (the endpoint's
  batches carry up to 100 events).

    .venv/bin/python scripts/measure_notifications.py
    .venv/bin/python scripts/measure_notifications.py --rate 100 --seconds 20 --backlog 20000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Receiver:
    """Counts events and their receipt times; answers `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.latencies: list[float] = []
        self.received: list[float] = []  # receipt time of every event
        self.ids: set[str] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time()
                status = self.status
                if status == 200:
                    for event in json.loads(body)["events"]:
                        if event["id"] in self.ids:
                            continue
                        self.ids.add(event["id"])
                        self.received.append(now)
                        if event["target"].get("mediaType") == OCI_MANIFEST:
                            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                            self.latencies.append(now - stamp)
                reason = b"OK" if status == 200 else b"Unavailable"
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n" % (status, reason))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_okura(work: Path, hook_url: str, database_url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    hook = {"name": "bench", "url": hook_url, "backoff": "100ms", "max_backoff": "500ms"}
    env.update(OKURA_LOG_ACCESS_LOG="false", OKURA_NOTIFICATIONS_ENDPOINTS=json.dumps([hook]))
    if database_url:
        env["OKURA_DATABASE_URL"] = database_url
    argv = [str(ROOT / ".venv/bin/okura"), "serve", "--data-dir", str(work / "data"), "--addr", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=(work / "okura.log").open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit("okura did not start; see " + str(work / "okura.log"))


async def prepare_image(client: httpx.AsyncClient) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(1024)
    for data in (config, layer):
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        r = await client.post("/v2/bench/app/blobs/uploads/", params={"digest": digest}, content=data)
        r.raise_for_status()

    def descriptor(media_type: str, data: bytes) -> dict:
        return {"mediaType": media_type, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}", "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }
    return json.dumps(manifest).encode()


async def put(client: httpx.AsyncClient, manifest: bytes, tag: str) -> None:
    r = await client.put(f"/v2/bench/app/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    r.raise_for_status()


async def measure(args: argparse.Namespace) -> dict:
    receiver = Receiver()
    await receiver.start()
    work = Path(tempfile.mkdtemp(prefix="okura-notify-bench-"))
    proc, url = start_okura(work, f"http://127.0.0.1:{receiver.port}/hook", args.database_url)
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            manifest = await prepare_image(client)
            await asyncio.sleep(1)
            baseline = len(receiver.ids)
            # 1. steady rate
            total = int(args.rate * args.seconds)
            # Pushes start on a fixed schedule, each in its own task: the rate holds even when a
            # single push takes longer than 1/rate.
            start = time.monotonic()
            running = []
            for i in range(total):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                running.append(asyncio.create_task(put(client, manifest, f"t{i}")))
            await asyncio.gather(*running)
            achieved = total / (time.monotonic() - start)
            deadline = time.monotonic() + 30
            while len(receiver.latencies) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            lat = sorted(receiver.latencies)
            # 2. backlog
            receiver.status = 503
            for i in range(args.backlog):
                await put(client, manifest, f"b{i}")
            expected = baseline + total + args.backlog
            receiver.status = 200
            resumed = time.time()
            deadline = time.monotonic() + 600
            while len(receiver.ids) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            drained = [t for t in receiver.received if t >= resumed]
            drain_seconds = (max(drained) - resumed) if drained else float("nan")
            return {
                "pushes": total,
                "push_rate_achieved": round(achieved, 1),
                "latency_ms": {
                    "p50": round(1000 * statistics.median(lat), 1),
                    "p99": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
                    "max": round(1000 * lat[-1], 1),
                    "received": len(lat),
                },
                "backlog_events": len(drained),
                "backlog_seconds": round(drain_seconds, 2),
                "backlog_events_per_second": round(len(drained) / drain_seconds, 1) if drained else 0,
            }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if receiver.server is not None:
            receiver.server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="manifest pushes per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=10_000, help="pushes made while the receiver is down")
    parser.add_argument("--database-url", help="PostgreSQL instead of SQLite")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
