"""The HTTPS listener of a real `okura serve` (registry/server/tls.py): what it accepts and
refuses, certificates replaced under it as cert-manager, the kubelet and a hand-run `cp` do,
bad files at start, and client certificates (mutual TLS). Certificates come from a test CA
(tests/support/tls.py); the server is tests/support/kubectl.py's KubeServer (auth on, so
GET /v2/ answers 401 with a Bearer challenge)."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from registry.config import TLSConfig
from registry.server.tls import build_context
from tests.support.kubectl import KubeServer
from tests.support.ports import allocate_port
from tests.support.processes import okura_env, serve_argv
from tests.support.sockets import read_until_closed
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.e2e

ROTATION_DEADLINE = 10.0  # the server looks at its files at most once a second, on a handshake
IO_TIMEOUT = 5.0

# -- clients -------------------------------------------------------------------------------


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the DER of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def client_context(
    ca: CertificateAuthority, cert: tuple[Path, Path] | None = None, tls_max: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """A verifying client trusting only `ca`, with a client certificate if given."""
    context = ssl.create_default_context(cafile=str(ca.path))
    if cert:
        context.load_cert_chain(*cert)
    if tls_max:
        context.maximum_version = tls_max
    return context


@dataclass
class Handshake:
    fingerprint: str
    version: str
    cipher: str
    alpn: str | None


def handshake(port: int, context: ssl.SSLContext, server_name: str = "127.0.0.1") -> Handshake:
    """A new connection, its handshake (certificate and host name verified), then closed.
    An IP address as `server_name` sends no SNI; a DNS name does."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        cipher, alpn = tls.cipher()[0], tls.selected_alpn_protocol()
        return Handshake(hashlib.sha256(der).hexdigest(), tls.version() or "", cipher, alpn)


def get(port: int, context: ssl.SSLContext, path: str = "/healthz") -> tuple[int, bytes]:
    """One HTTP/1.1 request on a new TLS connection: (status, body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def reply_to_client_hello(port: int, context: ssl.SSLContext) -> bytes:
    """The ClientHello `context` makes (checked to be one: the client itself offers what is
    being tested), sent by hand; the server's first answer: b"" if it closes the connection,
    else what it sent first (a server that accepts sends a handshake record, 0x16: its
    ServerHello; one that refuses may send an alert record, 0x15)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and hello[5:6] == b"\x01", "the client did not produce a ClientHello"
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(hello)
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""
        except TimeoutError:
            raise AssertionError(f"no answer to a ClientHello and no close within {IO_TIMEOUT}s") from None


def refused_at_hello(reply: bytes) -> bool:
    """No ServerHello: the connection closed silently or with an alert record (0x15)."""
    return reply == b"" or reply[:1] == b"\x15"


