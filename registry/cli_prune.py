"""`okura pruner ...` (the ImagePruner resource) and `okura prune images` (an on-demand run,
as `oc adm prune images`), working directly on the database and storage the server uses
(same config, like `okura auth`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from registry.units import parse_bool

DRY_RUN_BANNER = "Dry run enabled - no modifications will be made. Add --confirm to remove images"


def _run(args: argparse.Namespace, action: Callable[..., Awaitable[int]], prog: str) -> int:
    from registry.app import build_registry
    from registry.cli import load_cli_config
    from registry.errors import RegistryError

    config = load_cli_config(args)

    async def main() -> int:
        reg = build_registry(config)
        try:
            await reg.storage.open()
            await reg.db.migrate()
            if not reg.db.is_sqlite:
                # What a prune deletes must leave the caches of replicas on other hosts too.
                from registry.metadata.changes import ChangeFeed

                reg.cache.feed = ChangeFeed(config.database_url, reg.cache.generation)
                await reg.cache.feed.start()
            return await action(reg, args)
        finally:
            if reg.cache.feed is not None:
                await reg.cache.feed.stop()
            reg.cache.generation.close()
            await reg.db.close()
            await reg.storage.close()

    try:
        return asyncio.run(main())
    except RegistryError as e:
        print(f"{prog}: error: {e.message}", file=sys.stderr)
        return 1


def _dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2) + "\n"
    return yaml.safe_dump(obj, sort_keys=False)


async def _get(reg: Any, args: argparse.Namespace) -> int:
    from registry.pruning import resource

    sys.stdout.write(_dump(await resource.current_object(reg), args.output))
    return 0


def _read_manifest(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML or JSON: {e}") from None


async def _apply(reg: Any, args: argparse.Namespace) -> int:
    from registry.pruning import resource, spec

    _, changed = await resource.apply_object(reg, args.body)
    print(f"{spec.RESOURCE} {'configured' if changed else 'unchanged'}")
    return 0


async def _suspend(reg: Any, args: argparse.Namespace) -> int:
    from registry.pruning import resource, spec

    _, changed = await resource.set_suspend(reg, args.suspend)
    word = "suspended" if args.suspend else "resumed"
    print(f"{spec.RESOURCE} {word}" if changed else f"{spec.RESOURCE} unchanged (already {word})")
    return 0


def _go_duration(text: str) -> float:
    from registry.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _flag_bool(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def prune_options_from_args(stored: dict[str, Any], grace_period: float, args: argparse.Namespace) -> Any:
    """The run's options: the stored spec, overridden by the flags given."""
    from dataclasses import replace

    from registry.pruning import spec

    options = spec.prune_options(stored, grace_period, confirm=bool(args.confirm))
    overrides: dict[str, Any] = {}
    if args.keep_tag_revisions is not None:
        overrides["keep_tag_revisions"] = args.keep_tag_revisions
    if args.keep_younger_than is not None:
        overrides["keep_younger_than"] = args.keep_younger_than
    if args.prune_registry is not None:
        overrides["prune_registry"] = args.prune_registry
    if args.ignore_invalid_refs is not None:
        overrides["ignore_invalid_refs"] = args.ignore_invalid_refs
    return replace(options, **overrides)


async def _prune_images(reg: Any, args: argparse.Namespace) -> int:
    from registry.pruning import resource, schedule

    state = await resource.get_pruner(reg)
    options = prune_options_from_args(state.spec, reg.config.pruner.grace_period, args)
    if not options.confirm:
        print(DRY_RUN_BANNER, flush=True)
        try:
            report = await schedule.default_prune()(reg, options)
        except Exception as e:
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            print(f"okura prune images: error: {message}", file=sys.stderr)
            return 1
        for line in report.details:
            print(line)
        print(resource.summary(report.counts(), dry_run=True))
        return 0

    holder = schedule.holder_for(reg)
    if not await schedule.acquire(reg, holder):
        print(
            "okura prune images: error: another prune run is in progress (scheduled or manual); try again later",
            file=sys.stderr,
        )
        return 1
    try:
        run_id, _ = await resource.begin_manual_run(reg)
        record, report = await schedule.execute_run(reg, run_id, options, holder=holder)
    finally:
        await schedule.release(reg, holder)
    if report is not None:
        for line in report.details:
            print(line)
    if record.outcome != "succeeded":
        print(f"okura prune images: error: run {run_id} failed: {record.message}", file=sys.stderr)
        return 1
    print(resource.summary(report.counts() if report else {}, dry_run=False))
    return 0


def cmd_pruner_apply(args: argparse.Namespace) -> int:
    try:
        args.body = _read_manifest(args.filename)
    except ValueError as e:
        print(f"okura pruner apply: error: {e}", file=sys.stderr)
        return 1
    return _run(args, _apply, "okura pruner apply")


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    pruner = sub.add_parser("pruner", help="show or change the ImagePruner resource (schedule and retention)")
    cmds = pruner.add_subparsers(dest="pruner_command", required=True)

    p = cmds.add_parser("get", help="print the ImagePruner resource with its status and run history")
    common(p)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=lambda args: _run(args, _get, "okura pruner get"))

    p = cmds.add_parser("apply", help="replace the spec with that of an ImagePruner object (YAML or JSON)")
    common(p)
    p.add_argument("-f", "--filename", required=True, help="file with the object; - for standard input")
    p.set_defaults(func=cmd_pruner_apply)

    for name, suspend in (("suspend", True), ("resume", False)):
        p = cmds.add_parser(name, help=f"{name} scheduled runs (spec.suspend={str(suspend).lower()})")
        common(p)
        p.set_defaults(func=lambda args, s=suspend, n=name: _run(args, _suspend, f"okura pruner {n}"), suspend=suspend)

    prune = sub.add_parser("prune", help="prune now, as `oc adm prune images`")
    what = prune.add_subparsers(dest="prune_command", required=True)
    p = what.add_parser(
        "images",
        help="prune tag history, manifests and blobs (a dry run unless --confirm)",
        description="Defaults come from the ImagePruner spec. Without --confirm nothing is changed: "
        "the run only reports what it would delete. A confirmed run is recorded in the pruner's run history.",
    )
    common(p)
    p.add_argument("--keep-tag-revisions", type=_non_negative, metavar="N", help="revisions kept per tag")
    p.add_argument(
        "--keep-younger-than", type=_go_duration, metavar="DURATION", help="keep images younger than this (60m, 1h)"
    )
    p.add_argument(
        "--prune-registry",
        type=_flag_bool,
        nargs="?",
        const=True,
        metavar="BOOL",
        help="delete from storage too (false: metadata only)",
    )
    p.add_argument(
        "--ignore-invalid-refs", type=_flag_bool, nargs="?", const=True, metavar="BOOL", help="skip invalid references"
    )
    p.add_argument(
        "--confirm", type=_flag_bool, nargs="?", const=True, default=False, metavar="BOOL", help="really delete"
    )
    p.set_defaults(func=lambda args: _run(args, _prune_images, "okura prune images"))
