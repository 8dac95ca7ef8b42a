"""`okura logs`: the registry servers' recent log lines, merged in time order, as `oc logs` shows
a pod's (each server keeps its last log.ring_lines lines in memory).

    okura logs [POD | deployments/image-registry] [-f] [--since DURATION] [--tail N] [--timestamps] [--prefix]

Every live server (`okura get pods`), or the one named, is asked over HTTP for its lines
(GET .../pods/NAME/log?timestamps=true: the times order the merge; they are printed only with
--timestamps). --since keeps the lines of the last DURATION, --tail the last N of the merged
output. -f then prints each server's new lines as they arrive, until interrupted. A server that
cannot be reached gets a warning on stderr; the others' lines are still printed.

Credentials, with auth on: $OKURA_TOKEN when set; otherwise a bearer JWT valid for a minute,
signed here with the servers' signing keys (this command reads the same database) for a subject
bound to cluster-admin cluster-wide, carrying the API scope only. Nothing is stored, no password
is needed, and the servers check it as any request: its subject's bindings decide. HTTPS servers
are verified with the system's CAs and the configured http.tls.certificate.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry.api.pod_logs import format_time_ns, parse_time_ns, peer_ssl_context
from registry.cli.common import CommandError, config_flags, duration_flag, run, warn
from registry.model import instances
from registry.model.instances import Instance
from registry.model.registry_config_spec import NAMESPACE
from registry.runtime import Runtime

DEPLOYMENT = "image-registry"
ALL = {f"{kind}/{DEPLOYMENT}" for kind in ("deployments", "deployment", "deploy", "deployments.apps")}
TOKEN_SECONDS = 60  # the minted JWT's life: it is presented once per server, at the start
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


@dataclass
class Source:
    """One server's log: where it is, and what was printed of it so far."""

    instance: Instance
    url: str
    last_ns: int | None = None  # the time of the last line fetched
    at_last: set[str] = field(default_factory=set)  # the lines fetched with that time


def split_line(raw: str, previous_ns: int) -> tuple[int, str]:
    """(time, line) of a line sent with timestamps=true; one without a time has the previous one's."""
    stamp, sep, rest = raw.partition(" ")
    if sep:
        try:
            return parse_time_ns(stamp), rest
        except ValueError:
            pass
    return previous_ns, raw


async def _sources(runtime: Runtime, pod: str | None) -> list[Source]:
    reg, here = runtime.registry, socket.gethostname()
    now, timeout = datetime.now(UTC), runtime.config.instances.heartbeat_timeout
    if pod is None or pod in ALL:
        found = sorted(await instances.registered(reg), key=lambda i: i.name)
        if not found:
            raise CommandError("no registry server is registered: is one running on this database?")
    else:
        one = await instances.get(reg, pod.removeprefix("pod/").removeprefix("pods/"))
        if one is None:
            raise CommandError(f'pods "{pod}" not found')
        found = [one]
    sources = []
    for i in found:
        if i.stale(now, timeout):
            since = f"{i.heartbeat_at:%Y-%m-%dT%H:%M:%SZ}"
            warn(f"pod {i.name} is Unknown (no heartbeat since {since}): its log cannot be read")
        else:
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{i.name}/log"
            sources.append(Source(i, i.url(here) + path))
    return sources


async def credentials(runtime: Runtime) -> str | None:
    """The bearer token the servers are asked with; None when auth is off."""
    token = os.environ.get("OKURA_TOKEN")
    if token:
        return token
    if not runtime.config.auth.enabled:
        return None
    from auth.jwt_tokens import Grant
    from auth.subjects import GROUPS

    bindings = await runtime.auth.store.bindings()
    admins = sorted(
        b.subject for b in bindings if b.role == "cluster-admin" and b.namespace is None and b.subject not in GROUPS
    )
    if not admins:
        raise CommandError("nobody is cluster-admin: set OKURA_TOKEN to a token that may read pods/log")
    issuer = runtime.auth.issuer
    await issuer.load()
    api = Grant("registry", "api", ("*",))
    jwt, _, _ = await issuer.mint(admins[0], [api], not_after=time.time() + TOKEN_SECONDS)
    return jwt


def _query(args: Any, follow: bool) -> dict[str, str]:
    query = {"timestamps": "true"}
    if args.since is not None:
        query["sinceSeconds"] = str(max(math.ceil(args.since), 1))
    if args.tail is not None and args.tail >= 0:
        query["tailLines"] = str(args.tail)
    if follow:
        query["follow"] = "true"
    return query