def exchange(port: int, context: ssl.SSLContext) -> str:
    """GET /healthz on a new connection: "200" (or another status), or "refused: REASON" when
    the TLS handshake fails or the server ends the connection before answering. TLS 1.3
    clients finish their side of the handshake before the server has checked their
    certificate, so a refused client certificate may show only on the first read."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(tls)
    except ssl.SSLError as e:
        return f"refused: {e.reason or e}"
    except (ConnectionResetError, BrokenPipeError) as e:
        return f"refused: {type(e).__name__}"
    if not answer:
        return "refused: closed without an answer"
    return answer.split(b" ", 2)[1].decode()


# -- servers -------------------------------------------------------------------------------


class HttpsServer(KubeServer):
    """KubeServer on certificate files of the test's choosing, optionally asking for client
    certificates signed by a CA of the `client_ca` bundle (then its own readiness probe and
    log sync present `client_cert`)."""

    def __init__(
        self,
        data_dir: Path,
        ca: CertificateAuthority,
        cert: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
    ):
        env = {}
        if cert:
            env = {"OKURA_HTTP_TLS_CERTIFICATE": str(cert[0]), "OKURA_HTTP_TLS_KEY": str(cert[1])}
        if client_ca:
            env["OKURA_HTTP_TLS_CLIENT_CA"] = str(client_ca)
        super().__init__(data_dir, ca, env=env)
        self.client_cert = client_cert

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.ca, self.client_cert)


@pytest.fixture
def ca(tmp_path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


@pytest.fixture
def start_https(tmp_path, ca) -> Iterator[Callable[..., HttpsServer]]:
    """Start HttpsServers on data dirs under tmp_path (logs where the robustness conftest
    attaches them to a failure); all stopped after the test."""
    started: list[HttpsServer] = []

    def factory(**kw) -> HttpsServer:
        server = HttpsServer(tmp_path / f"data{len(started)}", kw.pop("ca", ca), **kw)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[HttpsServer]:
    """One server for the tests that only connect to it."""
    root = tmp_path_factory.mktemp("https")
    server = HttpsServer(root / "data", CertificateAuthority.create(root / "ca"))
    server.start()
    yield server
    server.stop()


# -- what the listener accepts and refuses -------------------------------------------------


def test_https_answers_and_plain_http_gets_nothing(shared_server):
    """GET /v2/ over verified TLS is 401 with a Bearer challenge, /healthz is 200; the served
    certificate is the configured one, with and without SNI; plain HTTP on the port gets no
    HTTP answer and leaves the server serving, with nothing logged as an error."""
    server = shared_server
    context = server.ssl_context()
    mark = server.mark()
    with httpx.Client(base_url=server.url, verify=context, timeout=10) as client:
        r = client.get("/v2/")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer "), r.headers
        assert client.get("/healthz").status_code == 200
    for name in ("127.0.0.1", "localhost"):  # without SNI, and with it
        assert handshake(server.port, context, name).fingerprint == fingerprint(server.cert_path)
    # Plain HTTP to the TLS port: the server closes the connection without an HTTP answer.
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert not read_until_closed(sock).startswith(b"HTTP/")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=IO_TIMEOUT)
    assert get(server.port, context)[0] == 200  # and it still serves HTTPS
    assert server.server_errors(mark) == []


def test_tls13_and_tls12_aead_suites_and_alpn_http11(shared_server):
    server = shared_server
    assert handshake(server.port, server.ssl_context()).version == "TLSv1.3"
    for cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"):
        context = client_context(server.ca, tls_max=ssl.TLSVersion.TLSv1_2)
        context.set_ciphers(cipher)
        result = handshake(server.port, context)
        assert (result.version, result.cipher) == ("TLSv1.2", cipher)
    for offered in (["h2", "http/1.1"], ["http/1.1"]):
        context = server.ssl_context()
        context.set_alpn_protocols(offered)
        assert handshake(server.port, context).alpn == "http/1.1"
    context = server.ssl_context()
    context.set_alpn_protocols(["h2"])  # nothing in common: no ALPN, the handshake goes on
    assert handshake(server.port, context).alpn is None


def legacy_client(tls_max: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    """A client willing to offer what a modern OpenSSL refuses by default (security level 0)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = tls_max
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_old_protocols_and_weak_cipher_suites_are_refused(shared_server):
    """Each client really offers the old thing (its ClientHello is made and sent by hand);
    the server answers none with a ServerHello. The same client with an AEAD ECDHE suite is
    answered, so the refusals are about the protocol version or the suite."""
    server = shared_server
    mark = server.mark()
    refused = {
        "TLS 1.1": legacy_client(ssl.TLSVersion.TLSv1_1, "ALL"),
        "TLS 1.0": legacy_client(ssl.TLSVersion.TLSv1, "ALL"),
        "AES128-SHA (no forward secrecy, CBC)": legacy_client(ssl.TLSVersion.TLSv1_2, "AES128-SHA"),
        "AES128-GCM-SHA256 (no forward secrecy)": legacy_client(ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256"),
        "ECDHE-ECDSA-AES128-SHA (CBC)": legacy_client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA"),
        "ECDHE-ECDSA-AES256-SHA384 (CBC)": legacy_client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-SHA384"),
    }
    for what, context in refused.items():
        reply = reply_to_client_hello(server.port, context)
        assert refused_at_hello(reply), f"{what}: the server answered {reply[:16].hex()}"
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(server.port, context)
    accepted = legacy_client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert reply_to_client_hello(server.port, accepted)[:1] == b"\x16"
    assert handshake(server.port, accepted).version == "TLSv1.2"
    assert server.server_errors(mark) == []  # refused handshakes are not errors of the server


# -- certificates replaced under a running server -------------------------------------------


class SecretVolume:
    """A directory written as the kubelet writes a Secret volume (cert-manager's certificates
    reach pods this way): tls.crt and tls.key are symlinks into ..data, a symlink to a
    timestamped directory; an update writes a new timestamped directory, points a new
    ..data_tmp at it and renames that over ..data, so one rename switches both files."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self.generation = 0

    @property
    def cert(self) -> Path:
        return self.path / "tls.crt"

    @property
    def key(self) -> Path:
        return self.path / "tls.key"

    def write(self, cert: Path, key: Path) -> None:
        self.generation += 1
        data_link = self.path / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        fresh = self.path / f"..2024_06_11_10_00_{self.generation:02d}.{os.getpid()}"
        fresh.mkdir()
        (fresh / "tls.crt").write_bytes(cert.read_bytes())
        (fresh / "tls.key").write_bytes(key.read_bytes())
        tmp = self.path / "..data_tmp"
        os.symlink(fresh.name, tmp)
        os.replace(tmp, data_link)
        for name in ("tls.crt", "tls.key"):
            if not (self.path / name).is_symlink():
                os.symlink(f"..data/{name}", self.path / name)
        if old:
            for f in (self.path / old).iterdir():
                f.unlink()
            (self.path / old).rmdir()


def write_in_place(target: Path, source: Path) -> None:
    """`cp source target`: truncate and rewrite the same file."""
    with open(target, "r+b") as f:
        f.truncate(0)
        f.write(source.read_bytes())


def write_and_replace(target: Path, source: Path) -> None:
    """A new file beside the target, renamed over it (one atomic step per file)."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


def handshakes_until(
    server: HttpsServer, done: Callable[[Handshake], bool], allowed: set[str], what: str, **kw
) -> list[Handshake]:
    """New connections, one after another (each handshake lets the server look at its files),
    until `done` accepts one; each must succeed with a certificate in `allowed`. The
    handshakes made; fails after ROTATION_DEADLINE."""
    context = server.ssl_context()
    seen: list[Handshake] = []
    deadline = time.monotonic() + ROTATION_DEADLINE
    while True:
        for name in ("127.0.0.1", "localhost"):
            result = handshake(server.port, context, name)
            seen.append(result)
            assert result.fingerprint in allowed, f"an unexpected certificate after {len(seen)} handshakes"
            if done(result):
                return seen
        assert time.monotonic() < deadline, f"{what}: not within {ROTATION_DEADLINE}s ({len(seen)} handshakes)"
        time.sleep(0.02)


def log_shows(server: HttpsServer, since: int, text: str) -> Callable[[Handshake], bool]:
    return lambda _: text in server.log_text(since)


class KeptConnection:
    """An HTTP/1.1 keep-alive connection opened before a rotation."""

    def __init__(self, server: HttpsServer):
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context(), timeout=10)
        assert self.get() == 200
        self.sock = self.conn.sock
        self.fingerprint = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def get(self) -> int:
        self.conn.request("GET", "/healthz")
        response = self.conn.getresponse()
        response.read()
        assert not response.will_close, "the server did not keep the connection open"
        return response.status

    def still_works(self) -> None:
        assert self.get() == 200
        assert self.conn.sock is self.sock, "the request needed a new connection"
        assert hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest() == self.fingerprint

    def close(self) -> None:
        self.conn.close()


