"""Users, service accounts, tokens and role bindings in the metadata database."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from auth.passwords import hash_password, verify_password
from auth.roles import resolve_role
from auth.subjects import SubjectInvalid, is_service_account, parse_namespace, parse_subject, service_account_parts
from registry.metadata.db import Database, as_utc, utcnow
from registry.metadata.schema import role_bindings, service_accounts, tokens, users

TOKEN_PREFIX = "okr_"
AUTH_SLOT = "@auth"  # the generation slot that changes to tokens and role bindings bump


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass(frozen=True)
class TokenInfo:
    id: str
    subject: str
    description: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "description": self.description,
            "created": self.created_at.isoformat(),
            "expires": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class Binding:
    role: str
    subject: str
    namespace: str | None

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "subject": self.subject, "namespace": self.namespace}


@dataclass(frozen=True)
class ValidToken:
    """A long-lived token that authenticates now."""

    id: str
    subject: str
    expires_at: datetime | None


def secret_hash(secret: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is a safe, fast lookup key."""
    return hashlib.sha256(secret.encode()).hexdigest()


_TOKEN_BY_HASH = select(tokens.c.id, tokens.c.subject, tokens.c.expires_at, tokens.c.revoked_at).where(
    tokens.c.secret_hash == bindparam("hash")
)


