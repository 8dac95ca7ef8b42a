"""The `okura` command: one module per command group (serve, check, auth, get, prune), each
running its actions on the runtime through registry/cli/common.py."""

from registry.cli.main import main

__all__ = ["main"]
