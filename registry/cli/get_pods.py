"""`okura get pods`: the registry's server processes, read from the database they register in,
as `oc get pods -n openshift-image-registry` shows OpenShift's registry pods.

    okura get pods [NAME] [-n NS] [-o wide|name|json|yaml]

NAME READY STATUS RESTARTS AGE; -o wide adds the URL each listens at (as reached from here)
and its version; -o json|yaml prints the Pod objects of the API (registry/api/pod_objects.py).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import UTC, datetime
from typing import Any

import yaml

from registry.api.objects import short_age
from registry.api.pod_objects import pod_object, ready_column
from registry.cli.common import CommandError, config_flags, run
from registry.kube import meta
from registry.model import instances
from registry.model.instances import Instance
from registry.model.registry_config_spec import NAMESPACE
from registry.runtime import Runtime


async def _get_pods(runtime: Runtime, args: argparse.Namespace) -> int:
    reg = runtime.registry
    found: list[Instance] = []
    if args.namespace in (None, NAMESPACE):
        if args.name is None:
            found = sorted(await instances.registered(reg), key=lambda i: i.name)
        else:
            one = await instances.get(reg, args.name)
            if one is None:
                raise CommandError(f'pods "{args.name}" not found')
            found = [one]
    now, timeout = datetime.now(UTC), runtime.config.instances.heartbeat_timeout
    if args.output in ("json", "yaml"):
        items = [pod_object(i, now, timeout) for i in found]
        _dump(items[0] if args.name is not None and items else meta.list_object("PodList", "v1", items, 0), args)
    elif args.output == "name":
        for i in found:
            print(f"pod/{i.name}")
    elif not found:
        print(f"No resources found in {args.namespace or NAMESPACE} namespace.", file=sys.stderr)
    else:
        _table(pod_rows(found, now, timeout, wide=args.output == "wide"))
    return 0


def pod_rows(found: list[Instance], now: datetime, timeout: float, wide: bool = False) -> list[list[str]]:
    """The header and a row per server; wide: where each listens (from this host) and its version."""
    here = socket.gethostname()
    rows = [["NAME", "READY", "STATUS", "RESTARTS", "AGE", *(["ADDRESS", "VERSION"] if wide else [])]]
    for i in found:
        ready, status, age = ready_column(i, now, timeout), i.status(now, timeout), short_age(i.started_at, now)
        row = [i.name, ready, status, str(i.restarts), age]
        rows.append([*row, i.url(here), i.version] if wide else row)
    return rows


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _dump(obj: dict[str, Any], args: argparse.Namespace) -> None:
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    else:
        print(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False), end="")


def add_parser(kinds: Any) -> None:
    pods = kinds.add_parser("pods", aliases=["pod", "po"], help="the registry's server processes (its pods)")
    pods.add_argument("name", nargs="?", help="one of them")
    pods.add_argument("-n", "--namespace", help=f"only {NAMESPACE} has any")
    config_flags(pods)
    pods.add_argument("-o", "--output", choices=("wide", "name", "json", "yaml"))
    pods.set_defaults(func=lambda args: run(args, _get_pods), prog="okura get pods")
