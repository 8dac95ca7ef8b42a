"""Real clients against a real `okura serve` over HTTPS, with TLS verification on and a CA the
test makes (tests/support/tls.py): podman build/push/pull and skopeo inspect/copy trusting it
through --cert-dir; docker through a private dockerd trusting it through
/etc/docker/certs.d/HOST:PORT/ca.crt; curl with --cacert; a certificate replaced by one from
another CA while a rate-limited download runs; and servers the clients must refuse (an expired
certificate, a certificate for another host).

Auth is off (GET /v2/ answers 200): what is tested is TLS. One server per module for the
client tests; the rotation and the refused certificates get servers of their own.

dockerd treats every registry in 127.0.0.0/8 as insecure whatever --insecure-registry says
(it then skips certificate verification and never reads certs.d), so docker reaches the module
server through this machine's non-loopback IPv4 address, which the server certificate names
too; without such an address the docker test is skipped (failed under
OKURA_TEST_REQUIRE_CLIENTS=1)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.blobs import MiB, PatternBlob
from tests.support.clients import Clients, require_binaries, require_clients, unavailable
from tests.support.digests import sha256_file
from tests.support.docker import Docker, pushed_digest, start_dockerd
from tests.support.images import BuiltImage, merged_files, random_layers, write_build_context
from tests.support.kubectl import KubeServer, trust_dir
from tests.support.media_types import DOCKER_MANIFEST, OCI_MANIFEST
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.e2e

ROTATION_DEADLINE = 10.0  # the server looks at its files at most once a second, on a handshake
CURL_TIMEOUT = 30.0
BIG_BLOB = 64 * MiB
DOWNLOAD_RATE = 4 * MiB  # bytes/s: the download outlasts the rotation (~16 s against ~1-2 s)
CERTS_D = Path("/etc/docker/certs.d")  # where a rootful dockerd looks for a registry's CA
MANIFEST_TYPES = [DOCKER_MANIFEST, OCI_MANIFEST]


def host_ipv4() -> str | None:
    """This machine's IPv4 address on its default route (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


class TlsServer(KubeServer):
    """`okura serve` over HTTPS with auth off, on certificate files of the test's choosing,
    listening on 127.0.0.1 and, if given, on `also_on` as well (a non-loopback address for
    docker: the server then listens on 0.0.0.0). Ready once
    uvicorn holds the port and GET /v2/ answers 200 over TLS verified with `ca` (unverified
    when `verified` is false: a certificate the clients are meant to refuse)."""

    def __init__(
        self,
        data_dir: Path,
        ca: CertificateAuthority,
        cert: tuple[Path, Path],
        also_on: str | None = None,
        verified: bool = True,
    ):
        tls = {"OKURA_HTTP_TLS_CERTIFICATE": str(cert[0]), "OKURA_HTTP_TLS_KEY": str(cert[1])}
        super().__init__(data_dir, ca, env={**tls, "OKURA_AUTH_ENABLED": "false"})
        self.also_on = also_on
        self.bind = "0.0.0.0" if also_on else "127.0.0.1"
        self.verified = verified

    def answers_ready(self, response: httpx.Response) -> bool:
        return response.status_code == 200  # auth is off here

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.path))
        if not self.verified:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def manifest_digest(self, repo: str, tag: str) -> str:
        with httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=30) as c:
            r = c.get(f"/v2/{repo}/manifests/{tag}", headers=[("Accept", t) for t in MANIFEST_TYPES])
            assert r.status_code == 200, r.text
            return r.headers["Docker-Content-Digest"]


