"""`okura`: the parser of every command group, and the one place their errors become a
line on standard error and an exit status."""

from __future__ import annotations

import argparse
import os
import sys

from registry.cli import (
    auth,
    check,
    config_cmd,
    events,
    get,
    import_image,
    kubeconfig,
    logs,
    prune,
    secrets,
    serve,
    tag,
)
from registry.cli.common import CommandError
from registry.config import ConfigError
from registry.errors import RegistryError
from registry.runtime import RuntimeUnavailable, version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="okura", description="Okura OCI container image registry")
    parser.add_argument("--version", action="version", version=f"okura {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serve, check, auth, get, logs, tag, import_image, kubeconfig, secrets, prune, config_cmd, events):
        group.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = getattr(args, "prog", "okura")
    try:
        return args.func(args)
    except ConfigError as e:
        if len(e.problems) == 1:
            print(f"{prog}: invalid configuration: {e.problems[0]}", file=sys.stderr)
        else:
            print(f"{prog}: invalid configuration ({len(e.problems)} problems):", file=sys.stderr)
            for problem in e.problems:
                print(f"  {problem}", file=sys.stderr)
        return 2
    except (RuntimeUnavailable, CommandError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return getattr(e, "status", 1)
    except RegistryError as e:
        print(f"{prog}: error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `okura get is | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