def test_rotation_by_secret_volume_swap(start_https, ca, tmp_path):
    """The kubelet's atomic swap of a Secret volume: new connections get the new certificate
    within the deadline, every handshake on the way succeeds (old or new certificate), and a
    keep-alive connection opened before the swap still answers on the same socket."""
    volume = SecretVolume(tmp_path / "secret")
    volume.write(*ca.issue("server-v1"))
    server = start_https(cert=(volume.cert, volume.key))
    old = fingerprint(volume.cert)
    assert handshake(server.port, server.ssl_context()).fingerprint == old
    kept = KeptConnection(server)
    mark = server.mark()

    new_cert, new_key = ca.issue("server-v2")
    new = fingerprint(new_cert)
    assert new != old
    volume.write(new_cert, new_key)
    handshakes_until(server, lambda h: h.fingerprint == new, {old, new}, "the new certificate")

    kept.still_works()
    kept.close()
    after = [handshake(server.port, server.ssl_context(), name) for name in ("127.0.0.1", "localhost")] * 2
    assert {h.fingerprint for h in after} == {new}  # both with and without SNI, and it stays
    context = server.ssl_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake(server.port, context).alpn == "http/1.1"  # the reloaded context keeps ALPN
    with httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=10) as client:
        assert client.get("/v2/").status_code == 401
    assert "TLS certificate reloaded" in server.log_text(mark)
    assert server.server_errors(mark) == []


