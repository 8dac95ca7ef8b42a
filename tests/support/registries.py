"""End-to-end registries: `okura serve` processes (one per test module and storage) whose
access log tells what the clients did, with auth off (Registry) or on (AuthRegistry, accounts
made with `okura auth ...` on its data dir; the HTTP shortcuts act as a cluster-admin).

Every registry writes its log to <tmp>/okura*/okura.log."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.auth import parse_challenge
from tests.support.clients import Account, ClientError
from tests.support.digests import sha256
from tests.support.logs import parse_logfmt, tail
from tests.support.media_types import ALL_MANIFEST_TYPES
from tests.support.ports import allocate_port
from tests.support.processes import kill_process_group, okura_command, okura_env, serve_argv, spawn, track
from tests.support.rss import rss_kib
from tests.support.storages import BlobStore


@dataclass
class Registry:
    """A running `okura serve` on a private data dir; stderr+stdout go to log_path."""

    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path
    store: BlobStore = field(default_factory=lambda: BlobStore("filesystem"))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def http(self) -> httpx.Client:
        """A client that follows redirects (blob GET/HEAD answer 307 to S3 with s3-redirect)."""
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=True)

    def stored_blobs(self) -> set[str]:
        """Digests of the blobs in this registry's storage (its data dir or its S3 prefix)."""
        return self.store.blob_digests(self.data_dir)

    def check_blob_reads(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """The blob GETs among access-log `entries` were answered the way this registry's storage
        serves blobs: 307 to S3 with no body (s3-redirect), else 200/206 with the bytes
        (s3-proxy, filesystem). Returns those GETs (at least one is expected)."""
        gets = [e for e in entries if e["method"] == "GET" and re.search(r"/blobs/sha256:[0-9a-f]{64}$", e["path"])]
        assert gets, "no blob GET in the access log"
        summary = "\n".join(f"{e['method']} {e['path']} {e['status']} out={e.get('bytes_out')}" for e in gets)
        if self.store.redirect:
            assert all(e["status"] == "307" for e in gets), f"expected 307 to S3 for every blob GET:\n{summary}"
        else:
            served = all(e["status"] in ("200", "206") for e in gets)
            assert served, f"expected blob bytes from the registry:\n{summary}"
            assert sum(int(e.get("bytes_out", "0")) for e in gets) > 0, summary
        return gets

    # logs ---------------------------------------------------------------------------------
    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def mark(self) -> int:
        """A position in the log; pass it to access() to see only what came after."""
        return len(self.log_lines())

    def sync_log(self, timeout: float = 10) -> None:
        """Wait until the access log has caught up with the requests answered so far.

        The access line is written after the response went out, so a client can exit before
        its last request is logged. A request sent now is logged after those."""
        marker = f"/e2e-log-sync/{uuid.uuid4().hex}"
        with self.http() as c:
            c.get(marker)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.02)
        raise AssertionError(f"the access log never showed {marker}")

    def access(self, since: int = 0) -> list[dict[str, str]]:
        """Parsed access-log entries (method, path, status, bytes_in, ...) after `since`."""
        self.sync_log()
        entries = []
        for line in self.log_lines()[since:]:
            fields = parse_logfmt(line)
            if (
                fields.get("msg") == "response"
                and "method" in fields
                and not fields.get("path", "").startswith("/e2e-log-sync/")
            ):
                entries.append(fields)
        return entries

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def server_errors(self, since: int = 0) -> list[str]:
        bad = []
        for line in self.log_lines()[since:]:
            fields = parse_logfmt(line)
            status = fields.get("status", "")
            if (fields.get("msg") == "response" and status.isdigit() and int(status) >= 500) or fields.get("level") in (
                "error",
                "fatal",
            ):
                bad.append(line)
        return bad

    # process ------------------------------------------------------------------------------
    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"okura exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    # HTTP shortcuts -----------------------------------------------------------------------
    def get_manifest(self, repo: str, ref: str, method: str = "GET", accept: list[str] | None = None):
        headers = [("Accept", t) for t in (accept or ALL_MANIFEST_TYPES)]
        with self.http() as c:
            return c.request(method, f"/v2/{repo}/manifests/{ref}", headers=headers)

    def manifest_json(self, repo: str, ref: str) -> tuple[str, str, dict]:
        """(Docker-Content-Digest, Content-Type, parsed body) of a manifest; checks the digest."""
        r = self.get_manifest(repo, ref)
        assert r.status_code == 200, f"GET /v2/{repo}/manifests/{ref} -> {r.status_code} {r.text[:500]}"
        digest = r.headers.get("Docker-Content-Digest")
        assert digest == sha256(r.content), f"Docker-Content-Digest {digest} != sha256 of the body"
        return digest, r.headers.get("Content-Type", "").split(";")[0].strip(), r.json()

    def head_blob(self, repo: str, digest: str) -> httpx.Response:
        with self.http() as c:
            return c.head(f"/v2/{repo}/blobs/{digest}")