def _problem(response: Any) -> str:
    try:
        return str(response.json().get("message") or response.status_code)
    except ValueError:
        return f"HTTP {response.status_code}"


async def _history(client: Any, source: Source, query: dict[str, str]) -> list[tuple[int, str]] | None:
    """The lines of one server (time, line); None, with a warning, when it cannot be read."""
    import httpx

    try:
        response = await client.get(source.url, params=query)
    except httpx.HTTPError as e:
        warn(f"pod {source.instance.name} is not reachable at {source.url}: {str(e) or type(e).__name__}")
        return None
    if response.status_code != 200:
        warn(f"pod {source.instance.name}: {_problem(response)}")
        return None
    lines, at = [], 0
    for raw in response.text.splitlines():
        at, text = split_line(raw, at)
        lines.append((at, text))
    if lines:
        source.last_ns = lines[-1][0]
        source.at_last = {text for t, text in lines if t == source.last_ns}
    return lines


def _show(source: Source, time_ns: int, text: str, args: Any) -> str:
    prefix = f"[pod/{source.instance.name}/registry] " if args.prefix else ""
    return f"{prefix}{format_time_ns(time_ns)} {text}" if args.timestamps else f"{prefix}{text}"


async def _follow(client: Any, source: Source, args: Any) -> None:
    """Print one server's new lines as they arrive (after those printed already)."""
    import httpx

    if source.last_ns is None:
        query = _query(args, follow=True)
    else:
        query = {"timestamps": "true", "follow": "true", "sinceTime": format_time_ns(source.last_ns)}
    at = source.last_ns or 0
    endless = httpx.Timeout(CONNECT_TIMEOUT, read=None)
    try:
        async with client.stream("GET", source.url, params=query, timeout=endless) as r:
            if r.status_code != 200:
                await r.aread()
                warn(f"pod {source.instance.name}: {_problem(r)}")
                return
            async for raw in r.aiter_lines():
                at, text = split_line(raw, at)
                if at == source.last_ns and text in source.at_last:
                    continue  # printed with the history
                sys.stdout.write(_show(source, at, text, args) + "\n")
                sys.stdout.flush()
    except httpx.HTTPError as e:
        warn(f"pod {source.instance.name}: the log stream broke: {str(e) or type(e).__name__}")
        return
    warn(f"pod {source.instance.name}: the log stream ended")


async def _logs(runtime: Runtime, args: Any) -> int:
    import httpx

    sources = await _sources(runtime, args.pod)
    token = await credentials(runtime)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = peer_ssl_context(runtime.config)
    timeout = httpx.Timeout(CONNECT_TIMEOUT, read=READ_TIMEOUT)
    async with httpx.AsyncClient(verify=verify, headers=headers, timeout=timeout) as client:
        query = _query(args, follow=False)
        fetched = await asyncio.gather(*(_history(client, s, query) for s in sources))
        pairs = list(zip(sources, fetched, strict=True))
        merged = sorted(
            ((t, n, text, s) for n, (s, lines) in enumerate(pairs) for t, text in lines or ()),
            key=lambda item: (item[0], item[1]),  # in time order; a server's lines of one time as sent
        )
        if args.tail is not None and args.tail >= 0:
            merged = merged[-args.tail :] if args.tail else []
        sys.stdout.write("".join(_show(s, t, text, args) + "\n" for t, _, text, s in merged))
        sys.stdout.flush()
        readable = [s for s, lines in pairs if lines is not None]
        if args.follow and readable:
            await asyncio.gather(*(_follow(client, s, args) for s in readable))
    return 0 if readable or not sources else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "logs",
        help="print the registry servers' recent log lines, merged in time order (as oc logs)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("pod", nargs="?", metavar="POD", help=f"one server (default: all, as deployments/{DEPLOYMENT})")
    config_flags(p)
    p.add_argument("-f", "--follow", action="store_true", help="then print new lines as they arrive")
    p.add_argument("--since", type=duration_flag, metavar="DURATION", help="only lines of the last DURATION (5m, 1h)")
    p.add_argument("--tail", type=int, default=-1, metavar="N", help="only the last N lines (default -1: all)")
    p.add_argument("--timestamps", action="store_true", help="start each line with its time (RFC 3339, nanoseconds)")
    p.add_argument("--prefix", action="store_true", help="start each line with [pod/NAME/registry]")
    p.set_defaults(func=lambda args: run(args, _logs), prog="okura logs")
