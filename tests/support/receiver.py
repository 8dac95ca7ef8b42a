"""A real webhook receiver for notification tests: tests/support/receiver_app.py run as a process
of its own (Receiver), so that a test can SIGKILL or SIGTERM it mid-delivery, restart it on the
same port and change how it answers while Okura delivers to it, and read back what it got:
the requests (its JSON-lines log) and the events in their bodies.

    with receivers(tmp_path) as start:
        hook = start()
        hook.set_mode("status", status=503)
        ...  # configure okura with an endpoint at hook.url
        hook.wait_for(lambda rs: len(rs) >= 2)
        hook.set_mode("ok")
        events = hook.wait_for(lambda evs: len(evs) == 1, of="events")
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.support.logs import tail
from tests.support.ports import allocate_port
from tests.support.processes import kill_process_group, signal_group, track

ROOT = Path(__file__).resolve().parents[2]  # the repository: the child runs `-m tests.support.receiver_app`
MODES = ("ok", "status", "hang", "close", "redirect", "slow")  # receiver_app.MODES
EXIT_ADDRESS_IN_USE = 98  # receiver_app.EXIT_ADDRESS_IN_USE
SIGNATURE_HEADER = "x-okura-signature"  # as the receiver logs it (lowercase)

DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json"
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"

Source = Literal["requests", "events", "in_flight"]


class Receiver:
    """One receiver process on a loopback port that stays the same across restarts. Its files
    live in `directory`: NAME.jsonl (the request log, kept across restarts), NAME.control.json
    (how it answers) and NAME.out (its stdout and stderr)."""

    def __init__(self, directory: Path, name: str = "receiver") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = self.directory / f"{name}.jsonl"
        self.control_path = self.directory / f"{name}.control.json"
        self.output_path = self.directory / f"{name}.out"
        self.proc: subprocess.Popen | None = None
        self._port = 0
        if not self.control_path.exists():
            self.set_mode("ok")

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<Receiver {self.name} {self.url} {state}>"

    # -- where it listens ------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port, "the receiver was never started"
        return self._port

    @property
    def url(self) -> str:
        """The webhook URL to configure an endpoint with."""
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Receiver:
        """Spawn the receiver and wait until it answers GET /healthz. The first start picks a
        port (another one if that is taken meanwhile); later starts reuse it, so that a webhook
        URL configured before a restart still reaches the receiver."""
        assert not self.alive(), "already running"
        first = not self._port
        for _attempt in range(3 if first else 1):
            if first:
                self._port = allocate_port()
            if self._spawn(timeout):
                return self
            if not (first and self.proc is not None and self.proc.returncode == EXIT_ADDRESS_IN_USE):
                break
        raise RuntimeError(f"the webhook receiver did not start on port {self._port}:\n{self.output_tail()}")

    def _spawn(self, timeout: float) -> bool:
        """Start the process on self._port; whether it became ready (if not, it is gone)."""
        argv = [sys.executable, "-m", "tests.support.receiver_app", "--port", str(self._port)]
        argv += ["--log", str(self.log_path), "--control", str(self.control_path)]
        with open(self.output_path, "ab") as out:
            out.write(f"\n=== start {' '.join(argv)}\n".encode())
            out.flush()
            # processes.spawn, plus cwd: `-m` finds the tests package from the repository root
            self.proc = track(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(f"{self.base_url}/healthz", timeout=0.5)  # short: a squatter may never answer
                if r.status_code == 200 and r.json().get("pid") == self.proc.pid:  # not another server
                    return True
            time.sleep(0.02)
        self.kill()
        return False

    def kill(self) -> None:
        """SIGKILL the receiver (its process group) and wait: requests in flight are never logged."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(10)
        kill_process_group(self.proc)  # only forgets it (processes.track): it is gone

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the receiver, wait up to `grace` seconds, then SIGKILL. Requests it is still
        holding (hang, slow) are logged unanswered, status null."""
        if self.proc is not None:
            kill_process_group(self.proc, grace=grace)

    def restart(self, graceful: bool = False) -> Receiver:
        """SIGKILL (or with `graceful`, SIGTERM) and start again on the same port; the log stays."""
        if graceful:
            self.stop()
        else:
            self.kill()
        return self.start()

    def output_tail(self, lines: int = 40) -> str:
        """The end of the receiver's stdout and stderr (tracebacks, bind errors)."""
        return tail(self.output_path, lines)

    # -- how it answers --------------------------------------------------------------------

    def set_mode(self, mode: str, **options: Any) -> None:
        """Change how the receiver answers from the next request on (running or not): `mode`
        is one of MODES, `options` any of status, delay, location, headers (receiver_app's
        docstring). The control file is replaced atomically, so no request reads half of it."""
        if mode not in MODES:
            raise ValueError(f"unknown receiver mode {mode!r}; one of {', '.join(MODES)}")
        unknown = set(options) - {"status", "delay", "location", "headers"}
        if unknown:
            raise ValueError(f"unknown receiver options {sorted(unknown)}")
        temp = self.control_path.with_name(f".{self.control_path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"mode": mode, **options}))
        os.replace(temp, self.control_path)

    # -- what it got -----------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """Every logged request, oldest first (receiver_app's docstring has the keys), each with
        `json`: its body parsed, or None if it is not JSON."""
        try:
            text = self.log_path.read_text(errors="surrogateescape")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # a line being written (the receiver writes each with one write call)
            entry = json.loads(line)
            try:
                entry["json"] = json.loads(entry["body"]) if entry["body"] else None
            except ValueError:
                entry["json"] = None
            found.append(entry)
        return found

    def events(self) -> list[dict[str, Any]]:
        """The events delivered: for every request answered 2xx, in order, the `events` of a
        distribution envelope or the CloudEvent(s) of a CloudEvents body."""
        found: list[dict[str, Any]] = []
        for request in self.requests():
            if isinstance(request["status"], int) and 200 <= request["status"] < 300:
                found += events_of(request)
        return found

    def in_flight(self) -> list[dict[str, Any]]:
        """The requests the receiver is handling right now (e.g. hanging), each with `json`:
        these are logged only when they end, and never if the receiver is SIGKILLed first."""
        r = httpx.get(f"{self.base_url}/inflight", timeout=5.0)
        r.raise_for_status()
        found = r.json()
        for entry in found:
            with contextlib.suppress(ValueError):
                entry["json"] = json.loads(entry["body"]) if entry["body"] else None
            entry.setdefault("json", None)
        return found

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 10.0,
        of: Source | Callable[[], list[dict[str, Any]]] = "requests",
    ) -> list[dict[str, Any]]:
        """Poll requests() (or events(), in_flight(), or any callable, with `of`) every 50 ms
        until `predicate` holds for the list; that list. AssertionError with what arrived if
        it never does within `timeout` seconds: deliveries are asynchronous."""
        read = of if callable(of) else getattr(self, of)
        deadline = time.monotonic() + timeout
        while True:
            value = read()
            if predicate(value):
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"webhook receiver {self.url}: no {getattr(of, '__name__', of)} matching after {timeout}s "
                    f"(got {len(value)})\n{self.summary()}"
                )
            time.sleep(0.05)

    def summary(self, last: int = 20) -> str:
        """The last requests, one line each, and the receiver's output if it is not running."""
        requests = self.requests()
        lines = [f"{len(requests)} request(s) logged; process {'running' if self.alive() else 'not running'}"]
        for r in requests[-last:]:
            body = r["body"] if len(r["body"]) <= 200 else r["body"][:200] + "..."
            content_type = r["headers"].get("content-type", "-")
            lines.append(f"  {r['method']} {r['path']} -> {r['status']} [{r['mode']}] {content_type} {body}")
        if not self.alive():
            lines.append(f"output:\n{self.output_tail()}")
        return "\n".join(lines)


def events_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The events in one logged request's body, by its Content-Type, else by its shape: the
    `events` of a distribution envelope, a CloudEvents batch, or one structured CloudEvent."""
    body = request.get("json")
    if body is None:
        return []
    content_type = request["headers"].get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == CLOUDEVENTS_BATCH or isinstance(body, list):
        return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
    if not isinstance(body, dict):
        return []
    if content_type == CLOUDEVENT or (content_type != DISTRIBUTION_EVENTS and "specversion" in body):
        return [body]
    events = body.get("events")
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def body_bytes(request: dict[str, Any]) -> bytes:
    """A logged request's body as the bytes that were sent (to check a signature over them)."""
    return request["body"].encode("utf-8", "surrogateescape")


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for `body`: sha256=<hex of HMAC-SHA256(secret, body)>."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header_value: str) -> bool:
    """Whether `header_value` is sha256=<hex HMAC-SHA256 of `body` under `secret`> (compared in
    constant time; the hex in either case)."""
    scheme, _, digest = (header_value or "").strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        return False
    return hmac.compare_digest(sign(secret, body), "sha256=" + digest.lower())


@contextlib.contextmanager
def receivers(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """A factory of started receivers under `tmp_path` (each in a directory of its own), all
    SIGKILLed at exit: `with receivers(tmp_path) as start: hook = start()`. Named receivers
    (`start("b")`) keep their files apart; the names must differ."""
    started: list[Receiver] = []

    def start(name: str | None = None) -> Receiver:
        name = name or f"receiver{len(started) + 1}"
        receiver = Receiver(Path(tmp_path) / "receivers" / name, name)
        started.append(receiver)
        return receiver.start()

    try:
        yield start
    finally:
        for receiver in started:
            receiver.kill()


receiver_factory = receivers  # the name the notification test plan uses
