"""Measure the Kubernetes-style image API: how soon a watch delivers a push, and how long lists take.

Watch latency: a watch on namespace `bench` is opened, then images are pushed one after
another to bench/app:t0, t1, ... through the /v2/ API (config and layer blobs by POST + PUT,
then the manifest PUT). For each push the latency is the time from the manifest PUT's
response arriving to the watcher reading the ADDED/MODIFIED event whose status.tags carry that
tag at the pushed digest (negative: the event was read before the PUT's response). The next
push starts once the event arrived; an event that does not arrive within --event-timeout
seconds fails the run. --watch-neighbours N first creates N more streams in `bench`.

List latency: 1,000 image streams are created in namespace `bench-list` (POST, timed; with
--tagged each also gets an image pushed to its tag `latest`), then the namespace list is
fetched as JSON and as a Table, the all-namespaces list as JSON, and the namespace list paged
with limit=500, each --lists times in turn; p50/p99 and response sizes are reported.

By default the script starts its own `okura serve` (SQLite + filesystem in a temporary data
dir) and stops it at the end; --database-url runs it on PostgreSQL (a database that holds no
`bench-list` streams yet), with --replicas 2 as two servers on that database sharing one
blob directory, watching on the first while pushing and listing through the second. --url
measures a running registry instead (auth off, or --token as a Bearer token).

    .venv/bin/python scripts/measure_api.py
    .venv/bin/python scripts/measure_api.py --pushes 200 --streams 1000 --lists 50 --json out.json
    .venv/bin/python scripts/measure_api.py --database-url postgresql://postgres@127.0.0.1/okura_bench --replicas 2
    .venv/bin/python scripts/measure_api.py --url http://127.0.0.1:5000 --token TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
API = "/apis/image.openshift.io/v1"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class MeasureError(Exception):
    """The measurement could not be made (a missing event, an unexpected answer)."""


# -- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """n, min, p50, p90, p99, max and mean of durations, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    out = {"n": len(ms), "min": min(ms), "mean": sum(ms) / len(ms)}
    out.update({f"p{p}": percentile(ms, p) for p in (50, 90, 99)})
    out["max"] = max(ms)
    return {k: v if k == "n" else round(v, 3) for k, v in out.items()}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- servers this script starts --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def okura_command() -> list[str]:
    """The venv's `okura` script, else `python -m registry`."""
    okura = Path(sys.executable).with_name("okura")
    return [str(okura)] if okura.exists() else [sys.executable, "-m", "registry"]