@dataclass
class AuthRegistry(Registry):
    """An `okura serve` with OKURA_AUTH_ENABLED=true. `admin` is a cluster-admin account; the
    HTTP shortcuts (http(), manifest_json(), head_blob(), ...) use it unless told otherwise."""

    admin: Account | None = None

    def okura_auth(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`okura auth ARGS --data-dir DATA` (the running server sees the change at once)."""
        argv = [*okura_command(), "auth", *args, "--data-dir", str(self.data_dir)]
        env = okura_env(OKURA_AUTH_ENABLED="true")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, input=stdin, timeout=60)
        if check and result.returncode != 0:
            raise ClientError(argv, result)
        return result

    def create_token(self, subject: str, *extra: str) -> tuple[str, str]:
        """(token, token ID); the token is the only stdout line, the ID is on stderr."""
        result = self.okura_auth("create-token", subject, *extra)
        token = result.stdout.strip()
        m = re.search(r"^token (\S+) for ", result.stderr, re.MULTILINE)
        assert token and m, f"unexpected create-token output: {result.stdout!r} {result.stderr!r}"
        return token, m.group(1)

    def account(self, subject: str, *roles: tuple[str, str | None]) -> Account:
        """Create a user (NAME) or service account (NS/NAME), bind (role, namespace or None for
        cluster-wide) pairs, and make a token."""
        if "/" in subject:
            self.okura_auth("create-serviceaccount", subject)
        else:
            self.okura_auth("create-user", subject)
        for role, namespace in roles:
            self.grant(role, subject, namespace)
        token, token_id = self.create_token(subject, "--description", f"e2e {subject}")
        return Account(subject, token, token_id)

    def grant(self, role: str, subject: str, namespace: str | None = None) -> None:
        self.okura_auth("add-role", role, subject, *(["-n", namespace] if namespace else []))

    def http(self, account: Account | None = None, anonymous: bool = False) -> httpx.Client:
        """A client sending Basic USER:TOKEN (the admin's unless told), or nothing; it follows
        redirects (and sends no credentials to S3: httpx authenticates the first request only)."""
        if anonymous:
            return httpx.Client(base_url=self.url, timeout=60, follow_redirects=True)
        who = account or self.admin
        assert who is not None
        return httpx.Client(base_url=self.url, timeout=60, auth=who.basic, follow_redirects=True)

    def bearer_dance(self, method: str, path: str, account: Account | None, **kw) -> httpx.Response:
        """The Docker token protocol as clients do it: the request without credentials, its 401
        challenge, GET realm?service=..&scope=.. (Basic USER:TOKEN, or anonymous), the request
        again with the bearer JWT."""
        with httpx.Client(base_url=self.url, timeout=60) as c:
            first = c.request(method, path, **kw)
            assert first.status_code == 401, f"{method} {path} without credentials -> {first.status_code}"
            challenge = parse_challenge(first.headers["WWW-Authenticate"])
            assert challenge is not None, f"not a Bearer challenge: {first.headers['WWW-Authenticate']}"
            params = {"service": challenge["service"]}
            if "scope" in challenge:
                params["scope"] = challenge["scope"]
            if account is not None:
                params["account"] = account.username
            r = c.get(challenge["realm"], params=params, auth=account.basic if account else None)
            assert r.status_code == 200, f"token endpoint -> {r.status_code} {r.text[:300]}"
            jwt = r.json()["token"]
            return c.request(method, path, headers={"Authorization": f"Bearer {jwt}"}, **kw)


def start_registry(
    workdir: Path,
    *extra_args: str,
    env: dict[str, str] | None = None,
    auth: bool = False,
    store: BlobStore | None = None,
) -> Iterator[Registry]:
    """Start okura (extra command-line flags, extra OKURA_* variables) and wait for GET /v2/.

    store: where blobs go (its OKURA_STORAGE_* variables); default: the data dir.
    auth=True: OKURA_AUTH_ENABLED=true, GET /v2/ must answer 401 with a Bearer challenge, and
    the Registry is an AuthRegistry with a cluster-admin account (see there)."""
    store = store or BlobStore("filesystem")
    env = {**store.env(), **(env or {})}
    if auth:
        env["OKURA_AUTH_ENABLED"] = "true"
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    log_path = workdir / "okura.log"
    last_error = ""
    for _attempt in range(3):
        port = allocate_port()
        with open(log_path, "ab") as log:
            proc = track(spawn(serve_argv(data_dir, port, *extra_args), log, okura_env(**env)))
        cls = AuthRegistry if auth else Registry
        registry = cls(proc=proc, port=port, data_dir=data_dir, log_path=log_path, store=store)
        deadline = time.monotonic() + 60
        ready = False
        # Uvicorn logs this once it holds the port: until then a GET /v2/ may be answered by
        # another process (a concurrent test run) that took the port after allocate_port().
        bound = f"Uvicorn running on http://127.0.0.1:{port} "
        while time.monotonic() < deadline and proc.poll() is None:
            if bound not in log_path.read_text(errors="replace"):
                time.sleep(0.1)
                continue
            try:
                r = httpx.get(f"{registry.url}/v2/", timeout=2)
                if r.status_code == 200 and not auth:
                    ready = True
                    break
                if auth and r.status_code == 401 and r.headers.get("WWW-Authenticate", "").startswith("Bearer "):
                    ready = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        if ready:
            try:
                if isinstance(registry, AuthRegistry):
                    registry.admin = registry.account("e2e-admin", ("cluster-admin", None))
                    # The answer must come from our process (a concurrent test run may hold the port).
                    with registry.http() as c:
                        r = c.get("/v2/")
                    registry.assert_alive()
                    assert r.status_code == 200, f"GET /v2/ as the admin -> {r.status_code}: is port {port} ours?"
                yield registry
            finally:
                kill_process_group(proc)
            return
        kill_process_group(proc)
        last_error = f"okura did not answer GET /v2/ on port {port} (exit code {proc.returncode}); log tail:\n"
        last_error += tail(log_path)
        if "address already in use" not in last_error.lower():
            break
    pytest.fail(last_error, pytrace=False)
