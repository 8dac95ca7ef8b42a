"""`okura auth ...`: users, service accounts, tokens and role bindings, managed directly in
the database the server uses (same config). Processes sharing the database see changes
at once (shared counters on this host, the change feed on PostgreSQL); other replicas
within seconds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from auth.access import Check
from auth.roles import VERBS, resolve_resource
from auth.store import Conflict, NotFound
from auth.subjects import GROUPS, SubjectInvalid, identity_for, parse_subject
from registry.cli.common import CommandError, config_flags, run, warn
from registry.runtime import Runtime, Schema
from registry.units import parse_duration

Action = Callable[[Runtime, argparse.Namespace], Awaitable[int]]


def _translated(action: Action) -> Action:
    """The store's errors, as one line each."""

    async def wrapped(runtime: Runtime, args: argparse.Namespace) -> int:
        try:
            return await action(runtime, args)
        except (SubjectInvalid, KeyError, ValueError) as e:
            raise CommandError(str(e).strip("'\""), status=2) from None
        except (NotFound, Conflict) as e:
            raise CommandError(str(e)) from None

    return wrapped


async def _create_user(runtime: Runtime, args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise ValueError("empty password on standard input")
    await runtime.auth.store.create_user(args.name, password)
    print(f"user {args.name} created", file=sys.stderr)
    return 0


async def _create_sa(runtime: Runtime, args: argparse.Namespace) -> int:
    subject = await runtime.auth.store.create_service_account(args.name)
    print(f"service account {subject} created", file=sys.stderr)
    return 0


async def _create_token(runtime: Runtime, args: argparse.Namespace) -> int:
    expires = parse_duration(args.expires) if args.expires else None
    secret, info = await runtime.auth.store.create_token(args.subject, expires, args.description)
    print(secret)  # the only line on stdout: scripts capture it
    print(
        f"token {info.id} for {info.subject}"
        + (f", expires {info.expires_at.isoformat()}" if info.expires_at else ", no expiry"),
        file=sys.stderr,
    )
    return 0


async def _revoke_token(runtime: Runtime, args: argparse.Namespace) -> int:
    await runtime.auth.store.revoke_token(args.id)
    runtime.auth.authorizer.changed()
    print(f"token {args.id} revoked", file=sys.stderr)
    return 0


async def _list_tokens(runtime: Runtime, args: argparse.Namespace) -> int:
    rows = await runtime.auth.store.list_tokens(args.subject)
    print(f"{'ID':<18} {'SUBJECT':<40} {'STATE':<9} {'EXPIRES':<26} DESCRIPTION")
    for t in rows:
        state = "revoked" if t.revoked_at else "active"
        expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
        print(f"{t.id:<18} {t.subject:<40} {state:<9} {expires:<26} {t.description or ''}")
    return 0


async def _add_role(runtime: Runtime, args: argparse.Namespace) -> int:
    store = runtime.auth.store
    subject = parse_subject(args.subject)
    if subject not in GROUPS and not await store.subject_exists(subject):
        warn(f"no user or service account {subject} exists yet; the binding applies once it is created")
    binding = await store.add_role(args.role, subject, args.namespace)
    runtime.auth.authorizer.changed()
    where = f"in namespace {binding.namespace}" if binding.namespace else "cluster-wide"
    print(f"role {binding.role} granted to {binding.subject} {where}", file=sys.stderr)
    return 0


async def _remove_role(runtime: Runtime, args: argparse.Namespace) -> int:
    await runtime.auth.store.remove_role(args.role, args.subject, args.namespace)
    runtime.auth.authorizer.changed()
    print(f"role {args.role} removed from {args.subject}", file=sys.stderr)
    return 0


async def _can_i(runtime: Runtime, args: argparse.Namespace) -> int:
    """As `kubectl auth can-i` asks the API (the same authorizer answers both)."""
    identity = identity_for(parse_subject(args.as_))
    allowed = await runtime.auth.authorizer.allowed(identity, Check(args.verb, args.resource, args.namespace))
    print("yes" if allowed else "no")
    return 0 if allowed else 1


def _resource(text: str) -> str:
    try:
        return resolve_resource(text)
    except KeyError as e:
        raise argparse.ArgumentTypeError(str(e.args[0])) from None


async def _who_can(runtime: Runtime, args: argparse.Namespace) -> int:
    for subject in await runtime.auth.authorizer.who_can(Check(args.verb, args.resource, args.namespace)):
        print(subject)
    return 0


async def _rotate_key(runtime: Runtime, args: argparse.Namespace) -> int:
    kid = await runtime.auth.issuer.rotate()
    print(f"new signing key {kid}; older keys still verify live tokens", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    group = sub.add_parser("auth", help="manage users, service accounts, tokens and roles")
    cmds = group.add_subparsers(dest="auth_command", required=True, metavar="COMMAND")

    def cmd(name: str, action: Action, help_: str, writes: bool = True) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_)
        config_flags(p)
        # Commands that write may be the first use of a database (an admin made before the
        # server ever ran); commands that only read never create one.
        schema = Schema.MIGRATE if writes else Schema.EXISTING
        p.set_defaults(func=lambda args: run(args, _translated(action), schema=schema), prog=f"okura auth {name}")
        return p

    p = cmd("create-user", _create_user, "create a user (tokens are the recommended credential)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read a password from stdin (not recommended)")
    cmd("create-serviceaccount", _create_sa, "create a service account NS/NAME").add_argument("name")
    p = cmd("create-token", _create_token, "create a token; prints it (only) on stdout")
    p.add_argument("subject", help="user name or NS/NAME of a service account")
    p.add_argument("--expires", help="lifetime such as 30d, 12h or 1h30m (default: never)")
    p.add_argument("--description")
    cmd("revoke-token", _revoke_token, "revoke a token by ID").add_argument("id")
    cmd("list-tokens", _list_tokens, "list tokens", writes=False).add_argument("subject", nargs="?")
    for name, action in (("add-role", _add_role), ("remove-role", _remove_role)):
        p = cmd(name, action, f"{name.split('-')[0]} a role binding (cluster-wide without -n)")
        p.add_argument("role")
        p.add_argument("subject", help="user, NS/NAME of a service account, or a group")
        p.add_argument("-n", "--namespace")
    p = cmd("can-i", _can_i, "check a permission (cluster-wide without -n); exit 0 if allowed", writes=False)
    p.add_argument("verb", choices=VERBS)
    p.add_argument("resource", type=_resource, help="as kubectl names it: imagestreams, is, istag, images, ...")
    p.add_argument("-n", "--namespace")
    p.add_argument("--as", dest="as_", required=True, metavar="SUBJECT")
    p = cmd("who-can", _who_can, "list subjects allowed a verb on a resource (cluster-wide without -n)", writes=False)
    p.add_argument("verb", choices=VERBS)
    p.add_argument("resource", type=_resource)
    p.add_argument("-n", "--namespace")
    cmd("rotate-key", _rotate_key, "start signing tokens with a new key")
