"""The container image's run-time story, run for real without building the image (that needs
base images from the internet): `okura` as an arbitrary UID in group 0, as OpenShift's
restricted SCC runs it, on a data directory prepared by the Dockerfile's own RUN line, with
the image's ENV and ENTRYPOINT/CMD, HOME at the data directory, no capabilities, no new
privileges, and a read-only root filesystem apart from the data directory (and /dev/shm,
which containers get as their own tmpfs): `okura migrate` (the HA overlay's init container),
then `okura serve`, which answers /v2/, /readyz and the image's HEALTHCHECK script and
accepts a blob push.

The read-only root is a private mount namespace (unshare) in which / is remounted read-only
and the data directory bind-mounted writable; nothing outside it changes. Needs root,
unshare and setpriv (util-linux).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.config import unknown_env_keys
from tests.e2e.test_deploy_manifests import DATA_DIR, DEPLOY, image, image_argv
from tests.support.clients import require_binaries, require_root
from tests.support.logs import tail
from tests.support.ports import allocate_port
from tests.support.processes import OKURA, okura_env, signal_group, spawn

UID = 123456  # no such user here, as with OpenShift's UID ranges

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_root()
    require_binaries("unshare", "setpriv")


def _blocked(path: str) -> Path | None:
    """The first directory above `path` that other users cannot enter (/root is 0700)."""
    for parent in reversed(Path(path).parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def _sandbox_script(data: Path, stash: Path) -> str:
    """Shell run as root in a new mount namespace, ending by exec'ing its arguments as UID:0.

    The interpreter may live under a directory only root may enter (pyenv under /root here;
    in the image it is /usr/local): that directory is covered with an empty tmpfs into which
    the interpreter's tree is bind-mounted back, so the UID reaches exactly that."""
    interpreter = os.path.realpath(sys.executable)
    for needed in (sys.prefix, str(Path(__file__).resolve().parents[2])):
        if _blocked(os.path.realpath(needed)):
            pytest.skip(f"{needed} is not reachable by other users")
    lines = ["set -e"]
    blocked = _blocked(interpreter)
    if blocked is not None:
        if blocked == Path("/"):
            pytest.skip("the root directory is not reachable by other users")
        child = Path(interpreter).relative_to(blocked).parts[0]
        tree = shlex.quote(str(blocked / child))
        lines += [
            f"mount --bind {tree} {shlex.quote(str(stash))}",
            f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(str(blocked))}",
            f"mkdir {tree}",
            f"mount --bind {shlex.quote(str(stash))} {tree}",
            f"mount -o remount,bind,ro {tree}",
            f"mount -o remount,ro {shlex.quote(str(blocked))}",
        ]
    quoted = shlex.quote(str(data))
    lines += [
        "mount -o remount,bind,ro /",
        f"mount --bind {quoted} {quoted}",
        f"mount -o remount,bind,rw {quoted}",
        # what allowPrivilegeEscalation: false and capabilities: drop: [ALL] leave
        f'exec setpriv --reuid {UID} --regid 0 --clear-groups --no-new-privs --bounding-set=-all -- "$@"',
    ]
    return "\n".join(lines)


class Sandboxed:
    """`okura ARGS` (the image's ENTRYPOINT) run as UID:0 on a read-only root."""

    def __init__(self, base: Path, data: Path, env: dict[str, str]):
        self.base, self.data, self.env = base, data, env
        self.stash = base / "stash"
        self.stash.mkdir(exist_ok=True)

    def wrap(self, argv: list[str]) -> list[str]:
        script = _sandbox_script(self.data, self.stash)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sandbox", *argv]

    def argv(self, args: list[str]) -> list[str]:
        entry, *rest = image_argv(args)
        assert entry == "okura"
        return self.wrap([OKURA, *rest])

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(args), env=self.env, capture_output=True, text=True, timeout=120)

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as f:
            return spawn(self.argv(args), f, self.env)


