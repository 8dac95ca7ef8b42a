"""`okura import-image`: import images from another registry into an image stream, as
`oc import-image` does.

    okura import-image [NS/]NAME[:TAG] [--from REF] [--confirm]    one tag (default latest)
    okura import-image [NS/]NAME --all --from REPOSITORY            the repository's tags
    okura import-image [NS/]NAME --all                              every tag that imports, again
      --scheduled  --insecure  --reference-policy source|local  --import-mode Legacy|PreserveOriginal
      --dry-run                                                     fetch and show, store nothing
      -o json|yaml                                                  the ImageStreamImport answer

Without --from, an existing tag is imported again from its own source, and a new stream
imports NAME[:TAG] itself (`mysql` is docker.io/library/mysql). A missing stream is created
only with --confirm. The command makes the request the API takes (POST imagestreamimports)
and runs it through the same model: the stream, its history and conditions change as they
would for `oc import-image`. Exit status 1 when any image failed to import.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import yaml

from registry.api import imagestreamimports
from registry.cli.common import CommandError, config_flags, run, warn
from registry.cli.describe import describe_image, describe_stream
from registry.cli.get import registry_host
from registry.errors import ResourceNotFound
from registry.kube import image_v1
from registry.model import imports, registry_config, streams
from registry.model.imports import ImageOutcome, ImportResult
from registry.model.streams import IMPORT_MODES, Stream, TagReference
from registry.names import TAG_RE
from registry.runtime import Runtime

ACTOR = "okura import-image"
DEFAULT_TAG = "latest"
INSECURE_ANNOTATION = "openshift.io/image.insecureRepository"  # the stream's default for --insecure
RESOURCE = "imagestream.image.openshift.io"


# -- what the command line asks ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    tag: str | None  # as written: None is latest (or, with --all, every tag)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Flags:
    source: str | None
    confirm: bool
    all: bool
    scheduled: bool
    insecure: bool
    reference_policy: str | None  # None: the tag keeps its own (Source for a new tag)
    import_mode: str | None  # None: the tag's, else the configured default
    dry_run: bool

    @classmethod
    def of(cls, args: argparse.Namespace) -> Flags:
        policy = args.reference_policy.capitalize() if args.reference_policy else None
        return cls(
            args.source, args.confirm, args.all, args.scheduled, args.insecure, policy, args.import_mode, args.dry_run
        )


def parse_target(text: str, namespace: str | None, whole_repository: bool) -> Target:
    """`[NS/]NAME[:TAG]`; -n NS fills a missing namespace."""
    if "@" in text:
        raise CommandError("to import images by ID, use the 'tag' command", status=2)
    ns, slash, rest = text.partition("/")
    if not slash:
        if namespace is None:
            raise CommandError(f"{text!r} names no namespace: write NS/{text} or pass -n NS", status=2)
        ns, rest = namespace, text
    elif namespace is not None and namespace != ns:
        raise CommandError(f"{text!r} is not in namespace {namespace}", status=2)
    name, colon, tag = rest.partition(":")
    if not streams.valid_stream_name(ns, name):
        raise CommandError(f"{text!r}: {ns}/{name} is not a valid image stream name", status=2)
    if colon and not TAG_RE.fullmatch(tag):
        raise CommandError(f"{text!r}: {tag!r} is not a valid tag", status=2)
    if colon and whole_repository:
        raise CommandError(f"cannot specify a tag {text!r} as well as --all", status=2)
    return Target(ns, name, tag if colon else None)


def check_source(flags: Flags) -> None:
    """--from must be a pull spec; with --all, a repository's (no tag, no digest)."""
    if flags.source is None:
        return
    from registry.imports.upstream import ImageRef  # here: every `okura` command would load httpx

    try:
        ImageRef.parse(flags.source)
    except ValueError as e:
        raise CommandError(f"--from: {e}", status=2) from None
    if flags.all and ("@" in flags.source or ":" in flags.source.rpartition("/")[2]):
        raise CommandError(f"--all imports a whole repository: --from {flags.source} names a tag or digest", status=2)


# -- the request, as oc builds it ----------------------------------------------------------------


def plan(target: Target, stream: Stream | None, flags: Flags) -> dict[str, Any]:
    """The ImageStreamImport request for the command line and the stream as it is now;
    CommandError when oc's rules refuse the import."""
    if stream is None:
        spec = _new_stream(target, flags)
    elif flags.all:
        spec = _whole_stream(target, stream, flags)
    else:
        spec = _one_tag(target, stream, flags)
    metadata: dict[str, Any] = {"name": target.name}
    if stream is not None:  # as oc sends it: a stream changed meanwhile is a conflict, not overwritten
        metadata["resourceVersion"] = str(stream.resource_version)
    return {
        "kind": imagestreamimports.KIND,
        "apiVersion": image_v1.API_VERSION,
        "metadata": metadata,
        "spec": {"import": not flags.dry_run, **spec},
    }


