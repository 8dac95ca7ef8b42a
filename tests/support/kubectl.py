"""The real `kubectl` against a real `okura serve` over HTTPS with auth on (kubectl sends
credentials only over TLS): a server certificate from a test CA (tests/support/tls.py), accounts
and kubeconfigs made with `okura auth ...` and `okura kubeconfig`, kubectl run with a private
HOME (its discovery cache) per test, `kubectl get -w` read line by line with arrival times, and
podman pushing with that CA trusted (--cert-dir) rather than with TLS verification off.

A missing kubectl skips the tests that need it, unless OKURA_TEST_REQUIRE_CLIENTS=1."""

from __future__ import annotations

import os
import queue
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.clients import Account, Clients, require_binaries
from tests.support.logs import parse_logfmt
from tests.support.ports import allocate_port
from tests.support.processes import kill_process_group, okura_command, okura_env, serve_argv, spawn, track
from tests.support.servers import OkuraServer
from tests.support.tls import CertificateAuthority

KUBECTL_TIMEOUT = 60.0
OKURA_TIMEOUT = 60.0


def require_kubectl() -> None:
    """Skip (or fail under OKURA_TEST_REQUIRE_CLIENTS=1) without a kubectl binary."""
    require_binaries("kubectl")


def trust_dir(ca: CertificateAuthority) -> Path:
    """A directory holding only the CA's ca.crt, for podman/skopeo --cert-dir (a *.key there
    without its *.cert would be taken for a broken client certificate)."""
    directory = ca.directory.parent / f"{ca.directory.name}-trust"
    directory.mkdir(exist_ok=True)
    shutil.copyfile(ca.path, directory / "ca.crt")
    return directory


