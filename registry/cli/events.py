"""`okura events`: the event log that notifications deliver, and each webhook endpoint's
delivery state, read from the database the server uses (same config).

    okura events list [-n NS] [--since 10m] [--limit N] [-f] [-o json|yaml]
        the log, oldest first: the last 50 events (or N), or everything since then (--since);
        -n: only that namespace's repositories; -f: keep printing new events (the log is
        polled every 0.5 s) until Ctrl-C; -o: distribution's notification events, as an
        envelope ({"events": [...]}), or one JSON object per line (YAML document) with -f
    okura events endpoints [-o json|yaml]
        each endpoint in effect (config file and API): pending events, delivered, failures,
        last success and last error

Read-only: a missing or outdated database is an error, never created or migrated. URLs are
shown without their userinfo and query string (they may carry tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from sqlalchemy import Connection

from registry import clock
from registry.cli.common import config_flags, count_flag, duration_flag, run
from registry.config import EndpointConfig
from registry.model import events
from registry.model.events import LoggedEvent
from registry.model.notification_endpoints import DeliveryState, delivery_states
from registry.notifications import endpoints as endpoint_specs
from registry.notifications.envelope import distribution_event
from registry.runtime import Runtime

DEFAULT_LIMIT = 50
PAGE = 500  # events read per query
POLL_INTERVAL = 0.5  # seconds between looks at the log when following
SHORT_DIGEST_HEX = 12
ERROR_WIDTH = 60
EVENT_HEADER = ("ID", "TIME", "ACTION", "REPOSITORY", "TAG", "DIGEST", "ACTOR")
# Widths a followed table starts with, so that later rows mostly line up: TIME and DIGEST
# have fixed lengths, ACTION is at most "delete".
EVENT_MIN_WIDTHS = (1, 20, 6, 10, 3, len("sha256:") + SHORT_DIGEST_HEX, 5)
ENDPOINT_HEADER = ("NAME", "URL", "FORMAT", "PENDING", "DELIVERED", "FAILURES", "LAST SUCCESS", "LAST ERROR")


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def short_digest(digest: str | None) -> str:
    """sha256:abcdef123456, as `docker images` shortens ids."""
    if not digest:
        return ""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:SHORT_DIGEST_HEX]}"


def ago(when: datetime, now: datetime) -> str:
    """5s ago, 3m ago, 2h ago, 4d ago."""
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def safe_url(url: str) -> str:
    """The URL without userinfo, query string and fragment (they may carry credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def scrub(text: str, url: str) -> str:
    """`text` (an error a deliverer recorded) with the endpoint's credentials taken out."""
    parts = urlsplit(url)
    text = text.replace(url, safe_url(url))
    for secret in (parts.netloc.rpartition("@")[0], parts.query):
        if secret:
            text = text.replace(secret, "***")
    return text


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def print_table(rows: Sequence[Sequence[str]], widths: Sequence[int]) -> None:
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def column_widths(rows: Sequence[Sequence[str]], minimum: Sequence[int]) -> list[int]:
    return [max([minimum[i], *(len(row[i]) for row in rows)]) for i in range(len(minimum))]


# -- reading the log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    namespace: str | None
    since: datetime | None  # events at or after this time
    limit: int | None  # only the newest `limit` (None: all)


@dataclass(frozen=True)
class Listing:
    found: list[LoggedEvent]
    top: int  # the log's newest id when it was read: following goes on after it


def between(conn: Connection, low: int, high: int, limit: int | None, namespace: str | None) -> list[LoggedEvent]:
    """Events with low < id <= high, oldest first; only the newest `limit` of them (None: all)."""
    kept: deque[LoggedEvent] = deque(maxlen=limit)
    cursor = low
    while cursor < high:
        page = events.after(conn, cursor, PAGE, namespace)
        kept.extend(e for e in page if e.id <= high)
        if len(page) < PAGE:
            break
        cursor = page[-1].id
    return list(kept)


def newest_events(conn: Connection, floor: int, top: int, limit: int, namespace: str | None) -> list[LoggedEvent]:
    """The newest `limit` events with floor < id <= top, oldest first: id ranges read backwards
    from the top, each four times the one before, so a busy log costs about `limit` rows and a
    sparse namespace no more than the span its events cover."""
    found: list[LoggedEvent] = []
    high, span = top, limit
    while len(found) < limit and high > floor:
        low = max(high - span, floor)
        found = between(conn, low, high, limit - len(found), namespace) + found
        high, span = low, span * 4
    return found


def listing(conn: Connection, query: Query) -> Listing:
    top = events.newest(conn)  # first: every id up to it has committed (ids follow commit order)
    floor = 0
    if query.since is not None:
        first = events.since(conn, query.since, 1, query.namespace)
        if not first:
            return Listing([], top)
        floor = first[0].id - 1
    if query.limit is None:
        return Listing(between(conn, floor, top, None, query.namespace), top)
    return Listing(newest_events(conn, floor, top, query.limit, query.namespace), top)


def poll(conn: Connection, cursor: int, namespace: str | None) -> tuple[list[LoggedEvent], int, bool]:
    """Events after `cursor`, the cursor to poll from next, and whether more are waiting."""
    top = events.newest(conn)
    page = events.after(conn, cursor, PAGE, namespace)
    if len(page) == PAGE:
        return page, page[-1].id, True
    return page, max(cursor, top, *(e.id for e in page[-1:])), False


# -- printing events ------------------------------------------------------------------------------


def event_row(logged: LoggedEvent) -> list[str]:
    event = logged.event
    return [
        str(logged.id),
        rfc3339(logged.at),
        event.action,
        event.repository,
        event.tag or "",
        short_digest(event.digest),
        event.actor or "",
    ]


class EventPrinter:
    """Prints batches of events in one format. A table's widths are set by its first batch;
    when following, JSON is one object per line and YAML one document per event."""

    def __init__(self, output: str | None, follow: bool, base_url: str) -> None:
        self.output, self.follow, self.base_url = output, follow, base_url
        self.widths: list[int] | None = None

    def batch(self, found: Sequence[LoggedEvent]) -> None:
        documents = [distribution_event(e, self.base_url) for e in found]
        if self.output is None:
            self._table([event_row(e) for e in found])
        elif not self.follow:
            print(dump({"events": documents}, self.output), end="")
        elif self.output == "json":
            for document in documents:
                print(json.dumps(document))
        else:
            for document in documents:
                print("---\n" + dump(document, self.output), end="")
        sys.stdout.flush()

    def _table(self, rows: list[list[str]]) -> None:
        if self.widths is None:
            self.widths = column_widths([EVENT_HEADER, *rows], EVENT_MIN_WIDTHS if self.follow else [0] * 7)
            rows = [list(EVENT_HEADER), *rows]
        print_table(rows, self.widths)


def dump(document: Any, output: str) -> str:
    """-o json (indented) or -o yaml, ending in a newline."""
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _query(args: argparse.Namespace) -> Query:
    since = clock.now() - timedelta(seconds=args.since) if args.since is not None else None
    limit = args.limit if args.limit is not None else (None if since is not None else DEFAULT_LIMIT)
    return Query(args.namespace, since, limit)


async def _list(runtime: Runtime, args: argparse.Namespace) -> int:
    db = runtime.registry.db
    printer = EventPrinter(args.output, args.follow, runtime.config.http.base_url)
    first = await db.read(listing, _query(args))
    if not first.found and not args.follow and args.output is None:
        where = f" in namespace {args.namespace}" if args.namespace else ""
        print(f"No events{where}.", file=sys.stderr)
        return 0
    printer.batch(first.found)
    if args.follow:
        await _follow(runtime, args.namespace, first.top, printer)
    return 0


async def _follow(runtime: Runtime, namespace: str | None, cursor: int, printer: EventPrinter) -> None:
    """Print events as they are appended, forever (Ctrl-C ends the command)."""
    while True:
        found, cursor, more = await runtime.registry.db.read(poll, cursor, namespace)
        if found:
            printer.batch(found)
        if not more:
            await asyncio.sleep(POLL_INTERVAL)


# -- endpoints ------------------------------------------------------------------------------------


def _stamp(when: datetime | None) -> str | None:
    return rfc3339(when) if when else None


def endpoint_document(endpoint: EndpointConfig, state: DeliveryState | None) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "url": safe_url(endpoint.url),
        "format": endpoint.format,
        "disabled": endpoint.disabled,
        "cursor": state.cursor if state else None,
        "pending": state.pending if state else None,
        "delivered": state.delivered if state else 0,
        "dropped": state.dropped if state else 0,
        "failures": state.failures if state else 0,
        "lastSuccess": _stamp(state.last_success) if state else None,
        "lastError": scrub(state.last_error, endpoint.url) if state and state.last_error else None,
        "lastErrorAt": _stamp(state.last_error_at) if state else None,
    }


