"""Debian's nginx running deploy/compose/nginx.conf in front of test servers: the file as
shipped, with only what names the compose network rewritten (the upstream servers, the
listen address) and the paths it writes to moved into the test's directory."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.clients import require_binaries
from tests.support.ports import allocate_port
from tests.support.processes import signal_group, spawn, track

COMPOSE_CONF = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "nginx.conf"


def render(conf: str, upstreams: list[str], port: int, root: Path) -> str:
    """`conf` with the compose service addresses replaced by `upstreams` (HOST:PORT, in order),
    listening on 127.0.0.1:`port`, its pid, temporary files and access log (naming the upstream
    of each request) under `root`, and workers run as root (the test's directories are private
    to root)."""
    servers = iter(upstreams)
    conf, count = re.subn(r"server okura-\w+:5000", lambda _: f"server {next(servers)}", conf)
    assert count == len(upstreams), f"the conf names {count} upstream servers, the test has {len(upstreams)}"
    conf, count = re.subn(r"listen 5000;", f"listen 127.0.0.1:{port};", conf)
    assert count == 1, "the conf no longer listens on port 5000"
    conf = conf.replace("/tmp/", f"{root}/")
    # Which replica answered each request, for the tests to see both serve.
    upstream_log = f"log_format upstream '$status|$upstream_addr|$request';\n    access_log {root}/access.log upstream;"
    conf = conf.replace("access_log /dev/stdout;", upstream_log)
    return "user root;\n" + conf


class Nginx:
    def __init__(self, root: Path, upstreams: list[str]):
        require_binaries("nginx")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = allocate_port()
        self.conf = root / "nginx.conf"
        self.conf.write_text(render(COMPOSE_CONF.read_text(), upstreams, self.port, root))
        self.log_path = root / "nginx.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def check(self) -> subprocess.CompletedProcess:
        """`nginx -t`: the configuration is valid."""
        return subprocess.run(
            ["nginx", "-t", "-p", str(self.root), "-c", str(self.conf)], capture_output=True, text=True, timeout=30
        )

    def start(self, timeout: float = 15.0) -> Nginx:
        with open(self.log_path, "ab") as log:
            self.proc = track(spawn(["nginx", "-p", str(self.root), "-c", str(self.conf), "-g", "daemon off;"], log))
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"nginx exited: {self.log_tail()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, f"nginx did not listen within {timeout}s: {self.log_tail()}"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            signal_group(self.proc, signal.SIGQUIT)  # graceful: the master waits for its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                signal_group(self.proc, signal.SIGKILL)
                self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def upstreams_of(self, pattern: str) -> set[str]:
        """The upstream addresses that answered requests whose line matches `pattern` (regex);
        a request retried on another replica names both, comma-separated."""
        path = self.root / "access.log"
        found: set[str] = set()
        for line in path.read_text().splitlines() if path.exists() else []:
            _status, addresses, request = line.split("|", 2)
            if re.search(pattern, request):
                found.update(a.strip() for a in addresses.split(","))
        return found