def _new_stream(target: Target, flags: Flags) -> dict[str, Any]:
    if not (flags.confirm or flags.dry_run):
        raise CommandError(f"no image stream named {target} exists, pass --confirm to create and import")
    # As `oc import-image mysql --confirm`: the name itself is the source (docker.io/library/mysql).
    source = flags.source or target.name + (f":{target.tag}" if target.tag else "")
    if flags.all:
        return {"repository": _entry(source, None, flags, flags.insecure, flags.scheduled)}
    return {"images": [_entry(source, target.tag or DEFAULT_TAG, flags, flags.insecure, flags.scheduled)]}


def _whole_stream(target: Target, stream: Stream, flags: Flags) -> dict[str, Any]:
    insecure = _stream_insecure(stream, flags)
    if flags.source:
        return {"repository": _entry(flags.source, None, flags, insecure, flags.scheduled)}
    tags = [t for t in stream.spec_tags if t.from_kind == "DockerImage" and t.from_name]
    if not tags:
        raise CommandError(f"image stream {target} has no tags importing from another registry: pass --from")
    return {
        "images": [
            _entry(t.from_name or "", t.name, flags, insecure or t.insecure, flags.scheduled or t.scheduled)
            for t in tags
        ]
    }


def _one_tag(target: Target, stream: Stream, flags: Flags) -> dict[str, Any]:
    tag, existing = _follow(stream, target.tag or DEFAULT_TAG)
    insecure = _stream_insecure(stream, flags)
    if existing is None:
        if not flags.source:
            raise CommandError(
                f"the tag {tag!r} does not exist on the image stream {target}: "
                "pass --from to import it, or point it at an image with `okura tag`"
            )
        return {"images": [_entry(flags.source, tag, flags, insecure, flags.scheduled)]}
    if existing.from_kind != "DockerImage" or not existing.from_name:
        source = f"{existing.from_kind} {existing.from_name!r}" if existing.from_kind else "no source"
        raise CommandError(f"tag {tag!r} points to {source}, it cannot be re-imported")
    if flags.source and flags.source != existing.from_name:
        raise CommandError(
            f"the tag {tag!r} points to {existing.from_name!r} - use the 'okura tag' command "
            f"if you want to change the source to {flags.source!r}"
        )
    # The tag's own flags stay on: --insecure and --scheduled can only add to them (oc ORs them).
    entry = _entry(existing.from_name, tag, flags, insecure or existing.insecure, flags.scheduled or existing.scheduled)
    return {"images": [entry]}


def _follow(stream: Stream, tag: str) -> tuple[str, TagReference | None]:
    """The tag an import of `tag` writes, and its spec: links to other tags of the same stream
    are followed, as oc does, so the import updates the tag they lead to."""
    seen, current = {tag}, tag
    ref = stream.spec_tag(tag)
    while ref is not None and ref.from_kind == "ImageStreamTag":
        other, sep, next_tag = (ref.from_name or "").rpartition(":")
        if not sep:
            other, next_tag = stream.name, ref.from_name or ""
        if (ref.from_namespace or stream.namespace, other or stream.name) != (stream.namespace, stream.name):
            raise CommandError(f"tag {tag!r} points to an image stream tag of another image stream")
        if next_tag in seen:
            raise CommandError(f"tag {tag!r} is part of a cycle of tags")
        seen.add(next_tag)
        current, ref = next_tag, stream.spec_tag(next_tag)
    return (current, ref) if ref is not None else (tag, None)


def _stream_insecure(stream: Stream, flags: Flags) -> bool:
    return flags.insecure or (stream.annotations or {}).get(INSECURE_ANNOTATION) == "true"


def _entry(source: str, tag: str | None, flags: Flags, insecure: bool, scheduled: bool) -> dict[str, Any]:
    """spec.images[] (with a tag) or spec.repository (without); unset policies are left out
    so that the model keeps the tag's own."""
    policy: dict[str, Any] = {"insecure": insecure, "scheduled": scheduled}
    if flags.import_mode:
        policy["importMode"] = flags.import_mode
    entry: dict[str, Any] = {"from": {"kind": "DockerImage", "name": source}}
    if tag is not None:
        entry["to"] = {"name": tag}
    entry["importPolicy"] = policy
    if flags.reference_policy:
        entry["referencePolicy"] = {"type": flags.reference_policy}
    return entry


# -- running it ----------------------------------------------------------------------------------


async def _existing(runtime: Runtime, target: Target) -> Stream | None:
    try:
        return await streams.get_stream(runtime.registry, target.namespace, target.name)
    except ResourceNotFound:
        return None


