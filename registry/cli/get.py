"""`okura get ...`: image streams and images read from the database the server uses (same
config), as the API shows them (image.openshift.io/v1).

    okura get imagestreams [-n NS]            (aliases imagestream, is; all namespaces without -n)
    okura get imagestreams NS/NAME            (or NAME -n NS): one stream with each tag's history
    okura get image DIGEST
    okura get pods [NAME] [-o wide|name]      the server processes (registry/cli/get_pods.py)
    -o json | -o yaml                         exactly the API object

Image references start with http.base_url's host, else the listen address (`localhost`
for a wildcard one). Read-only: a missing database is an error, never created.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import yaml

from registry.api import objects
from registry.cli import get_pods
from registry.cli.common import CommandError, config_flags, run
from registry.kube import meta
from registry.model import images, instances, registry_config, streams
from registry.runtime import Runtime

MAX_TAGS_SHOWN = 4  # as `oc get is`: the newest tags, then "+ N more..."


async def registry_host(runtime: Runtime) -> str:
    """The host image references start with, as the API would print them: http.base_url's,
    else the address a live server listens on, else this config's listen address."""
    config = runtime.config
    if config.http.base_url:
        return urlsplit(config.http.base_url).netloc or config.http.base_url.rstrip("/")
    servers = await instances.live(runtime.registry)
    if servers:
        return servers[0].reachable_at(socket.gethostname())
    return instances.reachable_address(config.http.addr, socket.gethostname(), socket.gethostname())


async def _get_streams(runtime: Runtime, args: argparse.Namespace) -> int:
    reg, host = runtime.registry, await registry_host(runtime)
    if args.name is None:
        found, version = await streams.list_streams(reg, args.namespace)
        items = [objects.stream_object(s, host, registry_config.public_host(reg)) for s in found]
        obj = meta.list_object("ImageStreamList", objects.API_VERSION, items, version)
    else:
        namespace, sep, name = args.name.partition("/")
        if not sep:
            if args.namespace is None:
                raise CommandError("name an image stream as NS/NAME, or NAME with -n NS", status=2)
            namespace, name = args.namespace, args.name
        elif args.namespace is not None and args.namespace != namespace:
            raise CommandError(f"{args.name} is not in namespace {args.namespace}", status=2)
        obj = objects.stream_object(
            await streams.get_stream(reg, namespace, name), host, registry_config.public_host(reg)
        )
    _print(obj, args)
    return 0


async def _get_image(runtime: Runtime, args: argparse.Namespace) -> int:
    image = await images.get_image(runtime.registry, args.digest)
    _print(objects.image_object(image, await registry_host(runtime)), args)
    return 0


def _print(obj: dict[str, Any], args: argparse.Namespace) -> None:
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False), end="")
    elif obj["kind"] == "ImageStreamList":
        _print_streams(obj, all_namespaces=args.namespace is None, namespace=args.namespace)
    elif obj["kind"] == "ImageStream":
        _print_stream(obj)
    else:
        _print_image(obj)