def endpoint_row(endpoint: EndpointConfig, state: DeliveryState | None, now: datetime) -> list[str]:
    waiting = state.pending if state else None
    success = state.last_success if state else None
    error = state.last_error if state else None
    return [
        endpoint.name,
        safe_url(endpoint.url),
        "disabled" if endpoint.disabled else endpoint.format,
        "-" if waiting is None else str(waiting),
        str(state.delivered if state else 0),
        str(state.failures if state else 0),
        ago(success, now) if success else "never",
        one_line(scrub(error, endpoint.url), ERROR_WIDTH) if error else "",
    ]


async def _endpoints(runtime: Runtime, args: argparse.Namespace) -> int:
    found = await endpoint_specs.effective(runtime.registry)
    states = await runtime.registry.db.read(delivery_states, [e.name for e in found])
    if not found:
        print("No endpoints configured.", file=sys.stderr)
    if args.output is not None:
        print(dump([endpoint_document(e, states.get(e.name)) for e in found], args.output), end="")
    elif found:
        now = clock.now()
        rows = [list(ENDPOINT_HEADER), *(endpoint_row(e, states.get(e.name), now) for e in found)]
        print_table(rows, column_widths(rows, [0] * len(ENDPOINT_HEADER)))
    return 0


# -- the parser -----------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "events",
        help="the notification event log, and each webhook endpoint's delivery state",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing_ = actions.add_parser("list", help="the event log, oldest first (-f: follow it)")
    config_flags(listing_)
    listing_.add_argument("-n", "--namespace", help="only events of this namespace's repositories")
    listing_.add_argument(
        "--since", type=duration_flag, metavar="DURATION", help="events of the last DURATION (10m, 1h30m, 2d)"
    )
    listing_.add_argument(
        "--limit",
        type=count_flag(1),
        metavar="N",
        help=f"only the newest N (default {DEFAULT_LIMIT}; all with --since)",
    )
    listing_.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    listing_.add_argument("-o", "--output", choices=("json", "yaml"), help="distribution's notification events")
    listing_.set_defaults(func=_run_list, prog="okura events list")

    ends = actions.add_parser("endpoints", help="each webhook endpoint in effect, with its delivery state")
    config_flags(ends)
    ends.add_argument("-o", "--output", choices=("json", "yaml"))
    ends.set_defaults(func=lambda args: run(args, _endpoints), prog="okura events endpoints")


def _run_list(args: argparse.Namespace) -> int:
    try:
        return run(args, _list)  # the database only, as it is: never created or migrated
    except KeyboardInterrupt:
        if args.follow:
            return 0  # the way to stop following
        raise
