"""The `okura` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from registry.config import ConfigError, load_config, unknown_env_keys

log = logging.getLogger("okura")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "addr", None):
        overrides.setdefault("http", {})["addr"] = args.addr
    if getattr(args, "workers", None):
        overrides.setdefault("http", {})["workers"] = args.workers
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "log_format", None):
        overrides.setdefault("log", {})["format"] = args.log_format
    if getattr(args, "log_level", None):
        overrides.setdefault("log", {})["level"] = args.log_level
    return overrides


def _migrate(config: Any) -> bool:
    from registry.metadata.db import Database

    async def run() -> bool:
        db = Database(config.database_url)
        try:
            return await db.migrate()
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    from registry.logs import setup_logging

    config = _load(args)
    setup_logging(config.log.level, config.log.format)
    os.makedirs(config.data_dir, exist_ok=True)
    changed = _migrate(config)
    print("database schema migrated" if changed else "database schema is current")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    from registry.logs import setup_logging

    config = load_config(args.config, overrides=_overrides(args))
    setup_logging(config.log.level, config.log.format)
    for key in unknown_env_keys(dict(os.environ)):
        log.warning("ignoring unknown environment variable %s", key)
    os.makedirs(config.data_dir, exist_ok=True)
    effective = json.dumps(config.to_dict())
    if config.http.workers > 1:
        # Migrate in a child so this supervisor never loads the app's libraries: it only
        # forks workers, and its memory counts too.
        subprocess.run(
            [sys.executable, "-m", "registry", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "OKURA_CONFIG_JSON": effective},
        )
    else:
        _migrate(config)
    host, port = config.listen
    log.info(
        "starting okura",
        extra={
            "storage": f"{config.storage.driver} ({config.storage_root})",
            "database": _describe_url(config.database_url),
            "workers": config.http.workers,
        },
    )
    log.info(f"listening on {'' if host in ('0.0.0.0', '::') else host}:{port}")
    from registry.server.run import serve

    serve(config)
    return 0


def _describe_url(url: str) -> str:
    """The database URL without credentials, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def load_cli_config(args: argparse.Namespace) -> Any:
    return _load(args)


def _load(args: argparse.Namespace) -> Any:
    raw = os.environ.get("OKURA_CONFIG_JSON")  # set by `okura serve` for its children
    if raw and not args.config:
        from registry.config import config_from_dict

        return config_from_dict(json.loads(raw))
    return load_config(args.config, overrides=_overrides(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config, overrides=_overrides(args))
    problems = [f"unknown environment variable {k}" for k in unknown_env_keys(dict(os.environ))]
    root = config.storage_root
    parent = root if os.path.exists(root) else os.path.dirname(os.path.abspath(root))
    if config.storage.driver == "filesystem" and os.path.exists(parent) and not os.access(parent, os.W_OK):
        problems.append(f"storage.filesystem.root: {root} is not writable")
    if config.storage.driver != "filesystem":
        problems.extend(_check_storage(config))
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    print(
        f"config OK: storage={config.storage.driver} database={config.database_url.split('://')[0]} "
        f"addr={config.http.addr} workers={config.http.workers}"
    )
    return 0


def _check_storage(config: Any) -> list[str]:
    """Reach the configured object store: an unreachable endpoint, bad credentials or a
    missing bucket are reported here rather than on the first push."""
    from storage import create_storage

    async def run() -> list[str]:
        driver = create_storage(config.storage.driver, {"root": config.storage_root, "s3": config.storage.s3})
        try:
            await asyncio.wait_for(driver.open(), 30)
            await asyncio.wait_for(driver.check(), 30)
        except TimeoutError:
            return [f"storage.{config.storage.driver}: no answer within 30 s"]
        except Exception as e:
            return [f"storage.{config.storage.driver}: {e}"]
        finally:
            await driver.close()
        return []

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="okura", description="Okura OCI container image registry")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument(
        "--config", help="YAML config file (see config.example.yaml)", default=os.environ.get("OKURA_CONFIG")
    )
    serve.add_argument("--addr", help="listen address HOST:PORT (default 0.0.0.0:5000)")
    serve.add_argument("--data-dir", help="directory for the embedded database and blobs (default ./data)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the data dir (default 1)")
    serve.add_argument("--log-format", choices=["logfmt", "json"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config file", default=os.environ.get("OKURA_CONFIG"))
        p.add_argument("--data-dir")

    migrate = sub.add_parser("migrate", help="bring the metadata database schema up to date")
    common(migrate)
    migrate.set_defaults(func=cmd_migrate)

    from registry import cli_auth, cli_get

    cli_auth.add_parser(sub, common)
    cli_get.add_parser(sub, common)

    from registry import cli_prune

    cli_prune.add_parser(sub, common)

    check = sub.add_parser("check-config", help="validate a config file and the environment")
    check.add_argument("--config", help="YAML config file", default=os.environ.get("OKURA_CONFIG"))
    check.add_argument("--data-dir")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"okura: invalid configuration: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
