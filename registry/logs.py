"""Structured logs: logfmt (`time="…" level=info msg="…" key=value`) or JSON lines."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


_second_cache: tuple[int, str] = (-1, "")


def _time(record: logging.LogRecord) -> str:
    # One line per request: format the seconds once per second, append milliseconds.
    global _second_cache
    second = int(record.created)
    if _second_cache[0] != second:
        _second_cache = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_cache[1]}.{int((record.created - second) * 1000):03d}Z"


_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def _logfmt_value(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=str)
        if isinstance(value, dict | list)
        else str(value)
    )
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warning", "CRITICAL": "fatal"}.get(record.levelname, record.levelname.lower())


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f'time="{_time(record)}"', f"level={_level(record)}", f"msg={_logfmt_value(record.getMessage())}"]
        parts.extend(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        if record.name != "okura.access":
            parts.append(f"logger={record.name}")
        if record.exc_info:
            parts.append(f"error={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _time(record),
            "level": _level(record),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        data.update(_fields(record))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _QuietInvalidRequests(logging.Filter):
    """Clients probe the plain-HTTP port with a TLS ClientHello before every request;
    uvicorn warns about each one. They are expected: log them at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Invalid HTTP request"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("okura").isEnabledFor(logging.DEBUG)
        return True


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    lvl = {"warn": "WARNING"}.get(level.lower(), level.upper())
    root.setLevel(lvl)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_QuietInvalidRequests())
    logging.getLogger("uvicorn.access").disabled = True  # we write our own access line
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
