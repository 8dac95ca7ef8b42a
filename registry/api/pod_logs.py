"""GET /api/v1/namespaces/openshift-image-registry/pods/{name}/log: a server's recent log lines
(cluster-admins only), as `kubectl logs` reads a pod's.

Query: follow, sinceSeconds | sinceTime, tailLines, timestamps, limitBytes, container (only
registry) and previous (not kept: 400). Each server keeps its own lines in memory
(registry/logs.py LogRing): the server named answers itself; any other replica forwards the
request to it (same path, query and credentials, marked X-Okura-Forwarded so that it is never
forwarded again) and streams its answer through, follow included. A replica whose heartbeat
stopped is not asked: 503. With timestamps=true each line starts with its time, RFC 3339 with
nanoseconds, and a space, as kubectl logs --timestamps prints them.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from auth.access import API_SCOPE
from registry.api.pod_objects import CONTAINER
from registry.api.routing import RouteSpec, cluster_check, registry
from registry.config import Config
from registry.errors import RequestInvalid, ResourceNotFound, Unavailable
from registry.kube.meta import timestamp
from registry.logs import LogLine, LogRing, log_ring
from registry.model import instances
from registry.model.instances import Instance
from registry.model.registry_config_spec import NAMESPACE

FORWARDED = "X-Okura-Forwarded"
CHUNK = 64 << 10  # lines are sent in chunks of about this size
FOLLOW_CHECK = 1.0  # a quiet follower checks this often whether the server is draining
MEDIA_TYPE = "text/plain; charset=utf-8"

log_access = cluster_check("get", "pods/log", API_SCOPE)

_TRUE, _FALSE = ("true", "1", "t"), ("false", "0", "f", "")
_COUNT_RE = re.compile(r"[0-9]{1,15}")
_TIME_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)


# -- options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    since_ns: int | None = None
    tail: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def _flag(query: Mapping[str, str], key: str) -> bool:
    value = query.get(key, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RequestInvalid(f"{key} must be true or false, not {value[:20]!r}")


def _count(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    if not _COUNT_RE.fullmatch(value) or int(value) < minimum:
        raise RequestInvalid(f"{key} must be an integer of at least {minimum}, not {value[:20]!r}")
    return int(value)


def parse_time_ns(text: str) -> int:
    """An RFC 3339 time (fractions of a second up to nanoseconds) in nanoseconds since the
    epoch; ValueError when it is not one."""
    found = _TIME_RE.fullmatch(text)
    if found is None:
        raise ValueError(text)
    whole, fraction, zone = found.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def format_time_ns(time_ns: int) -> str:
    """RFC 3339 in UTC with nine fraction digits, as kubelet writes log timestamps."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    return f"{timestamp(datetime.fromtimestamp(seconds, UTC))[:-1]}.{fraction:09d}Z"


def log_options(query: Mapping[str, str], pod: str, now_ns: int) -> LogOptions:
    """The options of a log request; RequestInvalid (400) for any it cannot honour."""
    container = query.get("container", "")
    if container not in ("", CONTAINER):
        raise RequestInvalid(f"container {container[:100]} is not valid for pod {pod}")
    if _flag(query, "previous"):
        raise RequestInvalid(
            f'previous terminated container "{CONTAINER}" in pod "{pod}" not found: '
            "a server keeps only the lines of its current run"
        )
    since_seconds = _count(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime")
    if since_seconds is not None and since_time is not None:
        raise RequestInvalid("at most one of sinceTime or sinceSeconds may be specified")
    since_ns = None
    if since_seconds is not None:
        since_ns = now_ns - since_seconds * 1_000_000_000
    elif since_time is not None:
        try:
            since_ns = parse_time_ns(since_time)
        except ValueError:
            raise RequestInvalid(f"sinceTime must be an RFC 3339 time, not {since_time[:40]!r}") from None
    return LogOptions(
        follow=_flag(query, "follow"),
        since_ns=since_ns,
        tail=_count(query, "tailLines", 0),
        timestamps=_flag(query, "timestamps"),
        limit_bytes=_count(query, "limitBytes", 1),
    )


# -- this server's lines ----------------------------------------------------------------------------


def render(lines: Iterable[LogLine], timestamps: bool) -> bytes:
    if timestamps:
        return "".join(f"{format_time_ns(line.time_ns)} {line.text}\n" for line in lines).encode()
    return "".join(f"{line.text}\n" for line in lines).encode()


def _chunks(lines: list[LogLine], timestamps: bool) -> Iterable[bytes]:
    batch: list[LogLine] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line.text) + 40
        if size >= CHUNK:
            yield render(batch, timestamps)
            batch, size = [], 0
    if batch:
        yield render(batch, timestamps)