class KubeServer(OkuraServer):
    """`okura serve` over HTTPS (a certificate from `ca` for 127.0.0.1 and localhost) with auth
    on and the access log written, so that after a test its log can be checked for 5xx answers
    and errors. `okura ...` commands run on its data dir with the same environment."""

    def __init__(self, data_dir: Path, ca: CertificateAuthority, env: dict[str, str] | None = None, name: str = ""):
        name = name or data_dir.name
        cert, key = ca.issue(name)
        tls = {"OKURA_HTTP_TLS_CERTIFICATE": str(cert), "OKURA_HTTP_TLS_KEY": str(key), "OKURA_AUTH_ENABLED": "true"}
        super().__init__(data_dir, env={**tls, **(env or {})})
        self.ca = ca
        self.trust_dir = trust_dir(ca)
        self.bind = "127.0.0.1"  # the address it listens on (clients use 127.0.0.1 either way)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cert_path(self) -> Path:
        """The certificate file it serves (replace it, or the key, to rotate)."""
        return Path(self.env["OKURA_HTTP_TLS_CERTIFICATE"])

    @property
    def key_path(self) -> Path:
        return Path(self.env["OKURA_HTTP_TLS_KEY"])

    def start(self, timeout: float = 60.0) -> KubeServer:
        """Start on a free port; ready once uvicorn says it holds the port (until then another
        process may own it) and GET /v2/ over verified TLS answers 401 with a Bearer challenge.
        A port taken between allocation and bind (a concurrent test run) means another port."""
        assert not self.alive(), "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = okura_env(**{"OKURA_LOG_LEVEL": "info", "OKURA_LOG_ACCESS_LOG": "true", **self.env})
        for _attempt in range(3):
            self.port = allocate_port()
            args = serve_argv(self.data_dir, self.port, host=self.bind)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the server runs
            self._log.write(f"\n=== start {' '.join(args)}\n".encode())
            self._log.flush()
            offset = self._log.tell()
            self.proc = track(spawn(args, self._log, env))
            if self._wait_ready(offset, timeout):
                return self
            if "address already in use" not in self.log_text(offset).lower():
                break
        self.kill()
        raise RuntimeError(f"okura did not start on {self.bind}:{self.port} within {timeout}s:\n{self.log_tail()}")

    def _wait_ready(self, offset: int, timeout: float) -> bool:
        assert self.proc is not None
        bound = f"Uvicorn running on https://{self.bind}:{self.port} "
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if bound in self.log_text(offset):
                try:
                    if self.answers_ready(httpx.get(f"{self.url}/v2/", verify=self.ssl_context(), timeout=2.0)):
                        return True
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.kill()
        return False

    def answers_ready(self, response: httpx.Response) -> bool:
        """GET /v2/ of a started server: auth is on, so a 401 with a Bearer challenge."""
        return response.status_code == 401 and response.headers.get("WWW-Authenticate", "").startswith("Bearer ")

    # -- the log -------------------------------------------------------------------------------

    def log_text(self, offset: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def mark(self) -> int:
        """A position in the log; server_errors(mark) looks only after it."""
        return self.log_path.stat().st_size

    def sync_log(self, timeout: float = 10.0) -> None:
        """Wait until the access log shows every request answered so far: a line is written
        after its response went out, so a client may exit before its last request is logged.
        A request sent now is logged after those."""
        marker = f"/e2e-log-sync/{uuid.uuid4().hex}"
        with httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=10) as c:
            c.get(marker)
        deadline = time.monotonic() + timeout
        while marker not in self.log_text():
            assert time.monotonic() < deadline, f"the access log never showed {marker}"
            time.sleep(0.02)

    def server_errors(self, since: int) -> list[str]:
        """Lines after `since` logging a 5xx answer or an error (once the log has caught up)."""
        if self.alive():
            self.sync_log()
        bad = []
        for line in self.log_text(since).splitlines():
            fields = parse_logfmt(line)
            status = fields.get("status", "")
            five_xx = fields.get("msg") == "response" and status.isdigit() and int(status) >= 500
            if five_xx or fields.get("level") in ("error", "fatal") or "Traceback" in line:
                bad.append(line)
        return bad

    # -- the okura CLI on this server's data -------------------------------------------------

    def okura(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`okura ARGS --data-dir DATA` with the server's environment (same database, TLS config)."""
        argv = [*okura_command(), *args, "--data-dir", str(self.data_dir)]
        result = subprocess.run(argv, env=okura_env(**self.env), capture_output=True, text=True, timeout=OKURA_TIMEOUT)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def account(self, user: str, *roles: tuple[str, str | None]) -> Account:
        """A user with (role, namespace or None for cluster-wide) bindings and a fresh token."""
        self.okura("auth", "create-user", user)
        for role, namespace in roles:
            self.okura("auth", "add-role", role, user, *(["-n", namespace] if namespace else []))
        result = self.okura("auth", "create-token", user, "--description", f"kubectl e2e {user}")
        token = result.stdout.strip()
        m = re.search(r"^token (\S+) for ", result.stderr, re.MULTILINE)
        assert token and m, f"unexpected create-token output: {result.stdout!r} {result.stderr!r}"
        return Account(user, token, m.group(1), username=user)

    def kubeconfig(self, path: Path, token: str, namespace: str = "team", server: str | None = None) -> Path:
        """`okura kubeconfig --token T -n NS --certificate-authority CA [--server URL]`, written to
        `path`. Without `server` the command finds the live server's address itself."""
        args = ["kubeconfig", "--token", token, "-n", namespace, "--certificate-authority", str(self.ca.path)]
        result = self.okura(*args, *(["--server", server] if server else []))
        assert "warning" not in result.stderr.lower(), result.stderr
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.stdout)
        return path

    # -- HTTP ----------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.path))

    def http(self, account: Account) -> httpx.Client:
        """Basic USER:TOKEN, as curl -u would send it, over TLS verified with the test CA."""
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), auth=account.basic, timeout=30)


def podman_push(clients: Clients, server: KubeServer, account: Account, local: str, dest: str) -> str:
    """podman push `local` to SERVER/`dest` (NS/NAME:TAG) as `account`, verifying the server's
    certificate with the test CA; the digest podman reports."""
    digestfile = clients.workdir("digest") / "digest"
    authfile = clients.auth_file_for(server.host, account)
    clients.podman("push", "--tls-verify=true", "--cert-dir", str(server.trust_dir), "--authfile", str(authfile),
                   "--digestfile", str(digestfile), local, f"docker://{server.host}/{dest}")  # fmt: skip
    return digestfile.read_text().strip()


