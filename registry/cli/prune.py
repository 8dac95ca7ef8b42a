"""`okura pruner ...` (the ImagePruner resource) and `okura prune images` (an on-demand run,
as `oc adm prune images`), working on the database and storage the server uses (same
config, like `okura auth`)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

import yaml

from registry.cli.common import CommandError, config_flags, count_flag, duration_flag, run
from registry.pruning import resource, schedule, spec
from registry.pruning.plan import PruneOptions
from registry.runtime import Runtime, Schema
from registry.units import parse_bool

DRY_RUN_BANNER = "Dry run enabled - no modifications will be made. Add --confirm to remove images"


def _dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2) + "\n"
    return yaml.safe_dump(obj, sort_keys=False)


async def _get(runtime: Runtime, args: argparse.Namespace) -> int:
    sys.stdout.write(_dump(await resource.current_object(runtime.registry), args.output))
    return 0


def _read_manifest(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise CommandError(f"{path}: not valid YAML or JSON: {str(e)[:300]}") from None


async def _apply(runtime: Runtime, args: argparse.Namespace) -> int:
    _, changed = await resource.apply_object(runtime.registry, args.body)
    print(f"{spec.RESOURCE} {'configured' if changed else 'unchanged'}")
    return 0


async def _suspend(runtime: Runtime, args: argparse.Namespace) -> int:
    _, changed = await resource.set_suspend(runtime.registry, args.suspend)
    word = "suspended" if args.suspend else "resumed"
    print(f"{spec.RESOURCE} {word}" if changed else f"{spec.RESOURCE} unchanged (already {word})")
    return 0


def _flag_bool(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def prune_options_from_args(stored: dict[str, Any], grace_period: float, args: argparse.Namespace) -> PruneOptions:
    """The run's options: the stored spec, overridden by the flags given."""
    options = spec.prune_options(stored, grace_period, confirm=bool(args.confirm))
    overrides: dict[str, Any] = {}
    for flag in ("keep_tag_revisions", "keep_younger_than", "prune_registry", "ignore_invalid_refs"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if not args.quiet:
        overrides["progress"] = lambda line: print(line, file=sys.stderr, flush=True)
    return replace(options, **overrides)


async def _prune_images(runtime: Runtime, args: argparse.Namespace) -> int:
    reg = runtime.registry
    state = await resource.get_pruner(reg)
    options = prune_options_from_args(state.spec, reg.config.pruner.grace_period, args)
    if not options.confirm:
        print(DRY_RUN_BANNER, flush=True)
        try:
            report = await schedule.default_prune()(reg, options)
        except Exception as e:
            raise CommandError(getattr(e, "message", None) or str(e) or type(e).__name__) from None
        _details(report.details, args)
        print(resource.summary(report.counts(), dry_run=True))
        return 0

    holder = schedule.holder_for(reg)
    if not await schedule.acquire(reg, holder):
        raise CommandError("another prune run is in progress (scheduled or manual); try again later")
    try:
        run_id, _ = await resource.begin_manual_run(reg)
        record, report = await schedule.execute_run(reg, run_id, options, holder=holder)
    finally:
        await schedule.release(reg, holder)
    if report is not None:
        _details(report.details, args)
    if record.outcome != "succeeded":
        raise CommandError(f"run {run_id} failed: {record.message}")
    print(resource.summary(report.counts() if report else {}, dry_run=False))
    return 0


def _details(lines: list[str], args: argparse.Namespace) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def cmd_pruner_apply(args: argparse.Namespace) -> int:
    args.body = _read_manifest(args.filename)
    return run(args, _apply, schema=Schema.MIGRATE)


def add_parser(sub: Any) -> None:
    pruner = sub.add_parser("pruner", help="show or change the ImagePruner resource (schedule and retention)")
    cmds = pruner.add_subparsers(dest="pruner_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("get", help="print the ImagePruner resource with its status and run history")
    config_flags(p)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=lambda args: run(args, _get), prog="okura pruner get")

    p = cmds.add_parser("apply", help="replace the spec with that of an ImagePruner object (YAML or JSON)")
    config_flags(p)
    p.add_argument("-f", "--filename", required=True, help="file with the object; - for standard input")
    p.set_defaults(func=cmd_pruner_apply, prog="okura pruner apply")

    for name, suspend in (("suspend", True), ("resume", False)):
        p = cmds.add_parser(name, help=f"{name} scheduled runs (spec.suspend={str(suspend).lower()})")
        config_flags(p)
        p.set_defaults(
            func=lambda args: run(args, _suspend, schema=Schema.MIGRATE), suspend=suspend, prog=f"okura pruner {name}"
        )

    prune = sub.add_parser("prune", help="prune now, as `oc adm prune images`")
    what = prune.add_subparsers(dest="prune_command", required=True, metavar="WHAT")
    p = what.add_parser(
        "images",
        help="prune tag history, manifests and blobs (a dry run unless --confirm)",
        description="Defaults come from the ImagePruner spec. Without --confirm nothing is changed: "
        "the run only reports what it would delete. A confirmed run is recorded in the pruner's run history "
        "and reports each phase on standard error as it goes.",
    )
    config_flags(p)
    p.add_argument("--keep-tag-revisions", type=count_flag(0), metavar="N", help="revisions kept per tag")
    p.add_argument(
        "--keep-younger-than",
        type=duration_flag,
        metavar="DURATION",
        help="keep images younger than this (60m, 1h30m, 2d)",
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
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary (and errors)")
    # A dry run only reads, but a confirmed run records itself and deletes from storage.
    p.set_defaults(
        func=lambda args: run(args, _prune_images, schema=Schema.EXISTING, storage=True), prog="okura prune images"
    )
