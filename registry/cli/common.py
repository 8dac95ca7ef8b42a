"""What every `okura` command shares: the config flags, loading the configuration, and
running an action on the runtime (registry/runtime.py) with user errors reported as one
line and an exit status, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from registry.config import Config, config_from_dict, load_config
from registry.runtime import Runtime, Schema, open_runtime
from registry.units import parse_duration

Action = Callable[[Runtime, argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A user error found by a command (a bad name, a missing file): one line, exit 1 (or `status`)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def config_flags(parser: argparse.ArgumentParser) -> None:
    """--config and --data-dir, as `okura serve` takes them: a command acts on the server's
    database and storage when it is given the same."""
    parser.add_argument(
        "--config", help="YAML config file (default: $OKURA_CONFIG)", default=os.environ.get("OKURA_CONFIG")
    )
    parser.add_argument("--data-dir", help="directory of the embedded database and blobs (default ./data)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that set config keys; a flag given beats the environment and the file."""
    result: dict[str, Any] = {}
    for flag, (section, key) in {
        "addr": ("http", "addr"),
        "workers": ("http", "workers"),
        "log_format": ("log", "format"),
        "log_level": ("log", "level"),
    }.items():
        value = getattr(args, flag, None)
        if value is not None:
            result.setdefault(section, {})[key] = value
    if getattr(args, "data_dir", None) is not None:
        result["data_dir"] = args.data_dir
    return result


def load(args: argparse.Namespace) -> Config:
    raw = os.environ.get("OKURA_CONFIG_JSON")  # set by `okura serve` for the processes it starts
    if raw and not getattr(args, "config", None):
        return config_from_dict(json.loads(raw))
    return load_config(getattr(args, "config", None), overrides=overrides(args))


def run(
    args: argparse.Namespace,
    action: Action,
    *,
    schema: Schema = Schema.EXISTING,
    storage: bool = False,
) -> int:
    """Open the runtime for the command's config and run `action` on it. Read-only commands
    keep the default: they never create or migrate a database."""
    config = load(args)

    async def main() -> int:
        async with open_runtime(config, schema=schema, storage=storage) as runtime:
            return await action(runtime, args)

    return asyncio.run(main())


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def duration_flag(text: str) -> float:
    """argparse type: a duration in the registry's one grammar (90s, 1h30m, 2d), in seconds."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def count_flag(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse
