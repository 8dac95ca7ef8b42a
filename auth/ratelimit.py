"""Brute-force protection for passwords, the one credential that can be guessed (tokens carry
256 random bits, JWTs are signed, so those are verified first and never limited).

Each password attempt is counted against the client address and against the account it
names before the password is checked, in one transaction, and given back if it succeeds.
When either count has reached `max_failures` within `window`, attempts are refused for
`lockout`. The counts live in the metadata database, so every worker and replica sees the
same ones; admission holds the rows locked (SQLite: its single writer), so parallel
attempts cannot overshoot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update

from registry.metadata.db import Database, as_utc, utcnow
from registry.metadata.schema import login_failures

PURGE_EVERY = 200  # admissions between deletions of counters nobody needs any more


class LockedOut(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"locked out for {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    """An admitted password attempt: the counters it was counted against, and the highest of
    their counts (this attempt included)."""

    keys: tuple[str, ...]
    count: int


def attempt_keys(client: str, account: str) -> tuple[str, ...]:
    # Sorted: every transaction locks the rows in the same order, so two never deadlock.
    return tuple(sorted({f"client:{client[:300]}", f"account:{account[:300]}"}))


class FailureLimiter:
    def __init__(self, db: Database, slow_after: int, max_failures: int, window: float, lockout: float):
        self.db = db
        self.slow_after = slow_after
        self.max_failures = max_failures
        self.window = timedelta(seconds=window)
        self.lockout = timedelta(seconds=lockout)
        self._admissions = 0

    async def admit(self, client: str, account: str) -> Attempt:
        """Count a password attempt, or raise LockedOut while the client or the account is locked."""
        self._admissions += 1
        purge = self._admissions % PURGE_EVERY == 0
        admitted = await self.db.write(self._admit, attempt_keys(client, account), purge)
        if isinstance(admitted, float):
            raise LockedOut(admitted)
        return admitted

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: its attempt is given back."""
        await self.db.write(
            lambda conn: conn.execute(
                update(login_failures)
                .where(login_failures.c.key.in_(attempt.keys), login_failures.c.attempts > 0)
                .values(attempts=login_failures.c.attempts - 1)
            )
        )

    def delay(self, attempt: Attempt) -> float:
        """How long to hold the answer to a failed attempt: growing after `slow_after` failures."""
        excess = attempt.count - self.slow_after
        if excess < 0 or attempt.count >= self.max_failures:
            return 0.0  # the next attempt is refused anyway
        return min(0.25 * 2**excess, 4.0)

    def _admit(self, conn: Connection, keys: tuple[str, ...], purge: bool) -> Attempt | float:
        """The admission transaction: an Attempt, or the seconds left of a lock."""
        now = utcnow()
        if purge:
            conn.execute(
                delete(login_failures).where(
                    login_failures.c.window_start < now - self.window,
                    or_(login_failures.c.locked_until.is_(None), login_failures.c.locked_until < now),
                )
            )
        for key in keys:
            conn.execute(
                self.db.insert_ignore(login_failures, "key"),
                {"key": key, "attempts": 0, "window_start": now, "locked_until": None},
            )
        column = login_failures.c.key
        rows = conn.execute(select(login_failures).where(column.in_(keys)).order_by(column).with_for_update()).all()
        now = utcnow()  # after waiting for the rows: what others locked is measured from their own now
        locks = [as_utc(r.locked_until) for r in rows if r.locked_until is not None and as_utc(r.locked_until) > now]
        if locks:
            return (max(locks) - now).total_seconds()
        counts = {r.key: r.attempts if as_utc(r.window_start) > now - self.window else 0 for r in rows}
        full = [key for key, count in counts.items() if count >= self.max_failures]
        if full:
            # A fresh window starts with the lock: after it, the client or account may try again.
            conn.execute(
                update(login_failures)
                .where(login_failures.c.key.in_(full))
                .values(attempts=0, window_start=now, locked_until=now + self.lockout)
            )
            return self.lockout.total_seconds()
        for row in rows:
            values: dict[str, Any] = {"attempts": counts[row.key] + 1, "locked_until": None}
            if counts[row.key] == 0:
                values["window_start"] = now
            conn.execute(update(login_failures).where(login_failures.c.key == row.key).values(**values))
        return Attempt(keys, max(counts.values()) + 1)
