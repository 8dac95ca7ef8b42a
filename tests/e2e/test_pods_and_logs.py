"""The registry's server processes as OpenShift's registry pods, and their logs: two real `okura
serve` processes (replicas registry-a and registry-b: one PostgreSQL database, one blob
directory, one certificate, auth on, heartbeats every second and lost after three) driven by
`okura get pods`, `okura logs` and the real kubectl.

kubectl talks to registry-a only: registry-b's logs reach it through registry-a, which forwards
the request. The tests share the two servers and run in order: the restart and the kill -9 of
registry-b come last. Needs PostgreSQL (skipped without one) and kubectl."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from registry.api.pod_logs import parse_time_ns
from registry.runtime import version
from tests.support.clients import Account
from tests.support.kubectl import Kubectl, KubeServer, Watch, parse_table, require_kubectl
from tests.support.logs import parse_logfmt
from tests.support.postgres import create_database, drop_database
from tests.support.processes import okura_command, okura_env, track
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.e2e

NS = "openshift-image-registry"
A, B = "registry-a", "registry-b"
HEARTBEAT_TIMEOUT = 3.0
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z time=\"")


@dataclass
class Cluster:
    a: KubeServer
    b: KubeServer
    admin: Account
    kubectl: Kubectl

    def okura(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`okura ARGS` on the replicas' database, with their configuration (as an admin would)."""
        return self.a.okura(*args, check=check)

    def pods(self, *args: str) -> dict[str, dict[str, str]]:
        """`okura get pods`: NAME -> its columns."""
        header, rows = parse_table(self.okura("get", "pods", *args).stdout)
        return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    require_kubectl()
    root = tmp_path_factory.mktemp("pods")
    pg_url = asyncio.run(create_database("okura_pods"))
    ca = CertificateAuthority.create(root / "ca")
    certificate, key = ca.issue("replicas")  # one certificate for both, as replicas of a deployment share one
    env = {
        "OKURA_DATABASE_URL": pg_url,
        "OKURA_STORAGE_FILESYSTEM_ROOT": str(root / "blobs"),
        "OKURA_HTTP_TLS_CERTIFICATE": str(certificate),
        "OKURA_HTTP_TLS_KEY": str(key),
        "OKURA_INSTANCES_HEARTBEAT_INTERVAL": "1s",
        "OKURA_INSTANCES_HEARTBEAT_TIMEOUT": f"{HEARTBEAT_TIMEOUT:g}s",
    }
    a = KubeServer(root / A, ca, env={**env, "OKURA_HTTP_INSTANCE_NAME": A}, name=A)
    b = KubeServer(root / B, ca, env={**env, "OKURA_HTTP_INSTANCE_NAME": B}, name=B)
    try:
        a.start()  # migrates the schema; registry-b finds it current
        b.start()
        admin = a.account("chief", ("cluster-admin", None))
        kubeconfig = a.kubeconfig(root / "kubeconfig.yaml", admin.token, namespace=NS, server=a.url)
        yield Cluster(a, b, admin, Kubectl(kubeconfig, root / "kubectl-home"))
    finally:
        for server in (a, b):
            server.stop()
        asyncio.run(drop_database(pg_url))


@pytest.fixture(autouse=True)
def _no_server_errors(cluster):
    """After every test: no replica logged an error or a 5xx answer (a log asked of a lost
    replica is the one 503 expected)."""
    marks = {s: s.mark() for s in (cluster.a, cluster.b) if s.alive()}
    yield
    for server, mark in marks.items():
        if server.alive():
            errors = [e for e in server.server_errors(mark) if not ("route=pod_log" in e and "status=503" in e)]
            assert errors == [], f"{server.data_dir.name} logged errors:\n" + "\n".join(errors)


