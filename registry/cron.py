"""Cron schedules as a Kubernetes CronJob takes them (five fields, or @daily and the
like), evaluated in UTC. A leaf module over croniter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import CroniterBadDateError, croniter

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def validate_schedule(schedule: Any, default: str) -> str:
    """The schedule to store; "" means `default`. Raises ValueError saying what is wrong."""
    if not isinstance(schedule, str):
        raise ValueError(f"must be a string, not {type(schedule).__name__}")
    text = " ".join(schedule.split())
    if not text:
        return default
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            raise ValueError(f"{schedule!r}: unknown descriptor (known: {', '.join(DESCRIPTORS)})")
    elif len(text.split(" ")) != 5:
        raise ValueError(f"{schedule!r} is not a cron schedule: expected 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(text):
        raise ValueError(f"{schedule!r} is not a valid cron schedule")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{schedule!r} never fires") from None
    return text


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def previous_fire(schedule: str, now: datetime) -> datetime | None:
    """The latest time <= now the schedule fires at (UTC)."""
    try:
        return _utc(croniter(schedule, now + timedelta(microseconds=1)).get_prev(datetime))
    except CroniterBadDateError:
        return None


def next_fire(schedule: str, after: datetime) -> datetime | None:
    try:
        return _utc(croniter(schedule, after).get_next(datetime))
    except CroniterBadDateError:
        return None
