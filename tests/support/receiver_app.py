"""A webhook receiver for notification tests, run as a process of its own so that a test can
SIGKILL it, SIGTERM it and restart it on the same port while Okura keeps delivering.

    python -m tests.support.receiver_app --port P --log FILE [--control FILE]
    python tests/support/receiver_app.py --port P --log FILE [--control FILE]

Stdlib only (it starts in a fraction of a second and needs no venv). Binds 127.0.0.1:P and
prints one line, "listening on P", once bound; exits with 98 (EADDRINUSE) if the port is taken.

Every request except the control endpoints below (methods other than POST get 405) is appended
to FILE as one JSON line, written with a single write and fsynced just before its answer goes out
(or the connection is closed, or the request abandoned), so a client holding its answer finds it:
    {"received_at": unix time, "path": target with query, "method", "headers": {lowercase: value},
     "body": the raw body as text (utf-8; undecodable bytes as surrogate escapes), "mode",
     "status": the status answered, or null when none was (close; hang/slow interrupted)}

How it answers comes from the JSON control file, re-read on every request (the test replaces it
atomically while the receiver runs); no file means {"mode": "ok"}:
    {"mode": "ok" | "status" | "hang" | "close" | "redirect" | "slow",
     "status": 500, "delay": seconds, "location": "http://...", "headers": {name: value}}
    ok        200, empty body
    status    `status` (default 500), empty body
    hang      read the request, wait `delay` (default 3600) s, then 200
    slow      wait `delay` (default 1) s, then 200
    close     read the request, close the connection without answering
    redirect  `status` (default 307) with Location: `location` (default this receiver's /redirected)
`headers` are added to every answer. A hang or slow wait ends early, unanswered (status null),
when the client goes away or the receiver gets SIGTERM/SIGINT, so that the line is still written.

Control endpoints, never logged: GET /healthz answers {"pid", "port"} (readiness; the pid tells
this receiver from another process on the port); GET /inflight answers the requests being
handled now (hanging ones included) as a JSON list, so a test can tell a delivery arrived before
it SIGKILLs the receiver (which then never logs it).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # run by its path: this directory's http.py would shadow the standard library's

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "status", "hang", "close", "redirect", "slow")
EXIT_ADDRESS_IN_USE = 98
POLL = 0.05  # how often a waiting request looks at its client and at shutdown


class ReceiverServer(ThreadingHTTPServer):
    """The HTTP server and the state its handler threads share: the log, the control file,
    the requests in flight and the shutdown flag."""

    daemon_threads = True  # idle keep-alive connections must not hold up the exit

    def __init__(self, port: int, log_path: Path, control_path: Path | None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.log_path = log_path
        self.control_path = control_path
        self.stopping = threading.Event()
        self._log_lock = threading.Lock()
        self._log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._inflight_lock = threading.Lock()
        self._inflight: dict[int, dict[str, Any]] = {}

    @property
    def port(self) -> int:
        return self.server_address[1]

    def control(self) -> dict[str, Any]:
        """The control file now; {"mode": "ok"} when there is none or it does not parse."""
        if self.control_path is None:
            return {"mode": "ok"}
        try:
            value = json.loads(self.control_path.read_text())
        except FileNotFoundError:
            return {"mode": "ok"}
        except (OSError, ValueError) as e:
            print(f"receiver: unreadable control file {self.control_path}: {e}", file=sys.stderr, flush=True)
            return {"mode": "ok"}
        return value if isinstance(value, dict) else {"mode": "ok"}

    def log(self, entry: dict[str, Any]) -> None:
        """Append one line: a single write, then fsync, so another process never reads half a line."""
        line = (json.dumps(entry, ensure_ascii=True) + "\n").encode()
        with self._log_lock:
            os.write(self._log_fd, line)
            os.fsync(self._log_fd)

    def begin(self, entry: dict[str, Any]) -> None:
        with self._inflight_lock:
            self._inflight[id(entry)] = entry

    def end(self, entry: dict[str, Any]) -> None:
        with self._inflight_lock:
            self._inflight.pop(id(entry), None)

    def inflight(self) -> list[dict[str, Any]]:
        with self._inflight_lock:
            return sorted(self._inflight.values(), key=lambda e: e["received_at"])


class Handler(BaseHTTPRequestHandler):
    """One connection; every request on it is read in full, then answered as the control file says."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a pooling client expects
    timeout = 60  # a client that stops sending mid-request does not hold a thread forever
    server: ReceiverServer
    _entry: dict[str, Any] | None = None  # the request being answered, until it is logged

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the JSON log is the record, stderr is for problems."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send_json({"pid": os.getpid(), "port": self.server.port})
        elif path == "/inflight":
            self._send_json(self.server.inflight())
        else:
            self._handle()

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    # -- a logged request ------------------------------------------------------------------

    def _handle(self) -> None:
        received_at = time.time()
        body = self._read_body()
        control = self.server.control()
        mode = control.get("mode", "ok")
        self._entry = {
            "received_at": received_at,
            "path": self.path,
            "method": self.command,
            "headers": self._headers(),
            "body": body.decode("utf-8", "surrogateescape"),
            "mode": mode,
            "status": None,
        }
        self.server.begin(self._entry)
        try:
            self._answer(mode, control)
        except OSError:  # the client went away while we answered
            self.close_connection = True
        finally:
            self._record(None)  # when nothing was answered

    def _record(self, status: int | None) -> None:
        """Log the request once, before its answer goes out: a client that has its answer finds
        the line in the log already."""
        entry, self._entry = self._entry, None
        if entry is not None:
            entry["status"] = status
            self.server.end(entry)
            self.server.log(entry)

    def _answer(self, mode: str, control: dict[str, Any]) -> None:
        """Answer as `mode` says (logging the request just before)."""
        extra = {str(k): str(v) for k, v in (control.get("headers") or {}).items()}
        if self.command != "POST":
            return self._send(405, {"Allow": "POST", **extra})
        if mode == "ok":
            return self._send(200, extra)
        if mode == "status":
            return self._send(int(control.get("status", 500)), extra)
        if mode == "redirect":
            location = control.get("location") or f"http://127.0.0.1:{self.server.port}/redirected"
            return self._send(int(control.get("status", 307)), {"Location": str(location), **extra})
        if mode == "close":
            return self._drop()
        if mode in ("hang", "slow"):
            delay = float(control.get("delay", 3600 if mode == "hang" else 1))
            return self._send(200, extra) if self._wait(delay) else self._drop()
        print(f"receiver: unknown mode {mode!r} in the control file; answering 500", file=sys.stderr, flush=True)
        return self._send(500, extra)

    def _wait(self, delay: float) -> bool:
        """Sleep `delay` seconds; False as soon as the client hangs up or the receiver stops."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.is_set() or self._client_gone(min(POLL, left)):
                return False
        return not self.server.stopping.is_set()

    def _client_gone(self, timeout: float) -> bool:
        """Whether the peer closed its end, looking for up to `timeout` seconds."""
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                return False
            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                return True
        except (OSError, ValueError):
            return True
        time.sleep(timeout)  # bytes of a pipelined request: not a hang-up; do not spin on them
        return False

    def _drop(self) -> None:
        """Close the connection without a byte of answer."""
        self._record(None)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- HTTP details ----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self._record(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, value: Any) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(value).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A webhook receiver for notification tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per request")
    parser.add_argument("--control", type=Path, help="JSON control file, re-read on every request")
    args = parser.parse_args(argv)
    try:
        server = ReceiverServer(args.port, args.log, args.control)
    except OSError as e:
        print(f"receiver: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr, flush=True)
        return EXIT_ADDRESS_IN_USE if e.errno == errno.EADDRINUSE else 1

    # Serve from a thread: the main thread takes the signals and may then call shutdown().
    signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: server.stopping.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True)
    thread.start()
    print(f"listening on {server.port}", flush=True)
    while not server.stopping.wait(0.5):
        pass
    server.shutdown()
    deadline = time.monotonic() + 3  # waiting requests notice `stopping` within POLL and log
    while server.inflight() and time.monotonic() < deadline:
        time.sleep(POLL)
    server.server_close()
    return 0  # the log's descriptor closes with the process: a straggler may still write to it


if __name__ == "__main__":
    sys.exit(main())