# -- tables ------------------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def age(ts: str, now: datetime | None = None) -> str:
    """`5 minutes ago`, as oc prints UPDATED."""
    seconds = max(0, int(((now or datetime.now(UTC)) - _parse(ts)).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


def _newest_first(stream: dict[str, Any]) -> list[dict[str, Any]]:
    tags = [t for t in stream["status"]["tags"] if t["items"]]
    return sorted(tags, key=lambda t: t["items"][0]["generation"], reverse=True)


def _print_streams(streams: dict[str, Any], all_namespaces: bool, namespace: str | None) -> None:
    if not streams["items"]:
        where = f" in {namespace} namespace" if namespace else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return
    header = ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]
    rows = [["NAMESPACE", *header] if all_namespaces else header]
    for stream in streams["items"]:
        tags = _newest_first(stream)
        names = ",".join(t["tag"] for t in tags[:MAX_TAGS_SHOWN])
        if len(tags) > MAX_TAGS_SHOWN:
            names += f" + {len(tags) - MAX_TAGS_SHOWN} more..."
        updated = age(tags[0]["items"][0]["created"]) if tags else ""
        row = [stream["metadata"]["name"], stream["status"]["dockerImageRepository"], names, updated]
        rows.append([stream["metadata"]["namespace"], *row] if all_namespaces else row)
    _table(rows)


def _print_stream(stream: dict[str, Any]) -> None:
    meta = stream["metadata"]
    print(f"Name:              {meta['namespace']}/{meta['name']}")
    print(f"Created:           {meta['creationTimestamp']}")
    print(f"Image Repository:  {stream['status']['dockerImageRepository']}")
    print(f"Generation:        {meta['generation']}")
    print()
    if not stream["status"]["tags"]:
        print("No tags.")
        return
    rows = [["TAG", "CREATED", "GENERATION", "IMAGE"]]
    for tag in stream["status"]["tags"]:
        for i, item in enumerate(tag["items"]):
            label = tag["tag"] if i == 0 else ""  # the rows below a tag are its earlier images
            rows.append([label, item["created"], str(item["generation"]), item["image"]])
    _table(rows)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _print_image(image: dict[str, Any]) -> None:
    meta = image["dockerImageMetadata"]
    print(f"Name:          {image['metadata']['name']}")
    print(f"Reference:     {image['dockerImageReference']}")
    print(f"Media Type:    {image['dockerImageManifestMediaType']}")
    print(f"Created:       {meta.get('Created', '<unknown>')}")
    if "Architecture" in meta or "Os" in meta:
        print(f"Platform:      {meta.get('Os', '?')}/{meta.get('Architecture', '?')}")
    if "Size" in meta:
        print(f"Size:          {_size(meta['Size'])}")
    if "Id" in meta:
        print(f"Config:        {meta['Id']}")
    labels = meta.get("Config", {}).get("Labels") or {}
    if labels:
        print("Labels:")
        for key in sorted(labels):
            print(f"  {key}={labels[key]}")
    if image.get("dockerImageLayers"):
        print()
        _table(
            [["LAYER", "SIZE", "MEDIA TYPE"]]
            + [[layer["name"], _size(layer["size"]), layer["mediaType"]] for layer in image["dockerImageLayers"]]
        )
    if "dockerImageManifests" in image:
        print()
        rows = [["MANIFEST", "PLATFORM", "SIZE", "MEDIA TYPE"]]
        for m in image["dockerImageManifests"]:
            platform = "/".join(p for p in (m["os"], m["architecture"], m.get("variant", "")) if p)
            rows.append([m["digest"], platform, _size(m["manifestSize"]), m["mediaType"]])
        _table(rows)


# -- the parser --------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    get = sub.add_parser("get", help="show image streams and images (as the image.openshift.io API does)")
    kinds = get.add_subparsers(dest="get_kind", required=True, metavar="KIND")

    def output(p: argparse.ArgumentParser) -> None:
        config_flags(p)
        p.add_argument("-o", "--output", choices=("json", "yaml"), help="print the API object")

    streams = kinds.add_parser(
        "imagestreams", aliases=["imagestream", "is"], help="image streams (all namespaces without -n)"
    )
    streams.add_argument("name", nargs="?", metavar="NS/NAME", help="one stream, with each tag's history")
    streams.add_argument("-n", "--namespace")
    output(streams)
    streams.set_defaults(func=lambda args: run(args, _get_streams), prog="okura get imagestreams")

    get_pods.add_parser(kinds)

    image = kinds.add_parser("image", aliases=["images"], help="an image by digest")
    image.add_argument("digest")
    output(image)
    # Image configs are read from blob storage.
    image.set_defaults(func=lambda args: run(args, _get_image, storage=True), namespace=None, prog="okura get image")
