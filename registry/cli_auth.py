"""`okura auth ...`: manage users, service accounts, tokens and role bindings directly in
the database the server uses (same config). Servers on this host see changes at once
(shared generation counter); replicas elsewhere within seconds."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from registry.config import ConfigError, parse_duration


def _run(args: argparse.Namespace, action: Callable[..., Awaitable[int]]) -> int:
    from auth.jwt_tokens import TokenIssuer
    from auth.policy import BindingAuthorizer
    from auth.store import AuthStore, Conflict, NotFound
    from auth.subjects import SubjectInvalid
    from registry.cache import Generation
    from registry.cli import load_cli_config
    from registry.metadata.db import Database

    config = load_cli_config(args)

    async def main() -> int:
        db = Database(config.database_url)
        generation = Generation(os.path.join(config.data_dir, "run", "cache-generation"))
        try:
            await db.migrate()
            store = AuthStore(db)
            authorizer = BindingAuthorizer(store, generation)
            return await action(
                store=store, authorizer=authorizer, issuer=TokenIssuer(db, config.auth, generation), args=args
            )
        finally:
            generation.close()
            await db.close()

    try:
        return asyncio.run(main())
    except (SubjectInvalid, KeyError, ValueError, ConfigError) as e:
        print(f"okura auth: {str(e).strip(chr(39) + chr(34))}", file=sys.stderr)
        return 2
    except (NotFound, Conflict) as e:
        print(f"okura auth: {e}", file=sys.stderr)
        return 1


async def _create_user(store: Any, args: argparse.Namespace, **_: Any) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise ValueError("empty password on standard input")
    await store.create_user(args.name, password)
    print(f"user {args.name} created", file=sys.stderr)
    return 0


async def _create_sa(store: Any, args: argparse.Namespace, **_: Any) -> int:
    subject = await store.create_service_account(args.name)
    print(f"service account {subject} created", file=sys.stderr)
    return 0


async def _create_token(store: Any, args: argparse.Namespace, **_: Any) -> int:
    expires = parse_duration(args.expires) if args.expires else None
    secret, info = await store.create_token(args.subject, expires, args.description)
    print(secret)  # the only line on stdout: scripts capture it
    print(
        f"token {info.id} for {info.subject}"
        + (f", expires {info.expires_at.isoformat()}" if info.expires_at else ", no expiry"),
        file=sys.stderr,
    )
    return 0


async def _revoke_token(store: Any, authorizer: Any, args: argparse.Namespace, **_: Any) -> int:
    await store.revoke_token(args.id)
    authorizer.changed()
    print(f"token {args.id} revoked", file=sys.stderr)
    return 0


async def _list_tokens(store: Any, args: argparse.Namespace, **_: Any) -> int:
    rows = await store.list_tokens(args.subject)
    print(f"{'ID':<18} {'SUBJECT':<40} {'STATE':<9} {'EXPIRES':<26} DESCRIPTION")
    for t in rows:
        state = "revoked" if t.revoked_at else "active"
        expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
        print(f"{t.id:<18} {t.subject:<40} {state:<9} {expires:<26} {t.description or ''}")
    return 0


async def _add_role(store: Any, authorizer: Any, args: argparse.Namespace, **_: Any) -> int:
    binding = await store.add_role(args.role, args.subject, args.namespace)
    authorizer.changed()
    where = f"in namespace {binding.namespace}" if binding.namespace else "cluster-wide"
    print(f"role {binding.role} granted to {binding.subject} {where}", file=sys.stderr)
    return 0


async def _remove_role(store: Any, authorizer: Any, args: argparse.Namespace, **_: Any) -> int:
    await store.remove_role(args.role, args.subject, args.namespace)
    authorizer.changed()
    print(f"role {args.role} removed from {args.subject}", file=sys.stderr)
    return 0


async def _can_i(authorizer: Any, args: argparse.Namespace, **_: Any) -> int:
    from auth.policy import Check
    from auth.subjects import identity_for, parse_subject

    allowed = await authorizer.allowed(
        identity_for(parse_subject(args.as_)), Check(args.verb, args.resource, args.namespace)
    )
    print("yes" if allowed else "no")
    return 0 if allowed else 1


async def _who_can(authorizer: Any, args: argparse.Namespace, **_: Any) -> int:
    from auth.policy import Check

    for subject in await authorizer.who_can(Check(args.verb, args.resource, args.namespace)):
        print(subject)
    return 0


async def _rotate_key(issuer: Any, **_: Any) -> int:
    print(f"new signing key {await issuer.rotate()}; older keys still verify live tokens", file=sys.stderr)
    return 0


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    from auth.roles import RESOURCES, VERBS

    auth = sub.add_parser("auth", help="manage users, service accounts, tokens and roles")
    cmds = auth.add_subparsers(dest="auth_command", required=True)

    def cmd(name: str, action: Callable[..., Awaitable[int]], help_: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_)
        common(p)
        p.set_defaults(func=lambda args: _run(args, action))
        return p

    p = cmd("create-user", _create_user, "create a user (tokens are the recommended credential)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read a password from stdin (not recommended)")
    cmd("create-serviceaccount", _create_sa, "create a service account NS/NAME").add_argument("name")
    p = cmd("create-token", _create_token, "create a token; prints it (only) on stdout")
    p.add_argument("subject", help="user name or NS/NAME of a service account")
    p.add_argument("--expires", help="lifetime such as 30d or 12h (default: never)")
    p.add_argument("--description")
    cmd("revoke-token", _revoke_token, "revoke a token by ID").add_argument("id")
    cmd("list-tokens", _list_tokens, "list tokens").add_argument("subject", nargs="?")
    for name, action in (("add-role", _add_role), ("remove-role", _remove_role)):
        p = cmd(name, action, f"{name.split('-')[0]} a role binding (cluster-wide without -n)")
        p.add_argument("role")
        p.add_argument("subject", help="user, NS/NAME of a service account, or a group")
        p.add_argument("-n", "--namespace")
    p = cmd("can-i", _can_i, "check a permission (cluster-wide without -n); exit 0 if allowed")
    p.add_argument("verb", choices=VERBS)
    p.add_argument("resource", choices=RESOURCES)
    p.add_argument("-n", "--namespace")
    p.add_argument("--as", dest="as_", required=True, metavar="SUBJECT")
    p = cmd("who-can", _who_can, "list subjects allowed a verb on a resource (cluster-wide without -n)")
    p.add_argument("verb", choices=VERBS)
    p.add_argument("resource", choices=RESOURCES)
    p.add_argument("-n", "--namespace")
    cmd("rotate-key", _rotate_key, "start signing tokens with a new key")
