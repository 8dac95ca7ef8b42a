"""The `okura` command and its environment; background processes and their process groups."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

OKURA = str(Path(sys.executable).with_name("okura"))


def okura_command() -> list[str]:
    """The installed `okura` script, else `python -m registry`."""
    return [OKURA] if Path(OKURA).exists() else [sys.executable, "-m", "registry"]


def okura_env(**extra: str) -> dict[str, str]:
    """This environment without its OKURA_* and PROMETHEUS_* variables (a child's configuration
    comes from the test alone), plus `extra`. Servers stop without the load-balancer delay
    (http.shutdown_delay) unless a test asks for it: the suite stops hundreds of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OKURA_", "PROMETHEUS_"))}
    env["OKURA_HTTP_SHUTDOWN_DELAY"] = "0s"
    env.update(extra)
    return env


async def okura_on(app: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `okura ARGS` with the effective config of an in-process app (its database and storage)."""
    import asyncio
    import json

    child_env = okura_env(OKURA_CONFIG_JSON=json.dumps(app.app.state.runtime.config.to_dict()), **(env or {}))
    argv = [*okura_command(), *args]
    return await asyncio.to_thread(subprocess.run, argv, env=child_env, capture_output=True, text=True, timeout=120)


def serve_argv(data_dir: Path | str, port: int, *extra: str, host: str = "127.0.0.1") -> list[str]:
    """`okura serve` over `data_dir` on `host`:`port`."""
    return [*okura_command(), "serve", "--data-dir", str(data_dir), "--addr", f"{host}:{port}", *extra]


def spawn(argv: list[str], log: IO[bytes], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server in a session (and process group) of its own, stdout and stderr to `log`."""
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process group `proc` leads (it was started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


_started: list[subprocess.Popen] = []


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Remember a background process so that it is killed even if pytest dies before teardown."""
    _started.append(proc)
    return proc


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_started):
        kill_process_group(proc, grace=5)


def _group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, start time) of the processes in process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... starttime is the 20th
            members.append((int(entry), fields[19]))
    return members


def kill_process_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM a process we started (in its own session), give it `grace` seconds to stop, then
    SIGKILL it and whatever is left of its process group (e.g. the containerd dockerd started).
    Only processes seen in the group before the SIGTERM are killed, matched by start time."""
    if proc in _started:
        _started.remove(proc)
    if proc.poll() is not None:
        return
    members = [m for m in _group_members(proc.pid) if m[0] != proc.pid]
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    still_there = dict(_group_members(proc.pid))
    for pid, started in members:
        if still_there.get(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
