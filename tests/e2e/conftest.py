"""End-to-end fixtures: a real `okura serve` process driven by real clients.

Clients (podman, buildah, skopeo) run rootful with a private configuration (vfs storage,
storage.conf, containers.conf, registries.conf, auth file, HOME) so that they touch nothing
outside a temporary directory. The one global piece of client state, the blob-info-cache in
/var/lib/containers/cache (it decides when clients try cross-repository mounts), is isolated by
running every client command under `unshare --mount` with a private directory bind-mounted over
/var/lib/containers. See /work/shared/reference/real-clients.md.

A missing client binary skips the tests that need it, unless OKURA_TEST_REQUIRE_CLIENTS=1, in
which case it is a failure (so is a dockerd that does not start).

Run as root:  .venv/bin/pytest tests/e2e        (or -m e2e / -m "not e2e" from the whole suite)
Needs: podman skopeo buildah (apt), docker.io with --no-install-recommends (dockerd, containerd,
runc, tini) plus a docker CLI, util-linux (unshare, mount). Ports 5100-5199 on 127.0.0.1.
Every registry writes its log to <tmp>/okura*/okura.log; a failing test shows its tail.

Blob storage (`storage` parameter, see STORAGES): every registry fixture runs once per storage a
test module allows: `filesystem` (blobs under the data dir), `s3-redirect` (S3 driver on the
session's SeaweedFS, SQLite metadata, blob GET/HEAD answered 307 to a presigned SeaweedFS URL that
the clients follow) and `s3-proxy` (the same, storage.s3.redirect=false: blobs streamed through
the registry). Each registry gets its own root prefix in the shared bucket. A test or module
narrows the list with @pytest.mark.storages(...); OKURA_TEST_E2E_STORAGES=filesystem,... narrows
the whole run.

With auth on (auth_registry / AuthRegistry, OKURA_AUTH_ENABLED=true), accounts are made with
`okura auth ...` on the server's data dir; clients pick an identity per command with --authfile
(Clients.auth_file_for), --creds, or `docker --config DIR`, and the HTTP shortcuts act as a
cluster-admin. A module that wants auth overrides `registry` with `auth_registry`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.s3_fixtures import S3_BUCKET
from tests.storage.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS

REQUIRE_CLIENTS = os.environ.get("OKURA_TEST_REQUIRE_CLIENTS") == "1"
PORT_RANGE = range(5100, 5200)
CLIENT_TIMEOUT = 300

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# What c/image sends, one media type per Accept line.
ALL_MANIFEST_TYPES = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def require_binaries(*names: str) -> None:
    """Skip (or fail under OKURA_TEST_REQUIRE_CLIENTS=1) when a client binary is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        reason = f"client binaries not installed: {', '.join(missing)}"
        if REQUIRE_CLIENTS:
            pytest.fail(f"{reason} (OKURA_TEST_REQUIRE_CLIENTS=1)", pytrace=False)
        pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        reason = "the e2e suite runs the clients rootful (vfs storage, unshare --mount); run it as root"
        if REQUIRE_CLIENTS:
            pytest.fail(f"{reason} (OKURA_TEST_REQUIRE_CLIENTS=1)", pytrace=False)
        pytest.skip(reason)


_allocated_ports: set[int] = set()


def allocate_port() -> int:
    """A free port in 5100-5199 that this session has not handed out yet."""
    for port in PORT_RANGE:
        if port in _allocated_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _allocated_ports.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


_LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        out[key] = value
    return out


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


# --------------------------------------------------------------------------------------------
# where the registry keeps its blobs
# --------------------------------------------------------------------------------------------

STORAGES = ("filesystem", "s3-redirect", "s3-proxy")
_ONLY_STORAGES = [s for s in os.environ.get("OKURA_TEST_E2E_STORAGES", "").replace(" ", "").split(",") if s]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using `storage` (every registry fixture does) runs once per storage its
    closest @pytest.mark.storages(...) allows (all of STORAGES without one)."""
    if "storage" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("storages")
    kinds = list(mark.args) if mark else list(STORAGES)
    unknown = set(kinds) - set(STORAGES)
    if unknown:
        raise ValueError(f"{metafunc.definition.nodeid}: unknown storages {sorted(unknown)}")
    if _ONLY_STORAGES:
        kinds = [k for k in kinds if k in _ONLY_STORAGES]
    # module scope: one registry per module and storage, tests grouped by storage
    metafunc.parametrize("storage", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage(request) -> str:
    """The blob storage of this module's registry: one of STORAGES (see pytest_generate_tests)."""
    return getattr(request, "param", "filesystem")