@contextlib.contextmanager
def running(server: TlsServer) -> Iterator[TlsServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- clients ---------------------------------------------------------------------------------


def curl(*args: str, timeout: float = CURL_TIMEOUT) -> subprocess.CompletedProcess:
    """curl (no ~/.curlrc, no proxy from the environment) with ARGS; its output as text."""
    return subprocess.run(["curl", *curl_argv(*args)], env=curl_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def curl_argv(*args: str) -> list[str]:
    return ["-q", "-sS", "--connect-timeout", "5", *args]


def curl_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "CURL_HOME"}


def served_fingerprint(port: int) -> str:
    """SHA-256 of the certificate a new connection to 127.0.0.1:`port` is shown (not verified)."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def file_fingerprint(cert_path: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_path.read_text())).hexdigest()


def replace_file(target: Path, source: Path) -> None:
    """Write a new file beside `target` and rename it over it (one atomic step)."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)


def fails_with(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed and its stderr names every one of `needles`; that stderr."""
    assert result.returncode != 0, f"expected a failure, got exit 0:\n{result.stdout}\n{result.stderr}"
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in stderr (exit {result.returncode}):\n{result.stderr}"
    return result.stderr


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tls-clients")


@pytest.fixture(scope="module")
def ca(root) -> CertificateAuthority:
    return CertificateAuthority.create(root / "ca")


@pytest.fixture(scope="module")
def server(root, ca) -> Iterator[TlsServer]:
    """The module's server: a certificate for 127.0.0.1, localhost and (for docker) this
    machine's non-loopback address, on which it then listens as well."""
    address = host_ipv4()
    hosts = ("127.0.0.1", "localhost", *((address,) if address else ()))
    with running(TlsServer(root / "data", ca, ca.issue("server", hosts=hosts), also_on=address)) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_server_errors(request):
    """After every test on the module's server: it logged no 5xx answer and no error, and runs."""
    if "server" not in request.fixturenames:
        yield
        return
    server: TlsServer = request.getfixturevalue("server")
    mark = server.mark()
    yield
    assert server.alive(), f"the server exited:\n{server.log_tail()}"
    assert server.server_errors(mark) == []


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> Clients:
    """podman and skopeo with a private configuration; no registry marked insecure."""
    require_clients("podman", "skopeo")
    return Clients(tmp_path_factory.mktemp("tlsb"), [])  # short: podman wants a runroot under 50 characters


@pytest.fixture(scope="module")
def puller(tmp_path_factory) -> Clients:
    """A second private podman with empty storage: a pull fetches every layer."""
    require_clients("podman")
    return Clients(tmp_path_factory.mktemp("tlsp"), [])


@pytest.fixture(scope="module")
def image(builder) -> BuiltImage:
    """An image built by `podman build`: FROM scratch, one small layer per COPY."""
    layers = random_layers([[40_000, 3], [9_000]], "tls-podman")
    name = "localhost/e2e/tls-podman"
    ctx = builder.workdir("build-tls-podman")
    containerfile = write_build_context(ctx, layers, "Containerfile")
    builder.podman("build", "--layers", "--format", "docker", "-t", name, "-f", str(containerfile), str(ctx))
    built = BuiltImage(name=name, layers=layers, fmt="docker")
    built.image_id = builder.image_inspect(name)["Id"]
    return built


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Docker]:
    """A private dockerd for which no registry of this test is insecure (an unrelated one is)."""
    yield from start_dockerd("insecure.invalid:5000")


def podman_push(clients: Clients, cert_dir: Path, local: str, dest: str) -> str:
    """podman push with TLS verified against the CA in `cert_dir`; the digest podman reports."""
    digestfile = clients.workdir("digest") / "digest"
    clients.podman("push", "--tls-verify=true", "--cert-dir", str(cert_dir), "--digestfile", str(digestfile),
                   local, f"docker://{dest}")  # fmt: skip
    return digestfile.read_text().strip()


# -- podman and skopeo -----------------------------------------------------------------------


def test_podman_build_push_pull_and_skopeo_verify_with_cert_dir(server, ca, builder, puller, image):
    trust = trust_dir(ca)
    ref = f"{server.host}/tls/podman:v1"
    # Verification is on: without the CA the same push is refused.
    refused = builder.podman("push", "--tls-verify=true", image.name, f"docker://{ref}", check=False)
    fails_with(refused, "x509: certificate signed by unknown authority")

    digest = podman_push(builder, trust, image.name, ref)
    assert server.manifest_digest("tls/podman", "v1") == digest

    out = puller.podman("pull", "--tls-verify=true", "--cert-dir", str(trust), ref).stdout.strip().splitlines()
    assert out and out[-1].strip() == image.image_id
    assert puller.read_image_files(ref, list(image.files)) == image.files

    inspected = json.loads(
        builder.skopeo("inspect", "--tls-verify=true", "--cert-dir", str(trust), f"docker://{ref}").stdout
    )
    assert inspected["Digest"] == digest
    assert len(inspected["Layers"]) == len(image.layers)
    refused = builder.skopeo("inspect", "--tls-verify=true", f"docker://{ref}", check=False)
    fails_with(refused, "x509: certificate signed by unknown authority")

    copied = f"{server.host}/tls/skopeo:copied"
    digestfile = builder.workdir("skopeo-digest") / "digest"
    builder.skopeo("copy", "--src-tls-verify=true", "--dest-tls-verify=true", "--src-cert-dir", str(trust),
                   "--dest-cert-dir", str(trust), "--digestfile", str(digestfile),
                   f"docker://{ref}", f"docker://{copied}")  # fmt: skip
    assert digestfile.read_text().strip() == digest
    assert server.manifest_digest("tls/skopeo", "copied") == digest
    out = builder.skopeo("inspect", "--tls-verify=true", "--cert-dir", str(trust), f"docker://{copied}").stdout
    assert json.loads(out)["Digest"] == digest


# -- docker ----------------------------------------------------------------------------------


def test_docker_trusts_the_ca_from_certs_d(server, ca, dockerd):
    address = server.also_on
    if address is None:
        unavailable("no non-loopback IPv4 address: dockerd never verifies registries in 127.0.0.0/8")
    host = f"{address}:{server.port}"
    layers = random_layers([[60_000], [12_000, 1]], "tls-docker")
    write_build_context(dockerd.root / "ctx-tls", layers, "Dockerfile")
    ref = f"{host}/tls/docker:v1"
    dockerd.run("build", "-t", ref, str(dockerd.root / "ctx-tls"))
    # Not trusted yet: dockerd verifies this registry's certificate.
    fails_with(dockerd.run("push", ref, check=False), "x509: certificate signed by unknown authority")

    certs = CERTS_D / host
    made_certs_d = not CERTS_D.exists()
    certs.mkdir(parents=True)
    try:
        shutil.copyfile(ca.path, certs / "ca.crt")
        digest = pushed_digest(dockerd.run("push", ref).stdout, "v1")
        assert server.manifest_digest("tls/docker", "v1") == digest
        dockerd.run("rmi", ref)
        assert dockerd.run("images", "-q").stdout.strip() == ""
        assert f"Digest: {digest}" in dockerd.run("pull", ref).stdout
        files = dockerd.export(ref)
        for path, data in merged_files(layers).items():
            assert files.get(path) == data, f"{path} differs after docker push/pull"
        dockerd.run("rmi", ref)
    finally:
        shutil.rmtree(certs, ignore_errors=True)
        if made_certs_d:
            with contextlib.suppress(OSError):
                CERTS_D.rmdir()


# -- curl ------------------------------------------------------------------------------------


def test_curl_with_and_without_the_ca(server, ca):
    require_binaries("curl")
    url = f"{server.url}/v2/"
    result = curl("--cacert", str(ca.path), "-D", "-", "-o", "/dev/null", url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[1] == "200", result.stdout
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)}
    assert headers.get("docker-distribution-api-version") == "registry/2.0", result.stdout

    result = curl("-o", "/dev/null", url)  # the system's CAs only
    assert result.returncode == 60, (result.returncode, result.stderr)
    assert "certificate" in result.stderr, result.stderr
    other = CertificateAuthority.create(ca.directory.parent / "other-ca", name="some other CA")
    result = curl("--cacert", str(other.path), "-o", "/dev/null", url)
    assert result.returncode == 60, (result.returncode, result.stderr)