async def stream_lines(ring: LogRing | None, options: LogOptions, stop: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The lines the options select; then, following, every new line until `stop()` is true or
    the client leaves (the response is cancelled). limitBytes cuts the output, mid-line too."""
    budget = options.limit_bytes
    if ring is None:  # logging was not set up (an embedded app): nothing kept
        return
    lines, seq = ring.snapshot(options.since_ns, options.tail)
    batches: Iterable[bytes] = _chunks(lines, options.timestamps)
    while True:
        for chunk in batches:
            if budget is not None:
                chunk = chunk[:budget]
                budget -= len(chunk)
            if chunk:
                yield chunk
            if budget == 0:
                return
        if not options.follow or stop():
            return
        new = ring.after(seq)
        if new:
            seq = new[-1].seq
            batches = _chunks(new, options.timestamps)
        else:
            batches = ()
            await ring.wait(seq, FOLLOW_CHECK)


# -- another replica's lines ------------------------------------------------------------------------


def peer_ssl_context(config: Config) -> ssl.SSLContext:
    """What verifies another replica's certificate: the system's CAs, and this server's own
    certificate chain (replicas normally share one: any certificate of it is trusted as is)."""
    context = ssl.create_default_context()
    certificate = config.http.tls.certificate
    if certificate:
        with contextlib.suppress(OSError, ssl.SSLError):
            context.load_verify_locations(cafile=certificate)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


async def _forward(request: Request, target: Instance, follow: bool) -> Response:
    import httpx  # only once a log is asked of another replica

    base = target.url(socket.gethostname())
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {FORWARDED: "1"}
    if request.headers.get("authorization"):
        headers["Authorization"] = request.headers["authorization"]
    verify: Any = peer_ssl_context(registry(request).config) if target.scheme == "https" else True
    client = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(10.0, read=None if follow else 30.0))
    try:
        upstream = await client.send(client.build_request("GET", url, headers=headers), stream=True)
    except httpx.HTTPError as e:
        await client.aclose()
        raise Unavailable(f'pod "{target.name}" is not reachable at {base}: {str(e) or type(e).__name__}') from None

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # the replica went away mid-stream: end the output there
        finally:
            with anyio.CancelScope(shield=True):  # a client that left cancels us: still close
                await upstream.aclose()
                await client.aclose()

    passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "www-authenticate")}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=passed)


# -- the route --------------------------------------------------------------------------------------


async def pod_log(request: Request) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    if namespace != NAMESPACE:
        raise ResourceNotFound("pods", "", name[:256])
    options = log_options(request.query_params, name, time.time_ns())
    reg = registry(request)
    if reg.instance is not None and reg.instance.name == name:
        settings = reg.settings

        def draining() -> bool:
            return bool(getattr(settings, "draining", False))

        return StreamingResponse(stream_lines(log_ring(), options, draining), media_type=MEDIA_TYPE)
    if request.headers.get(FORWARDED):  # forwarded here by a replica that took us for it: no loops
        raise ResourceNotFound("pods", "", name[:256])
    target = await instances.get(reg, name)
    if target is None:
        raise ResourceNotFound("pods", "", name[:256])
    if target.stale(datetime.now(UTC), reg.config.instances.heartbeat_timeout):
        raise Unavailable(f'pod "{name}" is not reachable: no heartbeat since {timestamp(target.heartbeat_at)}')
    return await _forward(request, target, options.follow)


ROUTES = [RouteSpec("/api/v1/namespaces/{namespace}/pods/{name}/log", "pod_log", {"GET": (pod_log, log_access)})]