@dataclass
class BlobStore:
    """Where one registry under test keeps its blobs: its data dir, or a root prefix of its own
    in the session's SeaweedFS bucket (so that registries never see each other's blobs)."""

    kind: str  # one of STORAGES
    s3: SeaweedFS | None = None
    bucket: str = S3_BUCKET
    prefix: str = ""
    _client: object = field(default=None, repr=False, compare=False)

    @property
    def is_s3(self) -> bool:
        return self.kind.startswith("s3")

    @property
    def redirect(self) -> bool:
        """Blob GET/HEAD answer 307 to S3."""
        return self.kind == "s3-redirect"

    def env(self) -> dict[str, str]:
        """OKURA_STORAGE_* variables of this storage (none for the filesystem default)."""
        if not self.is_s3:
            return {}
        assert self.s3 is not None
        return {
            "OKURA_STORAGE_DRIVER": "s3",
            "OKURA_STORAGE_S3_BUCKET": self.bucket,
            "OKURA_STORAGE_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
            "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
            "OKURA_STORAGE_S3_ROOT_PREFIX": self.prefix,
            "OKURA_STORAGE_S3_REDIRECT": "true" if self.redirect else "false",
        }

    def client(self):
        """A boto3 client of the SeaweedFS server (to look at what the registry stored)."""
        assert self.s3 is not None
        if self._client is None:
            self._client = self.s3.client()
        return self._client

    def _keys(self, prefix: str) -> Iterator[dict]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def blob_digests(self, data_dir: Path) -> set[str]:
        """Digests of the blobs stored (whatever the metadata says)."""
        if self.is_s3:
            root = f"{self.prefix}blobs/"
            keys = [obj["Key"][len(root) :].split("/") for obj in self._keys(root)]
            return {f"{parts[0]}:{parts[-1]}" for parts in keys if len(parts) == 3}
        root_dir = data_dir / "blobs"
        found = set()
        for path in root_dir.rglob("*") if root_dir.exists() else ():
            if path.is_file() and re.fullmatch(r"[0-9a-f]{64}", path.name):
                found.add(f"sha256:{path.name}")
        return found

    def upload_bytes(self) -> int:
        """Bytes of uploads in progress that reached S3 (multipart parts and tail objects)."""
        client = self.client()
        root = f"{self.prefix}uploads/"
        total = sum(obj["Size"] for obj in self._keys(root))
        for mpu in client.list_multipart_uploads(Bucket=self.bucket, Prefix=root).get("Uploads", []):
            parts = client.list_parts(Bucket=self.bucket, Key=mpu["Key"], UploadId=mpu["UploadId"])
            total += sum(p["Size"] for p in parts.get("Parts", []))
        return total


def make_blob_store(request: pytest.FixtureRequest, kind: str) -> BlobStore:
    if not kind.startswith("s3"):
        return BlobStore(kind)
    server = request.getfixturevalue("seaweedfs")
    module = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removesuffix(".py")).strip("-")
    return BlobStore(kind, s3=server, prefix=f"e2e-{module}-{kind}-{uuid.uuid4().hex[:8]}/")


@pytest.fixture(scope="module")
def blob_store(request, storage) -> BlobStore:
    """A fresh place for this module's registry to keep its blobs, of the kind `storage` says."""
    return make_blob_store(request, storage)


# --------------------------------------------------------------------------------------------
# the registry process
# --------------------------------------------------------------------------------------------


def okura_command() -> list[str]:
    script = Path(sys.executable).with_name("okura")
    return [str(script)] if script.exists() else [sys.executable, "-m", "registry"]


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
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

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
        assert digest == sha256_bytes(r.content), f"Docker-Content-Digest {digest} != sha256 of the body"
        return digest, r.headers.get("Content-Type", "").split(";")[0].strip(), r.json()

    def head_blob(self, repo: str, digest: str) -> httpx.Response:
        with self.http() as c:
            return c.head(f"/v2/{repo}/blobs/{digest}")


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
        log = open(log_path, "ab")  # noqa: SIM115 - closed below
        proc = track(
            subprocess.Popen(
                [*okura_command(), "serve", "--data-dir", str(data_dir), "--addr", f"127.0.0.1:{port}", *extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}, **env},
            )
        )
        log.close()
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


