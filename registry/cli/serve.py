"""`okura serve` and `okura migrate`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from typing import Any

from registry.cli.common import config_flags, count_flag, duration_flag, load
from registry.config import Config, unknown_env_keys
from registry.metadata.db import describe_url

log = logging.getLogger("okura")


def _prepare(config: Config, wait: float) -> bool:
    """Reach the database (waiting up to `wait` seconds) and migrate it; True if migrated."""
    from registry.runtime import Schema, open_runtime

    async def run() -> bool:
        async with open_runtime(config, schema=Schema.MIGRATE, storage=False, wait_for_database=wait) as runtime:
            return runtime.migrated

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    from registry.logs import setup_logging

    config = load(args)
    setup_logging(config.log.level, config.log.format)
    migrated = _prepare(config, args.wait if args.wait is not None else 0.0)
    print("database schema migrated" if migrated else "database schema is current")
    return 0


def _describe_storage(config: Config) -> str:
    if config.storage.driver == "s3":
        s3 = config.storage.s3
        where = s3.endpoint_url or f"AWS {s3.region}"
        return f"s3 (bucket {s3.bucket}{'/' + s3.root_prefix if s3.root_prefix else ''} at {where})"
    return f"filesystem ({config.storage_root})"


def cmd_serve(args: argparse.Namespace) -> int:
    from registry.logs import setup_logging

    config = load(args)
    setup_logging(config.log.level, config.log.format)
    for key in unknown_env_keys(dict(os.environ)):
        log.warning("ignoring unknown environment variable %s", key)
    if config.http.tls.certificate:
        from registry.server.tls import build_context

        build_context(config.http.tls)  # unreadable files: one error now, not one per worker
    os.makedirs(config.data_dir, exist_ok=True)
    wait = config.database.wait_at_start
    if config.http.workers > 1:
        # Migrate in a child so this supervisor never loads the app's libraries: it only
        # forks workers, and its memory counts too.
        done = subprocess.run(
            [sys.executable, "-m", "registry", "migrate", "--wait", f"{wait}s"],
            stdout=subprocess.DEVNULL,
            env={**os.environ, "OKURA_CONFIG_JSON": json.dumps(config.to_dict())},
        )
        if done.returncode != 0:
            return done.returncode
    else:
        _prepare(config, wait)
    host, port = config.listen
    from registry.runtime import version  # already loaded by the command line's parser

    log.info(
        "starting okura",
        extra={
            "version": version(),
            "storage": _describe_storage(config),
            "database": describe_url(config.database_url),
            "auth": "enabled" if config.auth.enabled else "disabled",
            "workers": config.http.workers,
        },
    )
    scheme = "https" if config.http.tls.certificate else "http"
    log.info(f"listening on {scheme}://{host}:{port}")
    from registry.server.run import serve

    serve(config)
    return 0


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the registry")
    config_flags(serve)
    serve.add_argument("--addr", help="listen address HOST:PORT (default 0.0.0.0:5000)")
    serve.add_argument("--workers", type=count_flag(1), help="worker processes sharing the data dir (default 1)")
    serve.add_argument("--log-format", choices=["logfmt", "json"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve, prog="okura serve")

    migrate = sub.add_parser("migrate", help="create the metadata database or bring its schema up to date")
    config_flags(migrate)
    migrate.add_argument("--wait", type=duration_flag, metavar="DURATION", help="keep trying an unreachable database")
    migrate.set_defaults(func=cmd_migrate, prog="okura migrate")