@dataclass
class Server:
    """One `okura serve` in a process group of its own, its output in `log_path`."""

    data_dir: Path
    env: dict[str, str]
    workers: int = 1
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".log")

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        argv = [*okura_command(), "serve", "--data-dir", str(self.data_dir), "--addr", f"127.0.0.1:{self.port}"]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OKURA_", "PROMETHEUS_"))}
        env.update(OKURA_LOG_ACCESS_LOG="false", OKURA_LOG_LEVEL="warning", **self.env)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        state = f"exited with {self.proc.returncode}" if self.proc.poll() is not None else f"silent for {timeout}s"
        raise MeasureError(f"okura serve {state}:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left of it after `grace` seconds."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def started_servers(args: argparse.Namespace) -> Iterator[list[Server]]:
    """The servers the options ask for, stopped (process groups killed) however the block ends."""
    with tempfile.TemporaryDirectory(prefix="okura-measure-") as tmp:
        env = {}
        if args.database_url:
            env["OKURA_DATABASE_URL"] = args.database_url
            env["OKURA_STORAGE_FILESYSTEM_ROOT"] = str(Path(tmp) / "blobs")  # shared by the replicas
        servers = [Server(Path(tmp) / f"replica-{i}", env, args.workers) for i in range(args.replicas)]
        try:
            for server in servers:  # one after another: the first one migrates the database
                server.start()
            yield servers
        except BaseException:
            for server in servers:
                if server.proc is not None and server.log_tail():
                    print(f"--- {server.log_path.name} (tail)\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()


def backend(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        return {"database": "unknown", "storage": "unknown", "servers": 1, "workers": None, "started": False}
    database = "postgresql" if args.database_url else "sqlite"
    return {
        "database": database,
        "storage": "filesystem",
        "servers": args.replicas,
        "workers": args.workers,
        "started": True,
    }


def describe(info: dict[str, Any]) -> str:
    if not info["started"]:
        return "a running registry (backend not known to this script)"
    replicas = f", {info['servers']} replicas on one database" if info["servers"] > 1 else ""
    return f"{info['database']} + {info['storage']} ({info['workers']} worker(s) per server{replicas})"


# -- pushing through /v2/ --------------------------------------------------------------------


def relative(location: str) -> str:
    url = httpx.URL(location)
    return url.raw_path.decode() if url.is_absolute_url else location


async def upload_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> dict[str, Any]:
    """POST an upload session, PUT the whole blob to its Location; the blob's descriptor."""
    digest = digest_of(data)
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    expect(r, 202)
    r = await client.put(
        relative(r.headers["Location"]),
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect(r, 201)
    return {"digest": digest, "size": len(data)}


def new_image() -> tuple[bytes, bytes]:
    """A distinct small image's config and layer."""
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    config["nonce"] = os.urandom(8).hex()
    return json.dumps(config).encode(), os.urandom(1024)


@dataclass
class Push:
    digest: str
    started: float  # perf_counter at the first blob request
    put_sent: float  # ... when the manifest PUT was sent
    put_done: float  # ... when its response was received


async def push_blobs(client: httpx.AsyncClient, repo: str) -> bytes:
    """Upload a new image's blobs; the manifest that names them."""
    config, layer = new_image()
    config_desc = await upload_blob(client, repo, config)
    layer_desc = await upload_blob(client, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config_desc},
        "layers": [{"mediaType": OCI_LAYER, **layer_desc}],
    }
    return json.dumps(manifest).encode()


async def put_manifest(client: httpx.AsyncClient, repo: str, tag: str, body: bytes) -> tuple[float, float]:
    """PUT the manifest; (perf_counter when sent, when its response arrived)."""
    sent = time.perf_counter()
    r = await client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    done = time.perf_counter()
    expect(r, 201)
    return sent, done


async def push_image(client: httpx.AsyncClient, repo: str, tag: str) -> Push:
    started = time.perf_counter()
    body = await push_blobs(client, repo)
    sent, done = await put_manifest(client, repo, tag, body)
    return Push(digest_of(body), started, sent, done)


def expect(r: httpx.Response, status: int) -> None:
    if r.status_code != status:
        raise MeasureError(f"{r.request.method} {r.request.url} answered {r.status_code}, not {status}: {r.text[:300]}")


# -- the watcher -----------------------------------------------------------------------------


@dataclass
class Watcher:
    """Reads a watch stream; resolves the future of each (stream, tag, image) it is waiting for
    with the perf_counter at which the first event carrying it was read."""

    client: httpx.AsyncClient
    namespace: str
    events: int = 0
    bytes: int = 0
    largest_event: int = 0
    waiting: dict[tuple[str, str, str], asyncio.Future[float]] = field(default_factory=dict)
    seen: dict[tuple[str, str, str], float] = field(default_factory=dict)
    ended: BaseException | None = None

    async def run(self, resource_version: str, ready: asyncio.Future[None]) -> None:
        params = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": "86400"}
        path = f"{API}/namespaces/{self.namespace}/imagestreams"
        try:
            async with self.client.stream("GET", path, params=params, timeout=httpx.Timeout(30, read=None)) as r:
                if r.status_code != 200:
                    await r.aread()
                    expect(r, 200)
                ready.set_result(None)
                async for line in r.aiter_lines():
                    at = time.perf_counter()  # the line is read: parsing it is the script's time
                    if line.strip():
                        self.bytes += len(line) + 1
                        self.largest_event = max(self.largest_event, len(line) + 1)
                        self.read(json.loads(line), at)
            raise MeasureError("the server ended the watch")
        except BaseException as e:
            self.fail(e)
            if not ready.done():
                ready.set_exception(e)
            raise

    def read(self, event: dict[str, Any], at: float) -> None:
        self.events += 1
        if event.get("type") not in ("ADDED", "MODIFIED"):
            return
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        for tag in (obj.get("status") or {}).get("tags") or []:
            for item in tag.get("items") or []:
                key = (name, tag.get("tag", ""), item.get("image", ""))
                if key in self.seen:
                    continue
                self.seen[key] = at
                future = self.waiting.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(at)

    def expect(self, stream: str, tag: str, image: str) -> asyncio.Future[float]:
        """A future for the first event carrying `image` at `tag` of `stream` (register before pushing)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        key = (stream, tag, image)
        if self.ended is not None:
            future.set_exception(MeasureError(f"the watch ended: {self.ended!r}"))
        elif key in self.seen:
            future.set_result(self.seen[key])
        else:
            self.waiting[key] = future
        return future

    def fail(self, error: BaseException) -> None:
        self.ended = error
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(MeasureError(f"the watch ended: {error!r}"))
        self.waiting.clear()


@contextlib.asynccontextmanager
async def watching(client: httpx.AsyncClient, namespace: str) -> AsyncIterator[Watcher]:
    """A watch on `namespace` from its list's resourceVersion, open until the block ends."""
    r = await client.get(f"{API}/namespaces/{namespace}/imagestreams", params={"limit": "1"})
    expect(r, 200)
    watcher = Watcher(client, namespace)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(watcher.run(r.json()["metadata"]["resourceVersion"], ready))
    try:
        await ready
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


# -- watch latency ---------------------------------------------------------------------------


async def push_and_watch(
    client: httpx.AsyncClient, watcher: Watcher, repo: str, tag: str, timeout: float
) -> tuple[Push, float]:
    """Push a new image to `repo`:`tag`; the push and when the watcher read its event."""
    started = time.perf_counter()
    body = await push_blobs(client, repo)
    digest = digest_of(body)
    arrived = watcher.expect(repo.partition("/")[2], tag, digest)
    sent, done = await put_manifest(client, repo, tag, body)
    try:
        return Push(digest, started, sent, done), await asyncio.wait_for(arrived, timeout)
    except TimeoutError:
        raise MeasureError(
            f"no watch event for {repo}:{tag} ({digest}) within {timeout:g} s of the manifest PUT's response "
            f"({watcher.events} events read so far)"
        ) from None


async def measure_watch(
    watch_client: httpx.AsyncClient, push_client: httpx.AsyncClient, args: argparse.Namespace
) -> dict[str, Any]:
    namespace = args.namespace
    repo = f"{namespace}/app"
    pushes: list[Push] = []
    arrivals: list[float] = []
    # Streams beside the one pushed to: the watch renders its namespace's changes among them.
    await create_streams(push_client, namespace, args.watch_neighbours, prefix="n", exist_ok=True)
    async with watching(watch_client, namespace) as watcher:
        for i in range(args.pushes):
            try:
                push, arrival = await push_and_watch(push_client, watcher, repo, f"t{i}", args.event_timeout)
            except MeasureError as e:
                raise MeasureError(f"push {i + 1}/{args.pushes}: {e}") from None
            pushes.append(push)
            arrivals.append(arrival)
            progress(f"watch: {i + 1}/{args.pushes} pushes")
        events, size, largest = watcher.events, watcher.bytes, watcher.largest_event
    latencies = [a - p.put_done for a, p in zip(arrivals, pushes, strict=True)]
    return {
        "namespace": namespace,
        "repository": repo,
        "neighbours": args.watch_neighbours,
        "pushes": len(pushes),
        "events_matched": len(arrivals),
        "events_read": events,
        "event_bytes_total": size,
        "event_bytes_largest": largest,
        "event_after_response_ms": stats_ms(latencies),
        "event_after_request_ms": stats_ms([a - p.put_sent for a, p in zip(arrivals, pushes, strict=True)]),
        "manifest_put_ms": stats_ms([p.put_done - p.put_sent for p in pushes]),
        "push_ms": stats_ms([p.put_done - p.started for p in pushes]),
        # In push order: the stream's events grow with its tags, and so may the latency.
        "event_after_response_samples_ms": [round(s * 1000, 3) for s in latencies],
    }


# -- list latency ----------------------------------------------------------------------------


async def ensure_empty(client: httpx.AsyncClient, namespace: str) -> None:
    r = await client.get(f"{API}/namespaces/{namespace}/imagestreams", params={"limit": "1"})
    expect(r, 200)
    if r.json()["items"]:
        raise MeasureError(f"namespace {namespace} already has image streams: pick another with --list-namespace")


async def create_streams(
    client: httpx.AsyncClient, namespace: str, count: int, prefix: str = "s", exist_ok: bool = False
) -> list[float]:
    """POST `count` image streams PREFIX0000...; each request's duration."""
    path = f"{API}/namespaces/{namespace}/imagestreams"
    durations = []
    for i in range(count):
        started = time.perf_counter()
        r = await client.post(path, json={"metadata": {"name": f"{prefix}{i:04d}"}})
        durations.append(time.perf_counter() - started)
        if not (exist_ok and r.status_code == 409):
            expect(r, 201)
        progress(f"created {i + 1}/{count} streams in {namespace}")
    return durations


async def tag_streams(client: httpx.AsyncClient, namespace: str, count: int) -> list[float]:
    """Push an image to each stream's tag `latest`; each push's duration."""
    durations = []
    for i in range(count):
        push = await push_image(client, f"{namespace}/s{i:04d}", "latest")
        durations.append(push.put_done - push.started)
        progress(f"list: tagged {i + 1}/{count} streams")
    return durations


@dataclass
class ListKind:
    """One way of listing, timed again and again."""

    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    page_limit: int | None = None
    durations: list[float] = field(default_factory=list)
    bytes: int = 0
    items: int = 0
    requests: int = 0

    async def fetch(self, client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        size = items = requests = 0
        token: str | None = None
        while True:
            params = {"limit": str(self.page_limit)} if self.page_limit else {}
            if token:
                params["continue"] = token
            r = await client.get(self.path, params=params, headers=self.headers)
            expect(r, 200)
            body = r.json()
            size += len(r.content)
            items += len(body.get("items", body.get("rows", [])))
            requests += 1
            token = body["metadata"].get("continue")
            if not token:
                break
        self.durations.append(time.perf_counter() - started)
        self.bytes, self.items, self.requests = size, items, requests

    def report(self) -> dict[str, Any]:
        s = stats_ms(self.durations)
        return {
            "p50_ms": s["p50"],
            "p99_ms": s["p99"],
            "max_ms": s["max"],
            "n": s["n"],
            "bytes": self.bytes,
            "items": self.items,
            "requests": self.requests,
        }


def list_kinds(namespace: str, page_limit: int) -> list[ListKind]:
    ns_path = f"{API}/namespaces/{namespace}/imagestreams"
    return [
        ListKind("namespace_json", ns_path),
        ListKind("namespace_table", ns_path, {"Accept": TABLE}),
        ListKind("all_namespaces_json", f"{API}/imagestreams"),
        ListKind(f"namespace_paged_limit_{page_limit}", ns_path, page_limit=page_limit),
    ]


async def measure_lists(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    namespace = args.list_namespace
    await ensure_empty(client, namespace)
    started = time.perf_counter()
    created = await create_streams(client, namespace, args.streams)
    out: dict[str, Any] = {
        "namespace": namespace,
        "streams": args.streams,
        "tagged": args.tagged,
        "create_ms": stats_ms(created),
        "create_total_s": round(time.perf_counter() - started, 3),
    }
    if args.tagged:
        started = time.perf_counter()
        out["tag_push_ms"] = stats_ms(await tag_streams(client, namespace, args.streams))
        out["tag_total_s"] = round(time.perf_counter() - started, 3)
    kinds = list_kinds(namespace, args.page_limit)
    for i in range(args.lists):
        for kind in kinds:  # interleaved, so that a slow moment of the machine hits all alike
            await kind.fetch(client)
        progress(f"list: round {i + 1}/{args.lists}")
    out["lists"] = {kind.name: kind.report() for kind in kinds}
    check_counts(out["lists"], args.streams)
    return out


def check_counts(lists: dict[str, dict[str, Any]], streams: int) -> None:
    for name, report in lists.items():
        if report["items"] < streams:
            raise MeasureError(f"{name} listed {report['items']} streams, fewer than the {streams} created")


# -- output ----------------------------------------------------------------------------------


_last_progress = 0.0


def progress(message: str) -> None:
    """A progress line on stderr when it is a terminal, at most 10 a second."""
    global _last_progress
    now = time.monotonic()
    if sys.stderr.isatty() and now - _last_progress > 0.1:
        _last_progress = now
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def clear_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def git_commit() -> str:
    def git(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False)

    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return f"{head}+dirty" if dirty else head


def row(label: str, cells: Sequence[object], width: int = 34) -> str:
    return f"  {label:<{width}}" + "".join(f"{c:>10}" for c in cells)


def fmt(ms: float) -> str:
    return f"{ms:.1f}" if abs(ms) < 1000 else f"{ms:,.0f}"


def render_watch(watch: dict[str, Any]) -> list[str]:
    lines = [
        f"watch: {watch['pushes']} pushes to {watch['repository']}"
        + (f" beside {watch['neighbours']:,} other streams" if watch["neighbours"] else "")
        + f", each event read ({watch['events_read']} events in all, {watch['event_bytes_total']:,} bytes, "
        f"the largest {watch['event_bytes_largest']:,})",
        row("(ms)", ["p50", "p90", "p99", "max"]),
    ]
    labels = {
        "event_after_response_ms": "event after manifest PUT response",
        "event_after_request_ms": "event after manifest PUT sent",
        "manifest_put_ms": "manifest PUT",
        "push_ms": "whole push (2 blobs + manifest)",
    }
    for key, label in labels.items():
        s = watch[key]
        lines.append(row(label, [fmt(s["p50"]), fmt(s["p90"]), fmt(s["p99"]), fmt(s["max"])]))
    return lines


def render_lists(lists: dict[str, Any]) -> list[str]:
    tagged = "each with a tag" if lists["tagged"] else "untagged"
    create = lists["create_ms"]
    lines = [
        f"list: {lists['streams']:,} streams in {lists['namespace']} ({tagged})",
        f"  create (POST, one by one): {lists['create_total_s']:.1f} s in all, "
        f"p50 {fmt(create['p50'])} ms, p99 {fmt(create['p99'])} ms",
    ]
    if "tag_push_ms" in lists:
        lines.append(f"  tag pushes: {lists['tag_total_s']:.1f} s in all, p50 {fmt(lists['tag_push_ms']['p50'])} ms")
    lines.append(row("(ms)", ["p50", "p99", "max", "bytes", "items", "requests"]))
    for name, r in lists["lists"].items():
        cells = [fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"]), f"{r['bytes']:,}", r["items"], r["requests"]]
        lines.append(row(name, cells))
    return lines


def render(report: dict[str, Any]) -> str:
    lines = [
        f"okura API measurements - commit {report['commit']}, {report['backend_description']}",
        f"command: {report['command']}",
        f"servers: {', '.join(report['urls'])}; host: {report['host']['cpus']} cpus, Python {report['host']['python']}",
        "",
    ]
    if report.get("watch"):
        lines += [*render_watch(report["watch"]), ""]
    if report.get("list"):
        lines += render_lists(report["list"])
    return "\n".join(lines).rstrip() + "\n"


# -- main ------------------------------------------------------------------------------------


def client(url: str, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=60)


async def measure(urls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    watch_url, work_url = urls[0], urls[-1]
    out: dict[str, Any] = {}
    async with client(watch_url, args.token) as watch_client, client(work_url, args.token) as work_client:
        if args.pushes:
            out["watch"] = await measure_watch(watch_client, work_client, args)
            out["watch"].update(watch_url=watch_url, push_url=work_url)
        if args.streams:
            out["list"] = await measure_lists(work_client, args)
            out["list"]["url"] = work_url
    clear_progress()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = backend(args)
    report: dict[str, Any] = {
        "command": shlex.join([os.path.relpath(sys.executable), os.path.relpath(__file__), *sys.argv[1:]]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": info,
        "backend_description": describe(info),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
    }
    if args.url:
        report["urls"] = [args.url.rstrip("/")]
        report.update(asyncio.run(measure(report["urls"], args)))
        return report
    with started_servers(args) as servers:
        report["urls"] = [s.url for s in servers]
        report.update(asyncio.run(measure(report["urls"], args)))
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", help="a running registry to measure (default: start okura serve here)")
    p.add_argument("--token", help="Bearer token for --url")
    p.add_argument("--database-url", help="run the started server(s) on this PostgreSQL database")
    p.add_argument("--replicas", type=int, default=1, choices=(1, 2), help="servers to start (2 needs --database-url)")
    p.add_argument("--workers", type=int, default=1, help="worker processes of each started server")
    p.add_argument("--pushes", type=int, default=200, help="pushes to time the watch with (0: skip)")
    p.add_argument("--event-timeout", type=float, default=10.0, help="seconds to wait for a push's watch event")
    p.add_argument("--namespace", default="bench", help="namespace of the watch and its pushes")
    p.add_argument(
        "--watch-neighbours", type=int, default=0, metavar="N", help="streams to create beside bench/app first"
    )
    p.add_argument("--streams", type=int, default=1000, help="image streams to create and list (0: skip)")
    p.add_argument("--list-namespace", default="bench-list", help="namespace of those streams (must hold none)")
    p.add_argument("--tagged", action="store_true", help="push an image to a tag of each listed stream")
    p.add_argument("--lists", type=int, default=50, help="times each list is fetched")
    p.add_argument("--page-limit", type=int, default=500, help="limit of the paged list")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON to FILE")
    args = p.parse_args(argv)
    if args.replicas > 1 and not args.database_url:
        p.error("--replicas 2 needs --database-url (replicas share a PostgreSQL database)")
    if args.url and (args.database_url or args.replicas > 1 or args.workers > 1):
        p.error("--url measures a running registry: --database-url, --replicas and --workers start servers")
    if args.token and not args.url:
        p.error("--token goes with --url (the servers started here run without auth)")
    if args.streams and args.lists < 1:
        p.error("--lists must be at least 1")
    return args


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that the servers started here are stopped.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    try:
        report = run(args)
    except MeasureError as e:
        clear_progress()
        print(f"measure_api: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        clear_progress()
        print("measure_api: interrupted", file=sys.stderr)
        return 130
    print(render(report), end="")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