async def _import(runtime: Runtime, target: Target, flags: Flags, output: str | None) -> int:
    obj = plan(target, await _existing(runtime, target), flags)
    request = replace(imagestreamimports.parse_import(obj, target.namespace), actor=ACTOR)
    with _model_warnings():
        result = await imports.import_images(runtime.registry, request)
    host = await registry_host(runtime)
    public_host = registry_config.public_host(runtime.registry)
    answer = imagestreamimports.import_object(obj, request, result, host, public_host)
    if output == "json":
        print(json.dumps(answer, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(answer, sort_keys=False, default_flow_style=False), end="")
    else:
        print("\n".join(describe_import(answer, target.name, flags, result.failed, datetime.now(UTC))))
    _report_failures(result)
    return 1 if result.failed else 0


def _report_failures(result: ImportResult) -> None:
    """On stderr, as oc: one line per tag that failed, and the tags a repository import left out."""
    repository = result.repository
    outcomes: list[ImageOutcome] = [*result.images, *(repository.images if repository else ())]
    for outcome in outcomes:
        if not outcome.succeeded:
            print(f"error: tag {outcome.source.to} failed: {outcome.message}", file=sys.stderr)
    if repository is None:
        return
    if repository.status != "Success" and not repository.images:  # the tags could not even be listed
        print(f"error: repository import failed ({repository.reason}): {repository.message}", file=sys.stderr)
    if repository.additional_tags:
        shown = ", ".join(repository.additional_tags)
        print(
            f"info: The remote repository contained {len(repository.additional_tags)} additional tags "
            f"which were not imported: {shown}",
            file=sys.stderr,
        )


class _ModelWarnings(logging.Handler):
    """The import's warnings (a pull secret skipped, naming it) as `warning:` lines; per-image
    failures are left out, the command reports each one itself."""

    _STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "taskName"}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "image import failed":
            return
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in self._STANDARD)
        warn(f"{record.getMessage()} ({fields})" if fields else record.getMessage())


@contextlib.contextmanager
def _model_warnings() -> Iterator[None]:
    """Route the `okura` loggers' warnings to _ModelWarnings during the import (a command sets
    up no logging, and Python's last-resort handler would print bare messages)."""
    logger, handler = logging.getLogger("okura"), _ModelWarnings(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# -- the answer as text (oc's describe) ----------------------------------------------------------


def describe_import(answer: dict[str, Any], name: str, flags: Flags, failed: bool, now: datetime) -> list[str]:
    """The header, the stream as the import left it (oc's `describe is`), then the imported
    image; a dry run stores no stream, so it shows what was fetched instead."""
    header = "imported with errors" if failed else "imported"
    lines = [f"{RESOURCE}/{name} {header}{' (dry run)' if flags.dry_run else ''}", ""]
    status = answer["status"]
    if "import" in status:
        lines += [*describe_stream(status["import"], now), ""]
    if not flags.all:
        for entry in status["images"]:
            if "image" in entry:
                lines += [*describe_image(entry["image"], f"{name}:{entry.get('tag', '')}", now), ""]
    elif "import" not in status:
        entries = status.get("repository", {}).get("images") or status["images"]
        lines += [line for entry in entries for line in _fetched_tag(entry)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _fetched_tag(entry: dict[str, Any]) -> list[str]:
    """One tag of a dry run with --all: the image it would point at, or why it failed."""
    if "image" in entry:
        return [entry.get("tag", ""), f"  * {entry['image']['dockerImageReference']}", ""]
    outcome = entry["status"]
    return [entry.get("tag", ""), f"  ! error: Import failed ({outcome.get('reason')}): {outcome.get('message')}", ""]


# -- the parser ------------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "import-image",
        help="import images from another registry into an image stream (as `oc import-image`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_flags(p)
    p.add_argument("target", metavar="[NS/]NAME[:TAG]", help="the image stream and tag to import into")
    p.add_argument("-n", "--namespace", help="the namespace of a name written without one")
    p.add_argument("--from", dest="source", metavar="REF", help="the image (or, with --all, repository) to import")
    p.add_argument("--confirm", action="store_true", help="create the image stream if it does not exist")
    p.add_argument(
        "--all", action="store_true", help="import every tag of --from's repository, or every tag again without it"
    )
    p.add_argument("--scheduled", action="store_true", help="import the tags again periodically")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP or unverified TLS to the registry")
    p.add_argument(
        "--reference-policy",
        type=str.lower,
        choices=("source", "local"),
        help="local: pulls reference this registry (pull-through); default source, or the tag's own",
    )
    p.add_argument("--import-mode", choices=IMPORT_MODES, help="PreserveOriginal keeps a manifest list whole")
    p.add_argument("--dry-run", action="store_true", help="fetch and show the images, store nothing")
    p.add_argument("-o", "--output", choices=("json", "yaml"), help="print the ImageStreamImport answer")
    p.set_defaults(func=_run, prog="okura import-image")


def _run(args: argparse.Namespace) -> int:
    flags = Flags.of(args)
    target = parse_target(args.target, args.namespace, flags.all)
    check_source(flags)

    async def action(runtime: Runtime, _args: argparse.Namespace) -> int:
        return await _import(runtime, target, flags, args.output)

    # Imports store config blobs: storage is opened. The database must exist already (as for `okura tag`).
    return run(args, action, storage=True)