def until(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `probe` until it returns something true, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"not {what} within {timeout}s"
        time.sleep(0.2)


def request_marker(server: KubeServer) -> str:
    """A request whose path only this test knows: the access log line it leaves is new."""
    marker = f"/e2e-marker/{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=10) as c:
        c.get(marker)
    return marker


def stamps(lines: list[str]) -> list[int]:
    assert all(STAMP_RE.match(line) for line in lines), [line for line in lines if not STAMP_RE.match(line)][:3]
    return [parse_time_ns(line.split(" ", 1)[0]) for line in lines]


def okura_follow(cluster: Cluster, *args: str) -> Watch:
    """`okura logs -f ARGS` in the background, its stdout read line by line."""
    argv = [*okura_command(), "logs", "-f", *args, "--data-dir", str(cluster.a.data_dir)]
    proc = subprocess.Popen(argv, env=okura_env(**cluster.a.env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    return Watch(argv, track(proc))


# -- start-up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [A, B])
def test_the_first_lines_say_version_storage_database_auth_and_where_it_listens(cluster, name):
    server = cluster.a if name == A else cluster.b
    lines = cluster.okura("logs", name).stdout.splitlines()
    first = [parse_logfmt(line) for line in lines[:3]]
    starting = next(f for f in first if f.get("msg") == "starting okura")
    assert starting["version"] == version()
    assert starting["storage"].startswith("filesystem (") and starting["storage"].endswith("/blobs)")
    assert starting["database"].startswith("postgresql") and "okura_pods_" in starting["database"]
    assert starting["auth"] == "enabled"
    listening = [f["msg"] for f in first[first.index(starting) + 1 :]]
    assert f"listening on https://127.0.0.1:{server.port}" in listening, lines[:5]


# -- okura get pods, kubectl get pods -------------------------------------------------------------


def test_okura_get_pods_lists_both_running(cluster):
    def both_ready() -> dict[str, dict[str, str]] | None:
        pods = cluster.pods()
        return pods if all(p["READY"] == "1/1" for p in pods.values()) else None

    pods = until(both_ready, 10, "both ready")
    assert list(pods) == [A, B]
    for pod in pods.values():
        assert (pod["STATUS"], pod["RESTARTS"]) == ("Running", "0")
        assert re.fullmatch(r"\d+s|\d+m\d*s?", pod["AGE"]), pod
    wide = cluster.pods("-o", "wide")
    assert [wide[n]["ADDRESS"] for n in (A, B)] == [cluster.a.url, cluster.b.url]
    assert {p["VERSION"] for p in wide.values()} == {version()}
    assert cluster.okura("get", "pods", "-o", "name").stdout.split() == [f"pod/{A}", f"pod/{B}"]
    other = cluster.okura("get", "pods", "-n", "team")
    assert other.stdout == "" and "No resources found in team namespace." in other.stderr


def test_kubectl_get_pods_shows_both(cluster):
    header, rows = parse_table(cluster.kubectl.ok("get", "pods", "-n", NS))
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [row[:4] for row in rows] == [[A, "1/1", "Running", "0"], [B, "1/1", "Running", "0"]]
    header, rows = parse_table(
        cluster.kubectl.ok("get", "pods", "-n", NS, "-o", "wide", "-l", "docker-registry=default")
    )
    assert header[5:] == ["IP", "NODE"] and [row[5] for row in rows] == ["127.0.0.1", "127.0.0.1"]
    empty = cluster.kubectl.run("get", "pods", "-n", "team")
    assert (empty.stdout, empty.stderr) == ("", "No resources found in team namespace.\n")


# -- kubectl logs ---------------------------------------------------------------------------------


def test_kubectl_logs_of_the_other_replica_come_through_the_one_it_talks_to(cluster):
    kubectl = cluster.kubectl
    out = kubectl.ok("logs", "-n", NS, B)
    assert f"registered as {B}" in out and f"registered as {A}" not in out
    two = kubectl.ok("logs", "-n", NS, B, "--tail=2", "--timestamps").splitlines()
    assert len(two) == 2 and stamps(two) == sorted(stamps(two))
    assert "is not valid for pod" in kubectl.fails("logs", "-n", NS, B, "-c", "sidecar")
    assert "previous terminated container" in kubectl.fails("logs", "-n", NS, B, "--previous")
    # (kubectl then asks whether the namespace exists, and says it does not: only namespaces
    # holding image streams are served.)
    assert "(NotFound)" in kubectl.fails("logs", "-n", NS, "nobody")


def test_kubectl_logs_follow_shows_a_request_made_after_it_started(cluster):
    watch = cluster.kubectl.watch("logs", "-f", "--tail=1", "-n", NS, B)
    try:
        watch.wait_for(lambda line: bool(line), 20, "of the log so far")
        marker = request_marker(cluster.b)
        watch.wait_for(lambda line: marker in line, 15, f"showing {marker}")
    finally:
        watch.stop()


# -- okura logs -----------------------------------------------------------------------------------


def test_okura_logs_merges_both_replicas_in_time_order(cluster):
    lines = cluster.okura("logs", "--timestamps").stdout.splitlines()
    assert any(f"registered as {A}" in line for line in lines)
    assert any(f"registered as {B}" in line for line in lines)
    times = stamps(lines)
    assert times == sorted(times)
    plain = cluster.okura("logs").stdout.splitlines()
    assert plain and all(line.startswith('time="') for line in plain)

    five = cluster.okura("logs", "--tail", "5", "--timestamps").stdout.splitlines()
    assert len(five) == 5 and stamps(five) == sorted(stamps(five))
    assert stamps(five)[0] >= times[-6]  # the newest lines (new ones may have come since)


def test_okura_logs_since(cluster):
    marker = request_marker(cluster.b)
    asked = time.time_ns()
    lines = cluster.okura("logs", "--since", "3s", "--timestamps").stdout.splitlines()
    assert any(marker in line for line in lines)
    assert min(stamps(lines)) >= asked - 3 * 10**9  # the servers count back from when they answer
    everything = stamps(cluster.okura("logs", "--timestamps").stdout.splitlines())
    assert min(everything) < asked - 3 * 10**9  # older lines were there, and were left out


def test_okura_logs_follow_interleaves_both(cluster):
    watch = okura_follow(cluster, "--tail", "1")
    try:
        # The last line so far; each server's stream then continues after its last line.
        watch.wait_for(lambda line: bool(line), 30, "of the log so far")
        for server in (cluster.a, cluster.b, cluster.a):
            marker = request_marker(server)
            watch.wait_for(lambda line, m=marker: m in line, 15, f"showing {marker}")
    finally:
        assert "warning" not in watch.stop()


def test_okura_logs_of_one_pod(cluster):
    out = cluster.okura("logs", A, "--prefix").stdout.splitlines()
    assert out and all(line.startswith(f"[pod/{A}/registry] ") for line in out)
    missing = cluster.okura("logs", "nobody", check=False)
    assert missing.returncode == 1 and 'pods "nobody" not found' in missing.stderr


def test_credentials_never_reach_the_logs(cluster):
    token = cluster.admin.token
    basic = base64.b64encode(f"chief:{token}".encode()).decode()
    for server in (cluster.a, cluster.b):
        with httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=10) as c:
            assert c.get("/v2/_catalog", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert c.get("/v2/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
            assert c.get(f"/v2/_catalog?token={token}").status_code == 401
    outputs = [
        cluster.okura("logs").stdout,
        cluster.kubectl.ok("logs", "-n", NS, A),
        cluster.kubectl.ok("logs", "-n", NS, B),
    ]
    assert all("subject=chief" in out for out in outputs[:2])
    for out in outputs:
        assert token not in out and basic not in out


# -- restarts and lost replicas -------------------------------------------------------------------


def test_a_restarted_replica_counts_one_restart(cluster):
    cluster.b.stop()
    cluster.b.start()
    pods = until(lambda: (p := cluster.pods()) and p.get(B, {}).get("READY") == "1/1" and p, 10, f"{B} ready")
    assert (pods[B]["STATUS"], pods[B]["RESTARTS"]) == ("Running", "1")
    assert (pods[A]["STATUS"], pods[A]["RESTARTS"]) == ("Running", "0")
    assert f"registered as {B}" in cluster.kubectl.ok("logs", "-n", NS, B)  # at its new address


def test_a_killed_replica_is_unknown_and_the_registry_degraded(cluster):
    cluster.b.kill()
    killed = time.monotonic()
    pods = until(lambda: (p := cluster.pods()) and p[B]["STATUS"] == "Unknown" and p, HEARTBEAT_TIMEOUT + 3, "Unknown")
    assert time.monotonic() - killed < HEARTBEAT_TIMEOUT + 3
    assert pods[B]["READY"] == "0/1" and pods[A]["STATUS"] == "Running"

    headers = {"Authorization": f"Bearer {cluster.admin.token}"}
    url = f"{cluster.a.url}/apis/imageregistry.operator.openshift.io/v1/configs/cluster"

    def degraded() -> dict[str, Any] | None:
        r = httpx.get(url, headers=headers, verify=cluster.a.ssl_context(), timeout=10)
        assert r.status_code == 200, r.text
        found = {c["type"]: c for c in r.json()["status"]["conditions"]}.get("Degraded")
        return found if found and found["status"] == "True" else None

    condition = until(degraded, 5, "Degraded")
    assert condition["reason"] == "ReplicaLost" and B in condition["message"]

    logs = cluster.okura("logs")
    assert logs.returncode == 0 and f"registered as {A}" in logs.stdout
    assert f"warning: pod {B} is Unknown" in logs.stderr
    assert "not reachable" in cluster.kubectl.fails("logs", "-n", NS, B)