# -- rotation under a running download ----------------------------------------------------------


@pytest.fixture
def rotating(root, ca) -> Iterator[TlsServer]:
    """A server of its own on tls.crt/tls.key in a directory of their own (replaced by the test)."""
    tls = root / "rotating-tls"
    tls.mkdir()
    cert, key = ca.issue("rotating-v1")
    shutil.copyfile(cert, tls / "tls.crt")
    shutil.copyfile(key, tls / "tls.key")
    with running(TlsServer(root / "rotating-data", ca, (tls / "tls.crt", tls / "tls.key"))) as server:
        yield server


def test_rotation_to_a_new_ca_under_a_running_download(rotating, ca, root, builder, image):
    """A 64 MiB blob downloads at a limited rate (curl trusting only the old CA) while the
    files are replaced, by rename, with a certificate from a new CA: the download finishes
    intact on its one connection; new connections get the new certificate within the
    deadline (curl trusting the new CA succeeds, trusting the old one fails with exit 60), and
    podman trusting only the new CA pushes."""
    require_binaries("curl")
    server = rotating
    blob = PatternBlob(BIG_BLOB, seed=7)
    data = b"".join(blob.blocks())
    digest = blob.digest()
    with httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=120) as c:
        r = c.post("/v2/tls/big/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
    del data
    old_fingerprint = served_fingerprint(server.port)
    assert old_fingerprint == file_fingerprint(server.cert_path)

    new_ca = CertificateAuthority.create(root / "new-ca", name="okura test CA 2")
    new_cert, new_key = new_ca.issue("rotating-v2")
    new_fingerprint = file_fingerprint(new_cert)
    mark = server.mark()

    out = root / "big.blob"
    argv = ["curl", *curl_argv("--cacert", str(ca.path), "--limit-rate", str(DOWNLOAD_RATE), "-o", str(out),
                               "-w", "%{http_code} %{num_connects} %{size_download}",
                               f"{server.url}/v2/tls/big/blobs/{digest}")]  # fmt: skip
    download = subprocess.Popen(argv, env=curl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not (out.exists() and out.stat().st_size > 0):
            assert download.poll() is None, f"curl ended early: {download.communicate()}"
            assert time.monotonic() < deadline, "the download did not start within 10s"
            time.sleep(0.05)

        replace_file(server.cert_path, new_cert)  # then the key: a moment where they do not match
        replace_file(server.key_path, new_key)
        rotated_at = time.monotonic()
        while (result := curl("--cacert", str(new_ca.path), "-o", "/dev/null", f"{server.url}/v2/")).returncode:
            assert result.returncode == 60, (result.returncode, result.stderr)
            assert time.monotonic() - rotated_at < ROTATION_DEADLINE, "the new certificate was not served in time"
            time.sleep(0.1)
        assert download.poll() is None, "the download ended before the rotation: it proves nothing"
        assert served_fingerprint(server.port) == new_fingerprint
        server.ca = new_ca  # for the server's own log sync from now on
        result = curl("--cacert", str(ca.path), "-o", "/dev/null", f"{server.url}/v2/")
        assert result.returncode == 60, (result.returncode, result.stderr)

        pushed = podman_push(builder, trust_dir(new_ca), image.name, f"{server.host}/tls/rotated:v1")
        assert server.manifest_digest("tls/rotated", "v1") == pushed

        stdout, stderr = download.communicate(timeout=BIG_BLOB / DOWNLOAD_RATE + 30)
    finally:
        if download.poll() is None:
            download.kill()
            download.communicate()
    assert download.returncode == 0, stderr
    assert stdout.split() == ["200", "1", str(BIG_BLOB)]  # one connection: the one from before
    assert sha256_file(out) == digest
    out.unlink()
    assert "TLS certificate reloaded" in server.log_text(mark)
    assert server.server_errors(mark) == []


# -- certificates the clients refuse -----------------------------------------------------------


def test_expired_certificate_is_refused(root, ca, builder):
    require_binaries("curl")
    cert = ca.issue("expired", valid_days=-0.001)  # valid from five minutes ago until 86 s ago
    with running(TlsServer(root / "expired-data", ca, cert, verified=False)) as server:
        result = curl("--cacert", str(ca.path), "-o", "/dev/null", f"{server.url}/v2/")
        assert result.returncode == 60, (result.returncode, result.stderr)
        assert "expired" in result.stderr, result.stderr

        trust = str(trust_dir(ca))
        ref = f"{server.host}/tls/podman:v1"
        expired = "x509: certificate has expired or is not yet valid"
        fails_with(builder.podman("pull", "--tls-verify=true", "--cert-dir", trust, ref, check=False), expired)
        inspect = builder.skopeo("inspect", "--tls-verify=true", "--cert-dir", trust, f"docker://{ref}", check=False)
        fails_with(inspect, expired)
        assert server.server_errors(0) == []


def test_certificate_for_another_host_is_refused(root, ca, builder):
    require_binaries("curl")
    cert = ca.issue("elsewhere", hosts=("registry.example.com",))
    with running(TlsServer(root / "elsewhere-data", ca, cert, verified=False)) as server:
        result = curl("--cacert", str(ca.path), "-o", "/dev/null", f"{server.url}/v2/")
        assert result.returncode in (51, 60), (result.returncode, result.stderr)
        assert "127.0.0.1" in result.stderr, result.stderr
        # The same certificate, asked for by its name: accepted (only the name was wrong).
        by_name = f"https://registry.example.com:{server.port}/v2/"
        resolve = f"registry.example.com:{server.port}:127.0.0.1"
        result = curl("--cacert", str(ca.path), "--resolve", resolve, "-o", "/dev/null", "-w", "%{http_code}", by_name)
        assert (result.returncode, result.stdout) == (0, "200"), result.stderr

        trust = str(trust_dir(ca))
        ip = builder.skopeo("inspect", "--tls-verify=true", "--cert-dir", trust,
                            f"docker://{server.host}/tls/podman:v1", check=False)  # fmt: skip
        fails_with(ip, "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs")
        name = builder.skopeo("inspect", "--tls-verify=true", "--cert-dir", trust,
                              f"docker://localhost:{server.port}/tls/podman:v1", check=False)  # fmt: skip
        fails_with(name, "x509: certificate is valid for registry.example.com, not localhost")
        assert server.server_errors(0) == []
