"""The OpenShift-style access controller: who is calling, and may they do what the
route needs? A docker scope becomes SubjectAccessReview-like checks of a verb on a
resource in the repository's namespace (its first path component); an API route's
exact check is asked as it is, on every request."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection

from auth.access import Access, ApiAccess, Check, Needed
from auth.authn import Authenticator, DatabaseAuthenticator
from auth.grants import describe_lacking
from auth.jwt_tokens import LEEWAY, InvalidToken, TokenIssuer, granted_actions
from auth.policy import Authorizer
from auth.ratelimit import FailureLimiter, LockedOut
from auth.revocations import RevokedTokens
from auth.roles import ADMIN_OPERATIONS
from auth.store import AuthStore
from auth.subjects import ANONYMOUS, ANONYMOUS_USER, Identity, identity_for
from registry.cache import Generation
from registry.config import AuthConfig
from registry.errors import Denied, NameInvalid, TooManyRequests, Unauthorized

ACTIONS = ("pull", "push", "delete")


class BadCredentials(Exception):
    pass


def namespace_of(repository: str) -> str:
    namespace, sep, _ = repository.partition("/")
    if not sep:
        raise NameInvalid(
            f"repository {repository!r} has no namespace: with auth enabled names are <namespace>/<name>, "
            "and permissions are granted per namespace",
            detail={"name": repository},
        )
    return namespace


def checks_for(access: Access, repository_exists: bool = True) -> list[Check]:
    """The checks a docker scope stands for (OpenShift's mapping): what a route declaring it
    needs, and what the token endpoint requires before granting it."""
    if access.type == "repository":
        ns = namespace_of(access.name)
        if access.action == "pull":
            return [Check("get", "imagestreams/layers", ns)]
        if access.action == "push":
            checks = [Check("update", "imagestreams/layers", ns)]
            if not repository_exists:
                checks.append(Check("create", "imagestreams", ns))
            return checks
        if access.action == "delete":
            return [Check("delete", "images", ns)]
        if access.action == "*":
            return [c for a in ACTIONS for c in checks_for(Access(access.type, access.name, a), repository_exists)]
    if access.type == "registry":
        if access.name == "catalog":
            return []  # everyone may list; the listing shows only what the caller may pull
        if access.name == "metrics":
            return [Check("get", "registry/metrics", None)]
        if access.name == "admin" and access.action == "*":
            return [Check(verb, resource, None) for verb, resource in ADMIN_OPERATIONS]
        if access.name == "api" and access.action == "*":
            return []  # anyone may hold it: each API request is checked exactly
        if access.name in ("imagepruners", "configs"):  # imageregistry.operator.openshift.io, cluster-scoped
            return [Check("get" if access.action == "get" else "update", access.name, None)]
    raise Denied(f"unknown access {access.type}:{access.name}:{access.action}")


class OpenShiftAccessController:
    def __init__(
        self,
        config: AuthConfig,
        store: AuthStore,
        authorizer: Authorizer,
        issuer: TokenIssuer,
        generation: Generation,
        repository_exists: Callable[[str], Awaitable[bool]],
        base_url: str = "",
    ):
        self.config = config
        self.store = store
        self.authorizer = authorizer
        self.issuer = issuer
        self.generation = generation
        self.repository_exists = repository_exists
        self.base_url = base_url
        self.authenticator: Authenticator = DatabaseAuthenticator(store, generation)
        self.limiter = FailureLimiter(
            store.db, config.slow_after, config.max_failures, config.failure_window, config.lockout
        )
        self._jwt_identities: dict[str, tuple[float, Identity]] = {}
        self.revoked = RevokedTokens(store, generation, float(config.token_ttl) + 2 * LEEWAY)

    # -- authentication -------------------------------------------------------------------------

    async def _credentials(self, user: str, secret: str, client: str) -> Identity:
        if not secret:
            raise BadCredentials("empty password")
        # A token first: it cannot be guessed, so it is accepted even from a locked-out client.
        token = await self.authenticator.token(secret)
        if token is not None:
            expires = token.expires_at.timestamp() if token.expires_at is not None else None
            return dataclasses.replace(identity_for(token.subject), token_id=token.id, token_expires=expires)
        if not user:
            raise BadCredentials("invalid credentials")
        return await self._password(user, secret, client)

    async def _password(self, user: str, password: str, client: str) -> Identity:
        """A password attempt: counted against the client and the account before the check
        (refused while either is locked out), given back if the password is right."""
        try:
            attempt = await self.limiter.admit(client, user)
        except LockedOut as e:
            raise TooManyRequests(
                "too many failed logins from this client or for this account; try again later",
                headers={"Retry-After": str(max(math.ceil(e.retry_after), 1))},
            ) from None
        subject = await self.authenticator.subject_for_password(user, password)
        if subject is not None:
            await self.limiter.succeeded(attempt)
            return identity_for(subject)
        delay = self.limiter.delay(attempt)
        if delay:
            await asyncio.sleep(delay)
        raise BadCredentials("invalid credentials")

    async def identify(self, conn: HTTPConnection) -> Identity | None:
        """The caller, or None when the request carries no credentials at all."""
        client = self._client(conn)
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic":
            try:
                user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise BadCredentials("undecodable Basic credentials") from None
            if not sep:
                raise BadCredentials("Basic credentials without a password")
            return await self._credentials(user, secret, client)
        if scheme == "bearer":
            if value in ("", "anonymous"):
                return None
            if value.count(".") == 2:
                return await self._jwt_identity(value)
            return await self._credentials("", value, client)
        # Never echo the header: a client that forgot "Bearer " would see its secret logged.
        raise BadCredentials("unsupported authorization scheme (use Basic or Bearer)")

    async def _jwt_identity(self, token: str) -> Identity:
        identity = await self._verified_jwt(token)
        # On every request, cached or not: a JWT dies with the long-lived token it was minted from.
        token_id = (identity.claims or {}).get("tid")
        if token_id is not None and await self.revoked.contains(token_id):
            raise BadCredentials("the token this bearer token was issued for has been revoked")
        return identity

    async def _verified_jwt(self, token: str) -> Identity:
        # Hot path: a client reuses its JWT for many requests; keep the identity it maps to.
        cached = self._jwt_identities.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        try:
            claims = await self.issuer.verify(token)
        except InvalidToken as e:
            raise BadCredentials(f"invalid bearer token: {e}") from None
        base = ANONYMOUS if claims["sub"] == ANONYMOUS_USER else identity_for(claims["sub"])
        identity = dataclasses.replace(base, claims=claims)
        if len(self._jwt_identities) > 10_000:
            now = time.time()
            self._jwt_identities = {t: v for t, v in self._jwt_identities.items() if v[0] > now}
        self._jwt_identities[token] = (float(claims["exp"]), identity)
        return identity

    def _client(self, conn: HTTPConnection) -> str:
        return conn.client.host if conn.client else "-"

    async def authenticate(self, conn: HTTPConnection, allow_jwt: bool = True) -> Identity | None:
        """identify(), answering bad credentials with 401 (and password guessing with 429).
        `allow_jwt=False` refuses our own bearer JWTs (the token endpoint: a JWT must not be
        exchanged for a fresh or broader one)."""
        try:
            identity = await self.identify(conn)
            if identity is not None and identity.claims is not None and not allow_jwt:
                raise BadCredentials("a bearer JWT cannot be exchanged for another; present a token or password")
        except BadCredentials as e:
            raise Unauthorized(str(e), headers={"WWW-Authenticate": self.challenge(conn, [])}) from None
        return identity

    # -- authorization --------------------------------------------------------------------------

    def realm(self, conn: HTTPConnection) -> str:
        if self.config.realm:
            return self.config.realm
        base = self.base_url or f"{conn.url.scheme}://{conn.headers.get('host', conn.url.netloc)}"
        return base.rstrip("/") + "/openshift/token"

    def challenge(self, conn: HTTPConnection, needed: list[Needed], error: str | None = None) -> str:
        value = f'Bearer realm="{self.realm(conn)}",service="{self.config.service}"'
        scopes = _scopes(needed)
        if scopes:
            value += f',scope="{scopes}"'
        if error:
            value += f',error="{error}"'
        return value

    async def authorize(self, conn: HTTPConnection, needed: list[Needed]) -> Identity:
        identity = await self.authenticate(conn)
        # Known before any refusal, so that the access log names who was refused.
        conn.scope.setdefault("state", {})["identity"] = identity or ANONYMOUS
        if identity is None:
            # Let the route's own checks run first: a malformed name is a 400 for everyone.
            for access in needed:
                if isinstance(access, Access):
                    checks_for(access)
            raise Unauthorized(headers={"WWW-Authenticate": self.challenge(conn, needed)})
        for access in needed:
            if isinstance(access, ApiAccess):
                await self._authorize_api(conn, identity, access, needed)
                continue
            exists = True
            if access.type == "repository" and access.action in ("push", "*"):
                exists = await self.repository_exists(access.name)
            checks = checks_for(access, exists)
            if identity.claims is not None:
                await self._authorize_jwt(conn, identity, access, checks, needed)
                continue
            for check in checks:
                if not await self.authorizer.allowed(identity, check):
                    self._deny(conn, identity, check, needed)
        return identity

    async def _authorize_jwt(
        self, conn: HTTPConnection, identity: Identity, access: Access, checks: list[Check], needed: list[Needed]
    ) -> None:
        if not checks:
            return
        if _carries(identity, access):
            return
        # The token lacks the scope. Say "denied" if the caller could not get it anyway,
        # so podman and docker users read a permission problem, not a bad password.
        for check in checks:
            if not await self.authorizer.allowed(identity, check):
                self._deny(conn, identity, check, needed)
        raise Unauthorized(
            f"token does not grant {access.action} on {access.name}",
            headers={"WWW-Authenticate": self.challenge(conn, needed, "insufficient_scope")},
        )

    async def _authorize_api(
        self, conn: HTTPConnection, identity: Identity, access: ApiAccess, needed: list[Needed]
    ) -> None:
        """The exact check decides on every request, whatever the credential. A bearer JWT must
        also carry the route's scope: a scope is a capability the token endpoint hands out only
        to callers allowed everything it covers, so a JWT never widens what its subject may do."""
        if not await self.authorizer.allowed(identity, access.check):
            if not access.purpose:
                self._deny(conn, identity, access.check, needed)
            lacking = [
                a.check
                for a in needed
                if isinstance(a, ApiAccess)
                and a.purpose == access.purpose
                and not await self.authorizer.allowed(identity, a.check)
            ]
            reason = f"{identity.name} cannot {access.purpose}: it lacks {describe_lacking(lacking)} itself"
            self._deny(conn, identity, access.check, needed, reason)
        if identity.claims is None or _carries(identity, access.scope):
            return
        for check in checks_for(access.scope):
            if not await self.authorizer.allowed(identity, check):
                scope = f"{access.scope.type}:{access.scope.name}:{access.scope.action}"
                reason = (
                    f"{identity.name} cannot {check.describe()}, which a bearer token for {scope} needs; "
                    "present a long-lived token (Basic or Bearer) instead"
                )
                self._deny(conn, identity, check, needed, reason)
        raise Unauthorized(
            "token does not grant this operation",
            headers={"WWW-Authenticate": self.challenge(conn, needed, "insufficient_scope")},
        )

    def _deny(
        self, conn: HTTPConnection, identity: Identity, check: Check, needed: list[Needed], reason: str = ""
    ) -> None:
        if identity.anonymous:
            raise Unauthorized(
                f"authentication required: anonymous users cannot {check.describe()}",
                headers={"WWW-Authenticate": self.challenge(conn, needed)},
            )
        reason = reason or f"{identity.name} cannot {check.describe()}"
        # 403 for every method (README, the OCI spec, RFC 6750 section 3.1). A HEAD answer has no
        # body to carry the reason, so it also rides in an insufficient_scope challenge, which
        # RFC 6750 clients such as docker print; podman and skopeo print "403 (Forbidden)".
        challenge = self.challenge(conn, needed, "insufficient_scope")
        description = reason.replace('"', "'")
        raise Denied(
            reason,
            detail={
                "verb": check.verb,
                "resource": check.resource,
                "namespace": check.namespace,
                "subject": identity.name,
            },
            headers={"WWW-Authenticate": f'{challenge},error_description="denied: {description}"'},
        )

    async def may_read(self, identity: Any, repository: str) -> bool:
        namespace, sep, _ = repository.partition("/")
        if not sep:
            return False
        ident = identity if isinstance(identity, Identity) else ANONYMOUS
        return await self.authorizer.allowed(ident, Check("get", "imagestreams/layers", namespace))

    async def may_list_all(self, identity: Any) -> bool:
        ident = identity if isinstance(identity, Identity) else ANONYMOUS
        return await self.authorizer.allowed(ident, Check("list", "imagestreams", None))

    async def allowed(self, identity: Any, check: Check) -> bool:
        ident = identity if isinstance(identity, Identity) else ANONYMOUS
        return await self.authorizer.allowed(ident, check)

    # -- the token endpoint ---------------------------------------------------------------------

    async def grants_for(self, identity: Identity, scopes: list[str]) -> list[Any]:
        """Downscope requested scopes to what `identity` may do (never an error)."""
        from auth.jwt_tokens import Grant

        grants: dict[tuple[str, str], set[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            type_, name, actions = parsed
            for action in actions:
                try:
                    exists = await self.repository_exists(name) if type_ == "repository" else True
                    checks = checks_for(Access(type_, name, action), exists)
                except (NameInvalid, Denied):
                    continue
                if all([await self.authorizer.allowed(identity, c) for c in checks]):
                    grants.setdefault((type_, name), set()).add(action)
        return [Grant(t, n, tuple(sorted(a))) for (t, n), a in grants.items()]


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:ns/name:pull,push` -> ("repository", "ns/name", ["pull", "push"])."""
    type_, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if type_ not in ("repository", "registry") or not name or not actions:
        return None
    from registry.names import NAME_RE

    if type_ == "repository" and (len(name) > 255 or not NAME_RE.fullmatch(name)):
        return None
    allowed = {"pull", "push", "delete", "*"} if type_ == "repository" else {"*", "get"}
    return type_, name, [a for a in actions.split(",") if a in allowed]


def _carries(identity: Identity, scope: Access) -> bool:
    """Whether the caller's bearer JWT grants the docker scope."""
    granted = granted_actions(identity.claims or {}, scope.type, scope.name)
    return scope.action in granted or "*" in granted


def _scopes(needed: list[Needed]) -> str:
    by_name: dict[tuple[str, str], list[str]] = {}
    for item in needed:
        a = item.scope if isinstance(item, ApiAccess) else item
        by_name.setdefault((a.type, a.name), [])
        if a.action not in by_name[(a.type, a.name)]:
            by_name[(a.type, a.name)].append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in by_name.items())