@pytest.fixture(scope="module")
def registry(tmp_path_factory, blob_store) -> Iterator[Registry]:
    """One registry process per test module and storage, on a fresh data dir."""
    yield from start_registry(tmp_path_factory.mktemp("okura"), store=blob_store)


# --------------------------------------------------------------------------------------------
# the registry with auth on: accounts made with `okura auth ...` on its data dir
# --------------------------------------------------------------------------------------------


@dataclass
class Account:
    """An identity and one of its tokens. Any username works with a token as the password."""

    subject: str  # as the CLI takes it: a user name, or NS/NAME for a service account
    token: str
    token_id: str
    username: str = "e2e"

    @property
    def creds(self) -> str:
        """USER:PASSWORD for skopeo --creds / podman --creds."""
        return f"{self.username}:{self.token}"

    @property
    def basic(self) -> tuple[str, str]:
        return (self.username, self.token)


def write_auth_config(path: Path, host: str, username: str, password: str) -> Path:
    """A containers auth.json / docker config.json holding one registry's credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": encoded}}}))
    return path


def auth_config_entry(path: Path, host: str) -> tuple[str, str] | None:
    """(username, password) stored for `host` in an auth.json / config.json, or None."""
    if not path.exists():
        return None
    entry = json.loads(path.read_text() or "{}").get("auths", {}).get(host)
    if not entry or not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


@dataclass
class AuthRegistry(Registry):
    """An `okura serve` with OKURA_AUTH_ENABLED=true. `admin` is a cluster-admin account; the
    HTTP shortcuts (http(), manifest_json(), head_blob(), ...) use it unless told otherwise."""

    admin: Account | None = None

    def okura_auth(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`okura auth ARGS --data-dir DATA` (the running server sees the change at once)."""
        argv = [*okura_command(), "auth", *args, "--data-dir", str(self.data_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
        env["OKURA_AUTH_ENABLED"] = "true"
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
            params = {"service": challenge["service"]}
            if "scope" in challenge:
                params["scope"] = challenge["scope"]
            if account is not None:
                params["account"] = account.username
            r = c.get(challenge["realm"], params=params, auth=account.basic if account else None)
            assert r.status_code == 200, f"token endpoint -> {r.status_code} {r.text[:300]}"
            jwt = r.json()["token"]
            return c.request(method, path, headers={"Authorization": f"Bearer {jwt}"}, **kw)


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> dict[str, str]:
    """`Bearer realm="..",service="..",scope=".."` -> {"realm": .., "service": .., "scope": ..}."""
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer", f"not a Bearer challenge: {header}"
    return dict(_CHALLENGE_PARAM.findall(params))


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, blob_store) -> Iterator[AuthRegistry]:
    """One auth-enabled registry per test module and storage. A module that uses it overrides
    `registry` with it, so that `clients`, `puller` and the after-test error check use it too."""
    for registry in start_registry(tmp_path_factory.mktemp("okura-auth"), auth=True, store=blob_store):
        assert isinstance(registry, AuthRegistry)
        yield registry


@pytest.fixture(autouse=True)
def _no_server_errors(request):
    """After every test: the registry logged no 5xx answer and no error, and is still running."""
    if "registry" not in request.fixturenames:
        yield
        return
    registry: Registry = request.getfixturevalue("registry")
    start = registry.mark()
    yield
    alive = registry.proc.poll() is None
    if alive:
        registry.sync_log()
    errors = registry.server_errors(start)
    if errors or not alive:
        text = "\n".join(errors[-20:])
        pytest.fail(
            f"registry {'exited' if not alive else 'is alive'}; it logged {len(errors)} error(s)/5xx:\n{text}",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        registry = funcargs.get("registry")
        if isinstance(registry, Registry):
            report.sections.append((f"okura server log, tail ({registry.log_path})", registry.log_tail(60)))
        dockerd = funcargs.get("dockerd")
        log_path = getattr(dockerd, "log_path", None)
        if log_path is not None:
            report.sections.append((f"dockerd log, tail ({log_path})", tail(log_path, 30)))
    return report


# --------------------------------------------------------------------------------------------
# podman / buildah / skopeo with a private configuration
# --------------------------------------------------------------------------------------------


class ClientError(AssertionError):
    def __init__(self, argv: list[str], result: subprocess.CompletedProcess | None, note: str = ""):
        self.argv = argv
        self.result = result
        out = result.stdout[-3000:] if result else ""
        err = result.stderr[-5000:] if result else ""
        rc = result.returncode if result else "timeout"
        super().__init__(f"{' '.join(argv)} -> exit {rc} {note}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")


# Runs "$@" with a private directory ($0) bind-mounted over /var/lib/containers, in a private
# mount namespace: the clients' global blob-info-cache then lives in that directory.
_ISOLATE = 'mount --bind "$0" /var/lib/containers && exec "$@"'


class Clients:
    """podman, buildah and skopeo on one private storage + one private blob-info-cache."""

    def __init__(self, root: Path, registries: list[str]):
        self.root = root
        self.storage = root / "storage"
        self.runroot = root / "run"
        self.cache_dir = root / "var-lib-containers"
        self.home = root / "home"
        for d in (self.storage, self.runroot, self.cache_dir, self.home, root / "tmp", root / "work"):
            d.mkdir(parents=True, exist_ok=True)
        self.storage_conf = root / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.storage}"\nrunroot = "{self.runroot}"\n'
        )
        self.containers_conf = root / "containers.conf"
        self.containers_conf.write_text(
            "[engine]\n"
            f'tmp_dir = "{self.runroot}/libpod"\n'
            'events_logger = "none"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'image_copy_tmp_dir = "{root}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{self.runroot}/networks"\n'
        )
        self.registries_conf = root / "registries.conf"
        self.registries_conf.write_text(
            "".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n\n' for host in registries)
        )
        self.auth_file = root / "auth.json"
        self.auth_file.write_text('{"auths":{}}')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "DOCKER_", "BUILDAH_"))}
        self.env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_RUNTIME_DIR=str(self.runroot / "xdg"),
            TMPDIR=str(root / "tmp"),
            CONTAINERS_STORAGE_CONF=str(self.storage_conf),
            CONTAINERS_CONF=str(self.containers_conf),
            CONTAINERS_REGISTRIES_CONF=str(self.registries_conf),
            REGISTRY_AUTH_FILE=str(self.auth_file),
        )
        (self.runroot / "xdg").mkdir(parents=True, exist_ok=True)
        self._counter = 0

    def auth_file_for(self, host: str, account: Account) -> Path:
        """A private auth file (for --authfile) holding `account`'s token for `host`."""
        name = re.sub(r"[^a-zA-Z0-9]+", "-", account.subject)
        return write_auth_config(self.root / "authfiles" / f"{name}.json", host, account.username, account.token)

    def workdir(self, name: str) -> Path:
        self._counter += 1
        d = self.root / "work" / f"{self._counter:03d}-{name}"
        d.mkdir(parents=True)
        return d

    def command(self, *argv: str) -> list[str]:
        """`argv` wrapped to run with this instance's private blob-info-cache (use with env=self.env)."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _ISOLATE, str(self.cache_dir), *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
        full = self.command(*argv)
        try:
            result = subprocess.run(
                full, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as e:
            raise ClientError(list(argv), None, f"(timed out after {timeout}s)") from e
        if check and result.returncode != 0:
            raise ClientError(list(argv), result)
        return result

    def _storage_flags(self) -> list[str]:
        return ["--root", str(self.storage), "--runroot", str(self.runroot), "--storage-driver", "vfs"]

    def podman(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("podman", *self._storage_flags(), *args, **kw)

    def buildah(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("buildah", *self._storage_flags(), *args, **kw)

    def skopeo(self, *args: str, **kw) -> subprocess.CompletedProcess:
        # skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF
        return self.run("skopeo", "--registries-conf", str(self.registries_conf), *args, **kw)

    # conveniences -------------------------------------------------------------------------
    def push(self, tool: str, local: str, dest: str, fmt: str | None = None, extra: tuple[str, ...] = ()) -> str:
        """Push with podman or buildah; returns the digest the client reports."""
        digestfile = self.workdir("digest") / "digest"
        args = ["push", "--tls-verify=false", "--digestfile", str(digestfile), *extra]
        if fmt:
            args += ["--format", fmt]
        getattr(self, tool)(*args, local, f"docker://{dest}")
        return digestfile.read_text().strip()

    def pull(self, ref: str, *extra: str) -> str:
        """podman pull; returns the local image ID."""
        out = self.podman("pull", "--tls-verify=false", *extra, ref).stdout.strip().splitlines()
        assert out, f"podman pull {ref} printed no image ID"
        return out[-1].strip()

    def image_inspect(self, ref: str) -> dict:
        return json.loads(self.podman("image", "inspect", ref).stdout)[0]

    def skopeo_inspect(self, ref: str, *extra: str) -> dict:
        return json.loads(self.skopeo("inspect", "--tls-verify=false", *extra, f"docker://{ref}").stdout)

    def read_image_files(self, image: str, paths: list[str]) -> dict[str, bytes]:
        """Contents of `paths` inside a local image (podman image mount; vfs gives a plain dir)."""
        mountpoint = Path(self.podman("image", "mount", image).stdout.strip().splitlines()[-1])
        try:
            return {p: (mountpoint / p.lstrip("/")).read_bytes() for p in paths}
        finally:
            self.podman("image", "unmount", image, check=False)


def make_clients(tmp_path_factory, registry: Registry, name: str, needs=("podman", "buildah", "skopeo")) -> Clients:
    require_binaries(*needs, "unshare", "mount", "sh")
    require_root()
    os.makedirs("/var/lib/containers", exist_ok=True)  # the bind-mount target must exist
    return Clients(tmp_path_factory.mktemp(name), [registry.host])


@pytest.fixture(scope="module")
def clients(tmp_path_factory, registry) -> Clients:
    """The clients that build and push (their storage keeps the built images for the module)."""
    return make_clients(tmp_path_factory, registry, "clients")


@pytest.fixture(scope="module")
def puller(tmp_path_factory, registry) -> Clients:
    """A second set of clients with empty storage: pulls fetch every layer from the registry."""
    return make_clients(tmp_path_factory, registry, "puller")


# --------------------------------------------------------------------------------------------
# building test images offline (FROM scratch, one layer per COPY)
# --------------------------------------------------------------------------------------------


@dataclass
class BuiltImage:
    name: str  # local name in the builder's storage
    layers: list[dict[str, bytes]]
    fmt: str  # "docker" or "oci"
    arch: str = "amd64"
    image_id: str = ""

    @property
    def files(self) -> dict[str, bytes]:
        merged: dict[str, bytes] = {}
        for layer in self.layers:
            merged.update(layer)
        return merged

    @property
    def manifest_type(self) -> str:
        return DOCKER_MANIFEST if self.fmt == "docker" else OCI_MANIFEST


def random_layers(sizes: list[list[int]], tag: str) -> list[dict[str, bytes]]:
    """Layers of random files; sizes[i] lists the file sizes of layer i."""
    layers = []
    for i, file_sizes in enumerate(sizes):
        files = {f"/data/{tag}/layer{i}/file{j}.bin": os.urandom(n) for j, n in enumerate(file_sizes)}
        files[f"/etc/{tag}-layer{i}.txt"] = f"layer {i} of {tag}\n".encode()
        layers.append(files)
    return layers


def build_image(
    clients: Clients, name: str, layers: list[dict[str, bytes]], fmt: str = "docker", arch: str | None = None
) -> BuiltImage:
    ctx = clients.workdir("build-" + re.sub(r"[^a-zA-Z0-9]+", "-", name))
    lines = ["FROM scratch"]
    for i, files in enumerate(layers):
        for path, data in files.items():
            target = ctx / f"layer{i}" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        lines.append(f"COPY layer{i}/ /")
    lines.append(f'LABEL org.example.e2e="{name}"')
    (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
    args = ["build", "--layers", "--format", fmt, "-t", name, "-f", str(ctx / "Containerfile")]
    if arch:
        args += ["--arch", arch]
    clients.buildah(*args, str(ctx))
    image = BuiltImage(name=name, layers=layers, fmt=fmt, arch=arch or "amd64")
    image.image_id = clients.image_inspect(name)["Id"]
    return image


# --------------------------------------------------------------------------------------------
# RSS sampling
# --------------------------------------------------------------------------------------------


class RSSSampler:
    """Reads VmRSS of a process every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []  # KiB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.samples.append(int(line.split()[1]))
                            break
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.samples, default=0) / 1024
