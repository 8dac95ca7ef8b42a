"""`okura tag`: point tags at images or at other tags, as `oc tag` does.

    okura tag SOURCE DEST [DEST...]      DEST := [NS/]STREAM:TAG
        SOURCE [NS/]STREAM:TAG           DEST gets the image SOURCE points at now
        SOURCE [NS/]STREAM@DIGEST        DEST gets that image (a rollback: an earlier history item)
        --alias                          DEST follows SOURCE:TAG from now on, wherever it moves
    okura tag -d DEST [DEST...]          delete the tags (their history goes; images stay for the pruner)

Every move goes through the same model as pushes and API writes: the tag's history gets an
item, the change log and resourceVersions see it, watchers get an event.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from registry.cli.common import CommandError, config_flags, run
from registry.errors import ResourceNotFound
from registry.model import streams
from registry.model.images import is_digest_name
from registry.model.streams import TagReference
from registry.names import TAG_RE
from registry.runtime import Runtime

ACTOR = "okura tag"


@dataclass(frozen=True)
class Ref:
    namespace: str
    stream: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.stream}" + (f":{self.tag}" if self.tag else f"@{self.digest}")


def parse_ref(text: str, namespace: str | None, allow_digest: bool) -> Ref:
    """`[NS/]STREAM:TAG` or (a source) `[NS/]STREAM@DIGEST`; -n NS fills a missing namespace."""
    path, at, digest = text.partition("@")
    tag = None
    if not at:
        path, colon, tag = text.rpartition(":")
        if not colon or "/" in tag:
            raise CommandError(f"{text!r}: name a tag as [NS/]STREAM:TAG", status=2)
    ns, slash, stream = path.rpartition("/")
    if not slash:
        if namespace is None:
            raise CommandError(f"{text!r} names no namespace: write NS/{text} or pass -n NS", status=2)
        ns = namespace
    if not streams.valid_stream_name(ns, stream):
        raise CommandError(f"{text!r}: {ns}/{stream} is not a valid image stream name", status=2)
    if at:
        if not allow_digest:
            raise CommandError(f"{text!r}: a destination is a tag, [NS/]STREAM:TAG", status=2)
        if not is_digest_name(digest):
            raise CommandError(f"{text!r}: {digest!r} is not a digest (sha256:<64 hex>)", status=2)
        return Ref(ns, stream, digest=digest)
    if not TAG_RE.fullmatch(tag):
        raise CommandError(f"{text!r}: {tag!r} is not a valid tag", status=2)
    return Ref(ns, stream, tag=tag)


async def _current_image(runtime: Runtime, source: Ref) -> str:
    stream = await streams.get_stream(runtime.registry, source.namespace, source.stream)
    status = stream.status_tag(source.tag or "")
    if status is None or not status.items:
        raise CommandError(f"{source} points at no image yet")
    return status.items[0].image


async def _tag(runtime: Runtime, args: argparse.Namespace) -> int:
    reg = runtime.registry
    if args.delete:
        targets = [parse_ref(t, args.namespace, allow_digest=False) for t in [args.source, *args.dests]]
        for ref in targets:
            try:
                await streams.delete_tag(reg, ref.namespace, ref.stream, ref.tag or "")
            except ResourceNotFound:
                raise CommandError(f"{ref}: no such tag") from None
            print(f"Deleted tag {ref}.")
        return 0
    if not args.dests:
        raise CommandError("name at least one destination tag, or pass -d to delete", status=2)
    source = parse_ref(args.source, args.namespace, allow_digest=True)
    dests = [parse_ref(d, args.namespace, allow_digest=False) for d in args.dests]
    if args.alias and source.digest:
        raise CommandError("--alias follows a tag: the source must be [NS/]STREAM:TAG", status=2)
    if args.alias:
        kind, name, shown = "ImageStreamTag", f"{source.stream}:{source.tag}", f"set up to track {source}"
    else:
        # Without --alias, `oc tag` resolves a source tag to the image it points at now.
        digest = source.digest or await _current_image(runtime, source)
        kind, name = "ImageStreamImage", f"{source.stream}@{digest}"
        shown = f"set to {source.namespace}/{name}"
    for dest in dests:
        if dest == source:
            raise CommandError(f"{dest} cannot point at itself", status=2)
        ref = TagReference(dest.tag or "", from_kind=kind, from_name=name, from_namespace=source.namespace)
        await streams.set_tag(reg, dest.namespace, dest.stream, ref, None, ACTOR)
        print(f"Tag {dest} {shown}.")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tag",
        help="point tags at an image or another tag (as `oc tag`; a rollback is one command)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_flags(p)
    p.add_argument("source", metavar="SOURCE", help="[NS/]STREAM:TAG or [NS/]STREAM@DIGEST (with -d: a tag to delete)")
    p.add_argument("dests", nargs="*", metavar="DEST", help="[NS/]STREAM:TAG")
    p.add_argument("-n", "--namespace", help="the namespace of names written without one")
    p.add_argument("--alias", action="store_true", help="DEST follows SOURCE's tag instead of its current image")
    p.add_argument("-d", "--delete", action="store_true", help="delete the named tags")
    p.set_defaults(func=_run, prog="okura tag")


def _run(args: argparse.Namespace) -> int:
    if args.delete and args.alias:
        raise CommandError("-d and --alias do not go together", status=2)
    return run(args, _tag)  # the database only: tags are metadata