@pytest.mark.parametrize("write", [write_in_place, write_and_replace], ids=["in-place", "rename"])
def test_rotation_one_file_after_the_other(start_https, ca, write):
    """The certificate is written first and the key a moment later, each in place (`cp`) or
    by rename. While only the certificate is new the files do not load together: the
    server goes on serving the old certificate (checked on every handshake until its log
    says it saw the half-written state), then serves the new one once the key arrives."""
    server = start_https()
    old = fingerprint(server.cert_path)
    kept = KeptConnection(server)
    new_cert, new_key = ca.issue("server-v2")
    new = fingerprint(new_cert)
    mark = server.mark()

    write(server.cert_path, new_cert)
    half = handshakes_until(server, log_shows(server, mark, "do not load yet"), {old}, "the half-written state")
    assert half and {h.fingerprint for h in half} == {old}
    assert "TLS certificate reloaded" not in server.log_text(mark)
    kept.still_works()

    write(server.key_path, new_key)
    handshakes_until(server, lambda h: h.fingerprint == new, {old, new}, "the new certificate")
    assert {handshake(server.port, server.ssl_context()).fingerprint for _ in range(3)} == {new}
    kept.still_works()
    kept.close()
    assert "TLS certificate reloaded" in server.log_text(mark)
    errors = [line for line in server.server_errors(mark) if "do not load yet" not in line]
    assert errors == []


