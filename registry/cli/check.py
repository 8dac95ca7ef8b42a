"""`okura check-config`: validate the configuration and the environment, then reach the
database and the storage it names and say, for each, whether it answers. Nothing is
created or changed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from registry.cli.common import config_flags, load
from registry.config import Config, unknown_env_keys
from registry.metadata.db import Database, describe_url, sqlite_path
from registry.metadata.migrate import SCHEMA_HEAD
from storage import create_storage

TIMEOUT = 30.0


async def _database(config: Config) -> tuple[bool, str]:
    url = config.database_url
    if url.startswith("sqlite:") and not os.path.exists(sqlite_path(url)):
        return True, f"{describe_url(url)} does not exist yet (okura serve or okura migrate creates it)"
    db = Database(url, pool_size=1)
    try:
        async with asyncio.timeout(TIMEOUT):
            revision = await db.schema_revision()
    except TimeoutError:
        return False, f"{db.describe()}: no answer within {TIMEOUT:g} s"
    except Exception as e:  # say why, whatever the driver raised
        cause = e.__cause__ or e
        return False, f"{db.describe()}: unreachable: {str(cause).splitlines()[0][:200] or type(cause).__name__}"
    finally:
        await db.close()
    if revision == SCHEMA_HEAD:
        return True, f"{db.describe()}: reachable, schema current"
    state = f"schema {revision}" if revision else "no schema yet"
    return True, f"{db.describe()}: reachable, {state} (okura serve or okura migrate brings it to {SCHEMA_HEAD})"


async def _storage(config: Config) -> tuple[bool, str]:
    driver = create_storage(config.storage.driver, {"root": config.storage_root, "s3": config.storage.s3})
    where = config.storage_root if config.storage.driver == "filesystem" else f"bucket {config.storage.s3.bucket}"
    if config.storage.driver == "filesystem" and not os.path.isdir(os.path.join(config.storage_root, "blobs")):
        parent = next(p for p in _parents(config.storage_root) if os.path.exists(p))
        if os.access(parent, os.W_OK):
            return True, f"filesystem {config.storage_root} does not exist yet (okura serve creates it)"
        return False, f"filesystem {config.storage_root}: {parent} is not writable"
    try:
        async with asyncio.timeout(TIMEOUT):
            await driver.open()
        async with asyncio.timeout(TIMEOUT):
            await driver.check()
    except TimeoutError:
        return False, f"{config.storage.driver} {where}: no answer within {TIMEOUT:g} s"
    except Exception as e:
        return False, f"{config.storage.driver}: {e}"
    finally:
        await driver.close()
    return True, f"{config.storage.driver} {where}: reachable"


def _parents(path: str) -> list[str]:
    path = os.path.abspath(path)
    found = [path]
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        found.append(path)
    return found


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    ok = True
    for key in unknown_env_keys(dict(os.environ)):
        print(f"error: unknown environment variable {key}", file=sys.stderr)
        ok = False
    print(
        f"config: ok (storage={config.storage.driver} database={config.database_url.split('://')[0]} "
        f"addr={config.http.addr} workers={config.http.workers} auth={'on' if config.auth.enabled else 'off'})"
    )

    async def reach() -> list[tuple[str, bool, str]]:
        (db_ok, db_text), (st_ok, st_text) = await asyncio.gather(_database(config), _storage(config))
        return [("database", db_ok, db_text), ("storage", st_ok, st_text)]

    for name, reachable, text in asyncio.run(reach()):
        if reachable:
            print(f"{name}: {text}")
        else:
            print(f"error: {name}: {text}", file=sys.stderr)
        ok = ok and reachable
    return 0 if ok else 1


def add_parser(sub: Any) -> None:
    check = sub.add_parser("check-config", help="validate the config and reach its database and storage")
    config_flags(check)
    check.set_defaults(func=cmd_check_config, prog="okura check-config")
