"""The failed-login limiter: failures count in the metadata database, per client and per target
account, so every worker and replica sees the same count; admission is atomic, so parallel
guesses cannot overshoot; the window is long enough to catch paced guessing; and tokens, which
cannot be guessed, are never locked out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from registry import clock
from registry.config import AuthConfig
from tests.support.auth import Accounts, Connect, basic
from tests.support.http import assert_error

SERVICE = "okura-registry"
LIMITS = {"enabled": True, "slow_after": 1000, "max_failures": 5, "lockout": 60}


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


async def attempt(connect: Connect, app: Any, user: str, secret: str, remote: str = "10.0.0.1") -> httpx.Response:
    c = connect(app, headers={"Authorization": basic(user, secret)}, remote=remote)
    return await c.get("/openshift/token", params={"service": SERVICE})


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for r in responses:
        counted[r.status_code] = counted.get(r.status_code, 0) + 1
    return counted


async def test_parallel_guesses_never_exceed_the_limit(make_app, connect):
    app = await make_app(auth=LIMITS)
    await Accounts(app).user("alice", password="correct horse")
    # From one client...
    answers = await asyncio.gather(*(attempt(connect, app, "alice", f"guess-{i}") for i in range(30)))
    assert statuses(answers) == {401: 5, 429: 25}
    for r in answers:
        if r.status_code == 429:
            assert_error(r, 429, "TOOMANYREQUESTS")
            assert 0 < int(r.headers["Retry-After"]) <= 60
    # ...and against one account from many clients.
    await Accounts(app).user("carol", password="carol's")
    answers = await asyncio.gather(
        *(attempt(connect, app, "carol", f"guess-{i}", remote=f"10.1.0.{i}") for i in range(30))
    )
    assert statuses(answers) == {401: 5, 429: 25}


async def test_workers_and_replicas_share_the_count(make_app, connect):
    """Two apps on one database (two workers of a host, or two replicas on PostgreSQL)."""
    one = await make_app(auth=LIMITS)
    two = await make_app(auth=LIMITS)
    await Accounts(one).user("alice", password="correct horse")
    answers = [await attempt(connect, (one, two)[i % 2], "alice", f"guess-{i}") for i in range(12)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 7
    for app in (one, two):
        assert (await attempt(connect, app, "alice", "correct horse")).status_code == 429


async def test_paced_guessing_is_caught(make_app, connect, monkeypatch):
    """One guess a minute (what answers delayed 4 s and a patient attacker make of it) never met a
    60-second window; the default window is long enough."""
    assert AuthConfig().failure_window >= 15 * 60
    fake = FakeClock()
    monkeypatch.setattr(clock, "now", fake)
    app = await make_app(auth={"enabled": True, "slow_after": 1000, "max_failures": 5})
    await Accounts(app).user("alice", password="correct horse")
    for i in range(5):
        assert (await attempt(connect, app, "alice", f"guess-{i}")).status_code == 401
        fake.advance(60)
    r = await attempt(connect, app, "alice", "correct horse")
    assert_error(r, 429, "TOOMANYREQUESTS")
    assert int(r.headers["Retry-After"]) == int(AuthConfig().lockout)
    # The answer says how long is left of the lock, and the lock ends.
    fake.advance(100)
    r = await attempt(connect, app, "alice", "correct horse")
    assert int(r.headers["Retry-After"]) == int(AuthConfig().lockout) - 100
    fake.advance(AuthConfig().lockout)
    assert (await attempt(connect, app, "alice", "correct horse")).status_code == 200


async def test_a_valid_token_is_accepted_from_a_locked_client(make_app, connect):
    app = await make_app(auth=LIMITS)
    accounts = Accounts(app)
    alice = await accounts.user("alice", ("registry-viewer", "team"), password="correct horse")
    c = connect(app, headers={"Authorization": basic("alice", alice.token)}, remote="10.0.0.1")
    jwt = (await c.get("/openshift/token", params={"service": SERVICE, "scope": "repository:team/app:pull"})).json()
    for i in range(6):
        await attempt(connect, app, "mallory", f"guess-{i}")
    assert (await attempt(connect, app, "alice", "correct horse")).status_code == 429
    for header in (f"Bearer {alice.token}", basic("alice", alice.token), f"Bearer {jwt['token']}"):
        c = connect(app, headers={"Authorization": header}, remote="10.0.0.1")
        r = await c.get("/v2/team/app/tags/list")
        assert r.status_code == 404, (header[:12], r.text)  # past authentication: the repository does not exist
    r = await connect(app, headers={"Authorization": f"Bearer {alice.token}"}, remote="10.0.0.1").get(
        "/openshift/token"
    )
    assert r.status_code == 200


async def test_a_locked_account_is_locked_from_every_client(make_app, connect):
    app = await make_app(auth=LIMITS)
    accounts = Accounts(app)
    alice = await accounts.user("alice", password="correct horse")
    await accounts.user("bob", password="battery staple")
    for i in range(5):  # one guess from each of five clients, none of them over its own limit
        assert (await attempt(connect, app, "alice", f"guess-{i}", remote=f"10.2.0.{i}")).status_code == 401
    r = await attempt(connect, app, "alice", "correct horse", remote="192.0.2.1")
    assert_error(r, 429, "TOOMANYREQUESTS")
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert (await attempt(connect, app, "bob", "battery staple", remote="192.0.2.1")).status_code == 200
    c = connect(app, headers={"Authorization": basic("alice", alice.token)}, remote="192.0.2.1")
    assert (await c.get("/openshift/token")).status_code == 200


async def test_a_successful_login_gives_its_attempt_back(make_app, connect):
    app = await make_app(auth=LIMITS)
    await Accounts(app).user("alice", password="correct horse")
    for _ in range(3):
        for _ in range(2):
            assert (await attempt(connect, app, "alice", "correct horse")).status_code == 200
        assert (await attempt(connect, app, "alice", "typo")).status_code == 401
    # Three failures and six successes: well within five.
    assert (await attempt(connect, app, "alice", "correct horse")).status_code == 200


@pytest.mark.parametrize("password", ["correct horse", "wrong"])
async def test_password_checks_run_off_the_event_loop(make_app, connect, monkeypatch, password):
    import threading

    import auth.passwords

    threads = []
    real = auth.passwords.verify_password

    def spy(*args: Any) -> bool:
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(auth.passwords, "verify_password", spy)
    monkeypatch.setattr("auth.store.verify_password", spy, raising=False)
    app = await make_app(auth=LIMITS)
    await Accounts(app).user("alice", password="correct horse")
    await attempt(connect, app, "alice", password)
    assert threads and threading.main_thread() not in threads


async def test_counters_nobody_needs_are_purged(make_app, connect, monkeypatch):
    from sqlalchemy import select

    from registry.metadata.schema import login_failures

    monkeypatch.setattr("auth.ratelimit.PURGE_EVERY", 1)
    fake = FakeClock()
    monkeypatch.setattr(clock, "now", fake)
    app = await make_app(auth={**LIMITS, "lockout": 3600})
    db = app.app.state.runtime.registry.db
    assert (await attempt(connect, app, "ghost", "guess", remote="10.0.0.1")).status_code == 401
    for i in range(6):  # this client and this account end up locked
        await attempt(connect, app, "ghost2", f"guess-{i}", remote="10.0.0.9")
    fake.advance(AuthConfig().failure_window + 1)
    assert (await attempt(connect, app, "other", "guess", remote="10.0.0.2")).status_code == 401

    def keys(conn: Any) -> set[str]:
        return set(conn.execute(select(login_failures.c.key)).scalars())

    # The lapsed counters went; locked ones stay until their lock is over.
    assert await db.read(keys) == {"account:other", "client:10.0.0.2", "account:ghost2", "client:10.0.0.9"}