@pytest.fixture
def prepared() -> Iterator[tuple[Path, Path]]:
    """A data directory made as the Dockerfile makes /var/lib/okura (its RUN line, with the
    path replaced), under a directory every user may enter (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="okura-uid-", dir="/tmp"))
    try:
        base.chmod(0o755)
        data = base / DATA_DIR.lstrip("/")
        data.parent.mkdir(parents=True)
        for parent in (base / "var", base / "var" / "lib"):
            parent.chmod(0o755)
        runs = [r for r in image().all("RUN") if DATA_DIR in r]
        assert runs, f"the Dockerfile never prepares {DATA_DIR}"
        for run in runs:
            subprocess.run(["sh", "-ec", run.replace(DATA_DIR, str(data))], check=True)
        yield base, data
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _image_env(data: Path, port: int, workers: int) -> dict[str, str]:
    """The image's ENV (its paths moved to `data`) on this host's PATH, listening on `port`."""
    env = {k: v.replace(DATA_DIR, str(data)) for k, v in image().env().items()}
    extra = {"OKURA_HTTP_ADDR": f"127.0.0.1:{port}", "OKURA_HTTP_WORKERS": str(workers), "OKURA_LOG_LEVEL": "info"}
    if not unknown_env_keys({"OKURA_HTTP_SHUTDOWN_DELAY": "0s"}):
        extra["OKURA_HTTP_SHUTDOWN_DELAY"] = "0s"  # nothing to wait for: no load balancer here
    return okura_env(**env, **extra)


def _push_blob(base_url: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        patched = client.patch(location, content=data, headers={"Content-Type": "application/octet-stream"})
        assert patched.status_code == 202, patched.text
        done = client.put(patched.headers["Location"], params={"digest": digest})
        assert done.status_code == 201, done.text
        fetched = client.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        assert fetched.status_code == 200 and fetched.content == data
    return digest


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.parametrize("workers", [1, 2])
def test_okura_runs_as_an_arbitrary_uid_on_a_read_only_root(prepared, workers):
    base, data = prepared
    assert stat.S_IMODE(data.stat().st_mode) & 0o070 == 0o070 and data.stat().st_gid == 0, "group 0, g=u"
    port = allocate_port()
    sandbox = Sandboxed(base, data, _image_env(data, port, workers))

    # The sandbox itself: the root is read-only there, and the UID is not root.
    probe = subprocess.run(
        sandbox.wrap(["sh", "-c", "id -u; touch /okura-probe 2>/dev/null || echo read-only"]),
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.stdout.split() == [str(UID), "read-only"], probe.stdout + probe.stderr

    migrated = sandbox.run(["migrate", "--wait", "2m"])
    assert migrated.returncode == 0, migrated.stderr
    assert (data / "okura.db").stat().st_uid == UID

    log = base / "okura.log"
    server = sandbox.start(image_argv()[1:], log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"okura exited with {server.returncode}:\n{tail(log, 40)}"
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no answer on /v2/ within 30s:\n{tail(log, 40)}"
            time.sleep(0.1)
        assert _uid_of(server.pid) == UID

        digest = _push_blob(url, "uid/app", os.urandom(300_000) + b"arbitrary uid")
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        healthcheck = subprocess.run(
            [sys.executable, str(DEPLOY / "image" / "healthcheck.py")],
            env=sandbox.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert healthcheck.returncode == 0, healthcheck.stderr
        created = list(data.rglob("*"))
        assert any(digest.split(":")[1] in str(p) for p in created), "the blob is not under the data directory"
        assert all(p.stat().st_uid == UID for p in created), [(str(p), p.stat().st_uid) for p in created]
    finally:
        server.send_signal(signal.SIGTERM)  # to the main process only, as a container runtime does
        try:
            code = server.wait(40)
        except subprocess.TimeoutExpired:
            signal_group(server, signal.SIGKILL)
            server.wait(10)
            code = None
    text = log.read_text(errors="replace")
    assert code == 0, f"okura did not stop cleanly on SIGTERM ({code}):\n{tail(log, 40)}"
    for bad in ("Traceback", "Read-only file system", "Permission denied", "level=error"):
        assert bad not in text, f"{bad!r} in the server log:\n{tail(log, 60)}"