def test_garbage_in_the_files_keeps_the_old_certificate(start_https, ca):
    """A truncated certificate file, then an empty key (a write cut short): still the old
    certificate on every handshake; good files again: the new one."""
    server = start_https()
    old = fingerprint(server.cert_path)
    new_cert, new_key = ca.issue("server-v2")
    new = fingerprint(new_cert)
    mark = server.mark()
    pem = new_cert.read_bytes()
    server.cert_path.write_bytes(pem[: len(pem) // 2])
    handshakes_until(server, log_shows(server, mark, "do not load yet"), {old}, "the truncated certificate")
    server.key_path.write_bytes(b"")
    mark = server.mark()
    handshakes_until(server, log_shows(server, mark, "do not load yet"), {old}, "the empty key")
    server.cert_path.write_bytes(pem)
    server.key_path.write_bytes(new_key.read_bytes())
    handshakes_until(server, lambda h: h.fingerprint == new, {old, new}, "the new certificate")


# -- bad files at start ------------------------------------------------------------------------


# case -> (environment changes, what the line must say); None unsets a variable. Paths are
# placeholders: cert/key (a good pair), other_key (another certificate's key), garbage, empty,
# missing (a file in a directory that does not exist), dir (a directory).
BAD_FILES = {
    "missing-key": ({"OKURA_HTTP_TLS_KEY": "missing"}, ("missing", "No such file")),
    "missing-cert": ({"OKURA_HTTP_TLS_CERTIFICATE": "missing"}, ("missing", "No such file")),
    "key-of-another-cert": ({"OKURA_HTTP_TLS_KEY": "other_key"}, ("cert", "other_key")),
    "garbage-cert": ({"OKURA_HTTP_TLS_CERTIFICATE": "garbage"}, ("garbage",)),
    "empty-cert": ({"OKURA_HTTP_TLS_CERTIFICATE": "empty"}, ("empty",)),
    "garbage-key": ({"OKURA_HTTP_TLS_KEY": "garbage"}, ("garbage",)),
    "cert-is-a-directory": ({"OKURA_HTTP_TLS_CERTIFICATE": "dir"}, ("dir",)),
    "missing-client-ca": ({"OKURA_HTTP_TLS_CLIENT_CA": "missing"}, ("http.tls.client_ca", "missing")),
    "garbage-client-ca": ({"OKURA_HTTP_TLS_CLIENT_CA": "garbage"}, ("http.tls.client_ca", "garbage")),
    "key-without-cert": ({"OKURA_HTTP_TLS_CERTIFICATE": None}, ()),
}


@pytest.mark.parametrize(("case", "workers"), [*((case, 1) for case in BAD_FILES), ("missing-key", 2)])
def test_bad_files_stop_serve_at_once_with_one_line(ca, tmp_path, case, workers):
    """`okura serve` checks the files before anything else: it exits 2 with one line on
    stderr naming the file, no traceback, nothing on stdout, and no data directory made."""
    cert, key = ca.issue("server")
    _, other_key = ca.issue("other")
    paths = {
        "cert": cert,
        "key": key,
        "other_key": other_key,
        "garbage": tmp_path / "garbage.pem",
        "empty": tmp_path / "empty.pem",
        "missing": tmp_path / "nowhere" / "missing.pem",
        "dir": tmp_path / "a-directory",
    }
    paths["garbage"].write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    paths["empty"].write_bytes(b"")
    paths["dir"].mkdir()
    env: dict[str, str | None] = {"OKURA_HTTP_TLS_CERTIFICATE": str(cert), "OKURA_HTTP_TLS_KEY": str(key)}
    changes, needles = BAD_FILES[case]
    env.update({k: str(paths[v]) if v else None for k, v in changes.items()})
    data_dir = tmp_path / "data"
    argv = serve_argv(data_dir, allocate_port(), *(["--workers", str(workers)] if workers > 1 else []))
    child_env = okura_env(OKURA_LOG_LEVEL="info", **{k: v for k, v in env.items() if v is not None})
    result = subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("okura serve: invalid configuration: http.tls"), lines[0]
    for needle in needles:
        assert str(paths.get(needle, needle)) in lines[0], lines[0]
    assert result.stdout == ""
    assert not data_dir.exists(), "serve went on past the files"


# -- mutual TLS --------------------------------------------------------------------------------


def test_mutual_tls(start_https, ca, tmp_path):
    """With http.tls.client_ca: a client without a certificate, with one from another CA,
    with an expired one, or with a server (not client) certificate of the right CA is refused,
    over TLS 1.3 and 1.2; with a client certificate from the configured CA it is answered."""
    clients_ca = CertificateAuthority.create(tmp_path / "clients-ca", name="okura test clients CA")
    other_ca = CertificateAuthority.create(tmp_path / "other-ca", name="some other CA")
    good = clients_ca.issue_client("alice")
    server = start_https(client_ca=clients_ca.path, client_cert=good)
    mark = server.mark()
    refused = {
        "no certificate": None,
        "another CA": other_ca.issue_client("mallory"),
        "expired": clients_ca.issue_client("old-alice", valid_days=-1 / 24 / 60),
        "a server certificate": clients_ca.issue("not-a-client"),
    }
    for tls_max in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        assert exchange(server.port, client_context(ca, good, tls_max)) == "200"
        for what, cert in refused.items():
            outcome = exchange(server.port, client_context(ca, cert, tls_max))
            assert outcome.startswith("refused"), f"{what} over {tls_max.name}: {outcome}"
        with pytest.raises(ssl.SSLError):  # TLS 1.2: the handshake itself fails
            handshake(server.port, client_context(ca, None, ssl.TLSVersion.TLSv1_2))
    with httpx.Client(base_url=server.url, verify=client_context(ca, good), timeout=10) as client:
        assert client.get("/v2/").status_code == 401  # the certificate opens TLS, not the registry
    assert server.server_errors(mark) == []


def test_client_ca_rotation(start_https, ca, tmp_path):
    """The client CA bundle is watched like the certificate: replaced by another CA's, new
    connections need a certificate of the new CA (an old client's is refused), while a
    keep-alive connection authenticated before the change goes on."""
    old_ca = CertificateAuthority.create(tmp_path / "clients-2023", name="clients 2023")
    new_ca = CertificateAuthority.create(tmp_path / "clients-2024", name="clients 2024")
    old_client, new_client = old_ca.issue_client("alice"), new_ca.issue_client("alice")
    bundle = tmp_path / "client-ca.pem"
    bundle.write_bytes(old_ca.path.read_bytes())
    server = start_https(client_ca=bundle, client_cert=old_client)
    assert exchange(server.port, client_context(ca, new_client)).startswith("refused")
    kept = KeptConnection(server)
    mark = server.mark()

    write_and_replace(bundle, new_ca.path)
    server.client_cert = new_client  # for the server's own log sync
    deadline = time.monotonic() + ROTATION_DEADLINE
    while (outcome := exchange(server.port, client_context(ca, new_client))) != "200":
        assert outcome.startswith("refused"), outcome
        assert time.monotonic() < deadline, f"the new client CA was not trusted within {ROTATION_DEADLINE}s"
        time.sleep(0.05)
    assert exchange(server.port, client_context(ca, old_client)).startswith("refused")
    assert exchange(server.port, client_context(ca, None)).startswith("refused")
    kept.still_works()
    kept.close()
    assert "TLS certificate reloaded" in server.log_text(mark)
    assert server.server_errors(mark) == []


# -- the test CA itself --------------------------------------------------------------------------


def memory_handshake(server_context: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A TLS handshake between two contexts through memory buffers, no sockets."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server_side = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for side, outgoing, peer_in in ((client_side, c_out, s_in), (server_side, s_out, c_in)):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            peer_in.write(outgoing.read())
        if done == 2:
            return client_side
    raise AssertionError("the handshake did not finish")


def test_an_expired_server_certificate_is_refused_by_a_verifying_client(ca):
    """The listener's own context (build_context) with a certificate from the test CA: a
    verifying client accepts a current one and refuses one that expired a minute ago."""
    current = build_context(TLSConfig(*map(str, ca.issue("current"))))
    assert memory_handshake(current, client_context(ca)).version() == "TLSv1.3"
    expired = build_context(TLSConfig(*map(str, ca.issue("expired", valid_days=-1 / 24 / 60))))
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        memory_handshake(expired, client_context(ca))
    assert info.value.verify_code == 10, info.value.verify_message  # X509_V_ERR_CERT_HAS_EXPIRED
