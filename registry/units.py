"""Durations, sizes and booleans as people write them, in one grammar wherever the
registry takes one (config file, environment, flags, API specs). A leaf module: it
imports nothing of the registry."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

NS_PER_UNIT = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign
    "\u03bcs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}
_NUMBER = r"(?:\d+\.?\d*|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ns|us|\u00b5s|\u03bcs|ms|s|m|h|d)")
_PLAIN = re.compile(_NUMBER)
DURATION_HINT = "a duration such as 90s, 15m, 1h30m or 7d (a plain number is seconds)"


class Duration(float):
    """Seconds, written as 90, "90s", "1h30m", "60m" or "7d"."""


class ByteSize(int):
    """Bytes, written as 4194304, "4MiB" or "64MB"."""


def parse_duration_ns(value: Any) -> int:
    """Go's time.ParseDuration grammar ("1h30m", "60m", "1.5h", "300ms") plus days ("2d",
    "1d12h") and plain numbers of seconds ("90"); spaces are ignored. Nanoseconds.
    Negative durations are refused: nothing here means anything negative."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {DURATION_HINT}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return int(Fraction(value) * 10**9)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not {DURATION_HINT}")
    text = "".join(value.split())
    if text.startswith("-"):
        raise ValueError(f"{value!r} is negative")
    text = text.removeprefix("+")
    if len(text) > 64:
        raise ValueError(f"{value[:64]!r}... is not {DURATION_HINT}")
    if _PLAIN.fullmatch(text):
        return int(Fraction(text) * 10**9)
    total, pos = Fraction(0), 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            raise ValueError(f"{value!r} is not {DURATION_HINT}")
        total += Fraction(m.group(1)) * NS_PER_UNIT[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError(f"an empty string is not {DURATION_HINT}")
    return int(total)


def parse_duration(value: Any) -> Duration:
    """Seconds (see parse_duration_ns for the grammar)."""
    return Duration(parse_duration_ns(value) / 10**9)


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's Duration.String(): 3600s -> "1h0m0s", 90s -> "1m30s", 0 -> "0s"."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u < 10**9:
        if u < 10**3:
            return f"{sign}{u}ns"
        if u < 10**6:
            return f"{sign}{_fraction(u, 10**3)}\u00b5s"
        return f"{sign}{_fraction(u, 10**6)}ms"
    seconds = _fraction(u % (60 * 10**9), 10**9) + "s"
    minutes = u // (60 * 10**9)
    if not minutes:
        return sign + seconds
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{hours}h{minutes}m{seconds}"


_SIZE_RE = re.compile(r"^\s*(\d{1,20})\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "KI": 1024,
    "MI": 1024**2,
    "GI": 1024**3,
    "TI": 1024**4,
}


def parse_size(value: Any) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 4194304, 4MiB or 64MB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return ByteSize(value)
    m = _SIZE_RE.fullmatch(str(value))
    if not m:
        raise ValueError(f"{str(value)[:64]!r} is not a size such as 4194304, 4MiB or 64MB")
    unit = (m.group(2) or "").upper().rstrip("B")
    return ByteSize(int(m.group(1)) * _SIZE_UNITS[unit])


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{str(value)[:64]!r} is not a boolean (true or false)")


def parse_int(value: Any, minimum: int | None = None) -> int:
    """An integer from YAML or an environment string, with a message a user can act on."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, int | float):
        number = int(value)
    else:
        text = str(value).strip()
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            raise ValueError(f"{text[:64]!r} is not an integer")
        number = int(text)
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum}, not {number}")
    return number