class AuthStore:
    def __init__(self, db: Database):
        self.db = db

    # -- subjects ------------------------------------------------------------------------------

    async def create_user(self, name: str, password: str | None = None) -> None:
        subject = parse_subject(name)
        if is_service_account(subject) or subject.startswith("system:"):
            raise SubjectInvalid(f"{name!r} is not a user name")
        pw_hash = await asyncio.to_thread(hash_password, password) if password else None

        def run(conn: Connection) -> None:
            if conn.execute(select(users.c.name).where(users.c.name == subject)).first():
                raise Conflict(f"user {subject} already exists")
            conn.execute(users.insert(), {"name": subject, "password_hash": pw_hash, "created_at": utcnow()})

        await self.db.write(run)

    async def set_password(self, name: str, password: str | None) -> None:
        pw_hash = await asyncio.to_thread(hash_password, password) if password else None

        def run(conn: Connection) -> int:
            return conn.execute(update(users).where(users.c.name == name).values(password_hash=pw_hash)).rowcount

        if not await self.db.write(run):
            raise NotFound(f"no user {name}")

    async def create_service_account(self, text: str) -> str:
        subject = parse_subject(text)
        if not is_service_account(subject):
            raise SubjectInvalid("a service account is written NAMESPACE/NAME")
        ns, name = service_account_parts(subject)

        def run(conn: Connection) -> None:
            exists = conn.execute(
                select(service_accounts.c.name).where(
                    service_accounts.c.namespace == ns, service_accounts.c.name == name
                )
            ).first()
            if exists:
                raise Conflict(f"service account {ns}/{name} already exists")
            conn.execute(service_accounts.insert(), {"namespace": ns, "name": name, "created_at": utcnow()})

        await self.db.write(run)
        return subject

    async def subject_exists(self, subject: str) -> bool:
        def run(conn: Connection) -> bool:
            if is_service_account(subject):
                ns, name = service_account_parts(subject)
                query = select(service_accounts.c.name).where(
                    service_accounts.c.namespace == ns, service_accounts.c.name == name
                )
            else:
                query = select(users.c.name).where(users.c.name == subject)
            return conn.execute(query).first() is not None

        return await self.db.read(run)

    async def list_users(self) -> list[dict[str, Any]]:
        def run(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
            return [
                {"name": r.name, "password": r.password_hash is not None, "created": as_utc(r.created_at).isoformat()}
                for r in rows
            ]

        return await self.db.read(run)

    async def list_service_accounts(self) -> list[dict[str, Any]]:
        def run(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                select(service_accounts).order_by(service_accounts.c.namespace, service_accounts.c.name)
            ).all()
            return [
                {"namespace": r.namespace, "name": r.name, "created": as_utc(r.created_at).isoformat()} for r in rows
            ]

        return await self.db.read(run)

    async def check_password(self, name: str, password: str) -> bool:
        def run(conn: Connection) -> str | None:
            return conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()

        stored = await self.db.read(run) if not name.startswith("system:") else None
        # scrypt takes tens of milliseconds: never on the event loop.
        return await asyncio.to_thread(verify_password, password, stored)

    # -- tokens ----------------------------------------------------------------------------------

    async def create_token(
        self, subject_text: str, expires_in: float | None = None, description: str | None = None
    ) -> tuple[str, TokenInfo]:
        """Returns the secret (shown once) and the token's record."""
        subject = parse_subject(subject_text)
        if subject.startswith("system:") and not is_service_account(subject):
            raise SubjectInvalid("tokens belong to a user or a service account, not a group")
        if not await self.subject_exists(subject):
            raise NotFound(f"no such user or service account: {subject_text}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        info = TokenInfo(
            id=secrets.token_hex(8),
            subject=subject,
            description=description,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
            revoked_at=None,
        )
        await self.db.write(
            lambda conn: conn.execute(
                tokens.insert(),
                {
                    "id": info.id,
                    "secret_hash": secret_hash(secret),
                    "subject": subject,
                    "description": description,
                    "created_at": now,
                    "expires_at": info.expires_at,
                    "revoked_at": None,
                },
            )
        )
        return secret, info

    async def valid_token(self, secret: str) -> ValidToken | None:
        """The token with this secret, if it is neither revoked nor expired."""
        row = await self.db.read(lambda conn: conn.execute(_TOKEN_BY_HASH, {"hash": secret_hash(secret)}).first())
        if row is None or row.revoked_at is not None:
            return None
        expires = as_utc(row.expires_at) if row.expires_at else None
        if expires is not None and expires <= utcnow():
            return None
        return ValidToken(row.id, row.subject, expires)

    async def revoke_token(self, token_id: str) -> None:
        def run(conn: Connection) -> int:
            revoked = conn.execute(
                update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=utcnow())
            ).rowcount
            if revoked:
                self.db.notify(conn, AUTH_SLOT)  # replicas drop the token and its JWTs at once
            return revoked

        if not await self.db.write(run):
            raise NotFound(f"no active token {token_id}")

    async def revoked_since(self, since: datetime) -> set[str]:
        """Ids of the tokens revoked at or after `since`."""
        query = select(tokens.c.id).where(tokens.c.revoked_at >= since)
        return await self.db.read(lambda conn: set(conn.execute(query).scalars()))

    async def list_tokens(self, subject_text: str | None = None) -> list[TokenInfo]:
        subject = parse_subject(subject_text) if subject_text else None

        def run(conn: Connection) -> list[TokenInfo]:
            query = select(tokens).order_by(tokens.c.created_at)
            if subject:
                query = query.where(tokens.c.subject == subject)
            return [
                TokenInfo(
                    r.id,
                    r.subject,
                    r.description,
                    as_utc(r.created_at),
                    as_utc(r.expires_at) if r.expires_at else None,
                    as_utc(r.revoked_at) if r.revoked_at else None,
                )
                for r in conn.execute(query).all()
            ]

        return await self.db.read(run)

    # -- role bindings ---------------------------------------------------------------------------

    async def add_role(self, role: str, subject_text: str, namespace: str | None) -> Binding:
        role_name = resolve_role(role).name
        subject = parse_subject(subject_text)
        namespace = parse_namespace(namespace) if namespace is not None else None
        binding = Binding(role_name, subject, namespace)

        def run(conn: Connection) -> None:
            if namespace is None:
                _add_cluster_binding(conn, binding)
            else:
                conn.execute(
                    self.db.insert_ignore(role_bindings, "role", "subject", "namespace"),
                    {"role": role_name, "subject": subject, "namespace": namespace, "created_at": utcnow()},
                )
            self.db.notify(conn, AUTH_SLOT)

        await self.db.write(run)
        return binding

    async def remove_role(self, role: str, subject_text: str, namespace: str | None) -> None:
        role_name = resolve_role(role).name
        subject = parse_subject(subject_text)

        def run(conn: Connection) -> int:
            ns_match = (
                role_bindings.c.namespace.is_(None) if namespace is None else role_bindings.c.namespace == namespace
            )
            removed = conn.execute(
                delete(role_bindings).where(
                    role_bindings.c.role == role_name, role_bindings.c.subject == subject, ns_match
                )
            ).rowcount
            if removed:
                self.db.notify(conn, AUTH_SLOT)
            return removed

        if not await self.db.write(run):
            raise NotFound(f"{subject} has no role {role_name} {'in ' + namespace if namespace else 'cluster-wide'}")

    async def bindings(self, namespace: str | None = None) -> list[Binding]:
        """Every binding, or those of one namespace."""

        def run(conn: Connection) -> list[Binding]:
            query = select(role_bindings.c.role, role_bindings.c.subject, role_bindings.c.namespace)
            if namespace is not None:
                query = query.where(role_bindings.c.namespace == namespace)
            return [Binding(r.role, r.subject, r.namespace) for r in conn.execute(query).all()]

        return await self.db.read(run)


def _add_cluster_binding(conn: Connection, binding: Binding) -> None:
    # NULL never conflicts in a unique constraint, so cluster bindings are deduplicated by hand.
    exists = conn.execute(
        select(role_bindings.c.id).where(
            role_bindings.c.role == binding.role,
            role_bindings.c.subject == binding.subject,
            role_bindings.c.namespace.is_(None),
        )
    ).first()
    if not exists:
        conn.execute(
            role_bindings.insert(),
            {"role": binding.role, "subject": binding.subject, "namespace": None, "created_at": utcnow()},
        )
