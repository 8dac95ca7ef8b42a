"""`okura config get|apply|edit`: the registry's Config resource
(`configs.imageregistry.operator.openshift.io/cluster`), worked on in the database the server
uses (same config, like `okura pruner`). Running servers put a change in effect within
instances.config_poll_interval."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
from typing import Any

import yaml

from registry.cli.common import CommandError, config_flags, run
from registry.cli.prune import _dump, _read_manifest
from registry.errors import RegistryError
from registry.model import registry_config
from registry.model.registry_config_spec import GROUP, KIND, NAME
from registry.runtime import Runtime, Schema

RESOURCE = f"{KIND.lower()}.{GROUP}/{NAME}"
EDIT_HEADER = (
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
    "# and an empty file will abort the edit. The spec, labels and annotations are\n"
    "# applied when you save and quit, unless the object changed in the meantime.\n"
    "#\n"
)


async def _get(runtime: Runtime, args: argparse.Namespace) -> int:
    sys.stdout.write(_dump(await registry_config.current_object(runtime.registry), args.output))
    return 0


async def _apply(runtime: Runtime, args: argparse.Namespace) -> int:
    _, changed = await registry_config.apply_object(runtime.registry, args.body, keep_metadata=True)
    print(f"{RESOURCE} {'configured' if changed else 'unchanged'}")
    return 0


def _editor_command(path: str) -> list[str]:
    """kubectl's choice: $KUBE_EDITOR, else $EDITOR, else vi (a command line: it may hold flags)."""
    editor = os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(editor), path]


def _run_editor(text: str) -> tuple[str, str]:
    """Write `text` to a temporary file, open it in the editor; the file and what was saved."""
    with tempfile.NamedTemporaryFile("w", prefix="okura-config-edit-", suffix=".yaml", delete=False) as f:
        f.write(text)
    command = _editor_command(f.name)
    try:
        status = subprocess.run(command, check=False).returncode
    except OSError as e:
        os.unlink(f.name)
        raise CommandError(f"cannot run the editor {command[0]!r}: {e.strerror}") from None
    if status != 0:
        os.unlink(f.name)
        raise CommandError(f"the editor {command[0]!r} exited with status {status}; no changes made")
    with open(f.name) as saved:
        return f.name, saved.read()


def _parse_edit(path: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise CommandError(f"the edited object is not valid YAML: {str(e)[:300]}; your changes are in {path}") from None


async def _edit(runtime: Runtime, args: argparse.Namespace) -> int:
    reg = runtime.registry
    state = await registry_config.get_state(reg)
    original = registry_config.editable_object(state)
    path, text = await asyncio.to_thread(_run_editor, EDIT_HEADER + yaml.safe_dump(original, sort_keys=False))
    edited = _parse_edit(path, text)
    if edited is None or edited == original:
        os.unlink(path)
        print("Edit cancelled, saved file was empty." if edited is None else "Edit cancelled, no changes made.")
        return 0
    try:
        _, changed = await registry_config.apply_object(reg, edited, expect_version=state.resource_version)
    except RegistryError:
        print(f"A copy of your changes has been stored to {path!r}", file=sys.stderr)
        raise
    os.unlink(path)
    print(f"{RESOURCE} {'edited' if changed else 'unchanged'}")
    return 0


def cmd_config_apply(args: argparse.Namespace) -> int:
    args.body = _read_manifest(args.filename)
    return run(args, _apply, schema=Schema.MIGRATE)


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="show or change the registry's Config resource (read-only mode, limits)")
    cmds = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("get", help="print the Config resource with its status")
    config_flags(p)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=lambda args: run(args, _get), prog="okura config get")

    p = cmds.add_parser("apply", help="replace the spec with that of a Config object (YAML or JSON)")
    config_flags(p)
    p.add_argument("-f", "--filename", required=True, help="file with the object; - for standard input")
    p.set_defaults(func=cmd_config_apply, prog="okura config apply")

    p = cmds.add_parser(
        "edit",
        help="edit the Config resource in $EDITOR, as kubectl edit",
        description="Opens the spec, labels and annotations in $KUBE_EDITOR, $EDITOR or vi and applies them "
        "when saved, unless the resource changed meanwhile (then nothing is applied: edit again).",
    )
    config_flags(p)
    p.set_defaults(func=lambda args: run(args, _edit, schema=Schema.MIGRATE), prog="okura config edit")
