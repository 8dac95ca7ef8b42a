"""`okura secrets`: pull secrets for imports from other registries, as `kubectl create secret
docker-registry` and `oc create secret` make them.

    okura secrets create-docker-registry NS/NAME --docker-server S --docker-username U --docker-password P
    okura secrets create NS/NAME --from-file=.dockerconfigjson=PATH     (a podman auth.json works as is)
    okura secrets list [-n NS]                                          names and types, never the data
    okura secrets delete NS/NAME

The data is sealed with the secrets key (secrets.key_file) before it reaches the database.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from registry.cli.common import CommandError, config_flags, run
from registry.errors import ResourceNotFound
from registry.imports.keyring import DOCKERCONFIGJSON
from registry.model import secrets
from registry.runtime import Runtime, Schema

TYPES_BY_KEY = {key: type_ for type_, key in secrets.DATA_KEYS.items()}


def parse_name(text: str, namespace: str | None) -> tuple[str, str]:
    ns, slash, name = text.rpartition("/")
    if not slash:
        if namespace is None:
            raise CommandError(f"{text!r} names no namespace: write NS/{text} or pass -n NS", status=2)
        ns = namespace
    if not secrets.valid_name(ns) or not secrets.valid_name(name):
        raise CommandError(f"{text!r}: a secret is NS/NAME, lowercase letters, digits, '.', '_', '-'", status=2)
    return ns, name


def docker_registry_data(server: str, username: str, password: str, email: str) -> bytes:
    """The .dockerconfigjson kubectl create secret docker-registry writes."""
    entry = {
        "username": username,
        "password": password,
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode(),
    }
    if email:
        entry["email"] = email
    return json.dumps({"auths": {server: entry}}).encode()


def _from_file(spec: str) -> tuple[str, bytes]:
    key, eq, path = spec.partition("=")
    if not eq:
        key, path = ".dockerconfigjson", spec
    if key not in TYPES_BY_KEY:
        raise CommandError(f"--from-file key {key!r}: use .dockerconfigjson or .dockercfg", status=2)
    try:
        with open(path, "rb") as f:
            return key, f.read(secrets.MAX_DATA_BYTES + 1)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}", status=2) from None


async def _create(runtime: Runtime, args: argparse.Namespace) -> int:
    ns, name = parse_name(args.name, args.namespace)
    if args.action == "create-docker-registry":
        password = args.docker_password
        if password == "-":
            password = sys.stdin.readline().rstrip("\n")
        type_ = DOCKERCONFIGJSON
        data = {
            ".dockerconfigjson": docker_registry_data(
                args.docker_server, args.docker_username, password, args.docker_email
            )
        }
    else:
        key, content = _from_file(args.from_file)
        type_ = TYPES_BY_KEY[key]
        data = {key: content}
    made = await secrets.create_secret(runtime.registry, ns, name, type_, data, replace=args.replace)
    print(f"secret/{made.name} {'configured' if args.replace else 'created'} in {made.namespace} ({made.type})")
    return 0


async def _list(runtime: Runtime, args: argparse.Namespace) -> int:
    found = await secrets.list_secrets(runtime.registry, args.namespace)
    rows = [("NAMESPACE", "NAME", "TYPE", "CREATED")] + [
        (s.namespace, s.name, s.type, s.created.strftime("%Y-%m-%dT%H:%M:%SZ")) for s in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _delete(runtime: Runtime, args: argparse.Namespace) -> int:
    ns, name = parse_name(args.name, args.namespace)
    try:
        await secrets.delete_secret(runtime.registry, ns, name)
    except ResourceNotFound:
        raise CommandError(f"secret {ns}/{name} not found") from None
    print(f"secret/{name} deleted from {ns}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "secrets",
        help="pull secrets for imports from other registries (sealed at rest)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text)
        config_flags(a)
        a.add_argument("-n", "--namespace", help="the namespace of names written without one")
        return a

    docker = action("create-docker-registry", "a kubernetes.io/dockerconfigjson secret for one registry")
    docker.add_argument("name", metavar="NS/NAME")
    docker.add_argument("--docker-server", required=True, help="the registry host[:port][/path]")
    docker.add_argument("--docker-username", required=True)
    docker.add_argument("--docker-password", required=True, help="the password or token ('-': read it from stdin)")
    docker.add_argument("--docker-email", default="")
    docker.add_argument("--replace", action="store_true", help="overwrite a secret of that name")
    docker.set_defaults(func=lambda a: run(a, _create, schema=Schema.MIGRATE), prog="okura secrets")

    create = action("create", "a secret from a docker config file (a podman auth.json works as is)")
    create.add_argument("name", metavar="NS/NAME")
    create.add_argument(
        "--from-file",
        required=True,
        metavar="[KEY=]PATH",
        help=".dockerconfigjson=PATH (default key) or .dockercfg=PATH",
    )
    create.add_argument("--replace", action="store_true", help="overwrite a secret of that name")
    create.set_defaults(func=lambda a: run(a, _create, schema=Schema.MIGRATE), prog="okura secrets")

    listing = action("list", "names and types of the secrets (never their data)")
    listing.set_defaults(func=lambda a: run(a, _list), prog="okura secrets")

    remove = action("delete", "delete a secret")
    remove.add_argument("name", metavar="NS/NAME")
    remove.set_defaults(func=lambda a: run(a, _delete, schema=Schema.MIGRATE), prog="okura secrets")