def skopeo_digest(clients: Clients, server: KubeServer, account: Account, ref: str) -> str:
    """The manifest digest of SERVER/`ref` as `skopeo inspect` (TLS verified) reports it."""
    import json

    out = clients.skopeo("inspect", "--tls-verify=true", "--cert-dir", str(server.trust_dir), "--creds", account.creds,
                         f"docker://{server.host}/{ref}").stdout  # fmt: skip
    return json.loads(out)["Digest"]


# -- kubectl ---------------------------------------------------------------------------------


class KubectlError(AssertionError):
    pass


def _describe(argv: list[str], result: subprocess.CompletedProcess) -> str:
    out, err = result.stdout, result.stderr
    return f"{' '.join(argv)} -> exit {result.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


@dataclass
class Kubectl:
    """kubectl with one kubeconfig and a private HOME (so its discovery cache, ~/.kube/cache,
    starts empty), in an environment holding nothing else of this process's."""

    kubeconfig: Path
    home: Path

    def __post_init__(self) -> None:
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "KUBECONFIG": str(self.kubeconfig),
            **extra,
        }

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """kubectl ARGS; with `check` it must exit 0 (KubectlError, showing its output, if not)."""
        argv = ["kubectl", *args]
        result = subprocess.run(
            argv,
            env=self.env(**(env or {})),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT,
        )
        if check and result.returncode != 0:
            raise KubectlError(_describe(argv, result))
        return result

    def ok(self, *args: str, **kw) -> str:
        """kubectl ARGS must exit 0 with nothing on stderr; its stdout."""
        result = self.run(*args, **kw)
        assert result.stderr == "", f"unexpected stderr:\n{_describe(['kubectl', *args], result)}"
        return result.stdout

    def fails(self, *args: str, **kw) -> str:
        """kubectl ARGS must exit non-zero; its stderr."""
        result = self.run(*args, check=False, **kw)
        assert result.returncode != 0, f"expected a failure:\n{_describe(['kubectl', *args], result)}"
        return result.stderr

    def watch(self, *args: str) -> Watch:
        """kubectl ARGS in the background (e.g. get is -w), its stdout read line by line."""
        argv = ["kubectl", *args]
        proc = subprocess.Popen(
            argv,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return Watch(argv, track(proc))


@dataclass
class Watch:
    """A running `kubectl get -w`: each stdout line with the monotonic time it was read."""

    argv: list[str]
    proc: subprocess.Popen
    seen: list[tuple[float, str]] = field(default_factory=list)
    _lines: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put((time.monotonic(), line.rstrip("\n")))
        self._lines.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str = "") -> tuple[float, str]:
        """The first line from now on that `predicate` accepts, and when it was read."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(self._report(f"no line {what} within {timeout}s")) from None
            if item is None:
                self._lines.put(None)
                raise AssertionError(self._report(f"kubectl exited (code {self.proc.wait()}) before a line {what}"))
            self.seen.append(item)
            if predicate(item[1]):
                return item

    def _report(self, problem: str) -> str:
        lines = "\n".join(line for _, line in self.seen)
        return f"{' '.join(self.argv)}: {problem}; its output so far:\n{lines}"

    def stop(self) -> str:
        """Stop kubectl; its stderr."""
        kill_process_group(self.proc, grace=5)
        self._reader.join(10)  # stdout ends with the process
        assert self.proc.stdout is not None and self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


# -- kubectl's output ------------------------------------------------------------------------


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's table output: the header's column names and each row's cells, cut at the
    columns the header starts (tabwriter aligns every row to them; a cell may be empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no table in kubectl's output"
    header = lines[0]
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    starts = [s for s, _ in spans] + [None]
    rows = [[line[starts[i] : starts[i + 1]].strip() for i in range(len(spans))] for line in lines[1:]]
    return [name for _, name in spans], rows


def cells(line: str) -> list[str]:
    """A line of `kubectl get -w` (printed on its own, not aligned with the header): its cells."""
    return re.split(r"\s{2,}", line.strip())
