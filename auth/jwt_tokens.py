"""Short-lived bearer JWTs for the Docker token protocol, signed with ES256.

Keys come from `auth.signing_key_file` or are generated and kept in the database,
so every worker and replica signs and verifies with the same set. Rotation adds a
new signing key and keeps the old ones for verification, so live tokens stay valid.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from auth.store import AUTH_SLOT
from registry.cache import Generation
from registry.config import AuthConfig
from registry.metadata.db import Database, as_utc, utcnow
from registry.metadata.schema import signing_keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# pyjwt and cryptography are imported where keys are made or tokens signed and checked:
# loading them costs a process ~10 MiB, which a registry without auth never needs.

ALGORITHM = "ES256"
LEEWAY = 30  # seconds of clock skew tolerated between replicas and clients
_RELOAD_INTERVAL = 5.0
KEY_REFRESH = 60.0  # replicas on other hosts pick up a rotation within this


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Grant:
    """One `access` claim entry: actions granted on a resource."""

    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def _kid(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _load_pem(pem: str) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("the signing key must be an EC P-256 private key")
    return key


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _generate_first(conn: Connection) -> None:
    if conn.execute(select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None))).first():
        return  # another process got there first
    key = _new_key()
    conn.execute(signing_keys.insert(), {"kid": _kid(key), "private_pem": _pem(key), "created_at": utcnow()})


def _rotate(conn: Connection) -> str:
    key = _new_key()
    conn.execute(update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=utcnow()))
    conn.execute(signing_keys.insert(), {"kid": _kid(key), "private_pem": _pem(key), "created_at": utcnow()})
    return _kid(key)


def _all_keys(conn: Connection) -> list[Any]:
    return conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).all()


class TokenIssuer:
    def __init__(self, db: Database, config: AuthConfig, generation: Generation | None = None):
        self.db = db
        self.config = config
        self.generation = generation
        self._stamp: tuple[int, int] | None = None
        self._signing: tuple[str, ec.EllipticCurvePrivateKey] | None = None
        self._public: dict[str, tuple[ec.EllipticCurvePublicKey, float | None]] = {}
        self._last_reload = 0.0

    async def load(self) -> None:
        if self.config.signing_key_file:
            with open(self.config.signing_key_file) as f:
                key = _load_pem(f.read())
            self._signing = (_kid(key), key)
        else:
            await self.db.write(_generate_first)
        await self._reload()

    async def _reload(self) -> None:
        self._stamp = self.generation.stamp(AUTH_SLOT) if self.generation else None
        rows = await self.db.read(_all_keys)
        public: dict[str, tuple[ec.EllipticCurvePublicKey, float | None]] = {}
        active = None
        # A retired key verifies only tokens it signed before retirement, and only until
        # those have expired: rotating after a leak really stops forgeries.
        horizon = time.time() - self.config.token_ttl - LEEWAY
        for row in rows:
            retired = as_utc(row.retired_at).timestamp() if row.retired_at is not None else None
            if retired is not None and retired < horizon:
                continue
            key = _load_pem(row.private_pem)
            public[row.kid] = (key.public_key(), retired)
            if retired is None:
                active = (row.kid, key)
        if self.config.signing_key_file and self._signing is not None:
            public[self._signing[0]] = (self._signing[1].public_key(), None)
        elif active is not None:
            self._signing = active
        self._public = public
        self._last_reload = time.monotonic()

    async def rotate(self) -> str:
        kid = await self.db.write(_rotate)
        if self.generation is not None:
            self.generation.bump(AUTH_SLOT)  # other processes on this host switch at once
        await self._reload()
        return kid

    async def mint(
        self, subject: str, grants: list[Grant], token_id: str | None = None, not_after: float | None = None
    ) -> tuple[str, int, str]:
        """A signed token, its lifetime in seconds and its issue time (RFC 3339). Minted from a
        long-lived token, it names it (`tid`: revoking the token refuses the JWT) and expires
        no later than it (`not_after`, epoch seconds)."""
        if (self.generation is not None and self.generation.stamp(AUTH_SLOT) != self._stamp) or (
            time.monotonic() - self._last_reload > KEY_REFRESH
        ):
            await self._reload()  # a rotation elsewhere
        assert self._signing is not None, "load() first"
        kid, key = self._signing
        now = int(time.time())
        ttl = int(self.config.token_ttl)
        if not_after is not None:
            ttl = max(min(ttl, int(not_after) - now), 0)
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": subject,
            "aud": self.config.service,
            "iat": now,
            "nbf": now - 1,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(12),
            "access": [g.as_claim() for g in grants],
        }
        if token_id is not None:
            claims["tid"] = token_id
        import jwt

        token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return token, ttl, issued

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token we issued and that is valid now; raises InvalidToken.
        (The access controller caches the identity a verified token maps to.)"""
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as e:
            raise InvalidToken(f"malformed token: {e}") from None
        entry = self._public.get(kid) if isinstance(kid, str) else None
        if entry is None and time.monotonic() - self._last_reload > _RELOAD_INTERVAL:
            await self._reload()  # perhaps another replica rotated the key
            entry = self._public.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise InvalidToken("token signed by an unknown key")
        key, retired = entry
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.config.service,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        if not isinstance(claims.get("access", []), list):
            raise InvalidToken("malformed access claim")
        if not isinstance(claims.get("tid", ""), str):
            raise InvalidToken("malformed tid claim")
        if retired is not None and (not isinstance(claims["iat"], int | float) or claims["iat"] > retired + LEEWAY):
            raise InvalidToken("token signed by a retired key after its retirement")
        return claims


def granted_actions(claims: dict[str, Any], type_: str, name: str) -> set[str]:
    actions: set[str] = set()
    for entry in claims.get("access", []):
        if isinstance(entry, dict) and entry.get("type") == type_ and entry.get("name") == name:
            acts = entry.get("actions")
            if isinstance(acts, list):
                actions.update(a for a in acts if isinstance(a, str))
    return actions
