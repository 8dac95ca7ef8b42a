"""The real kubectl against two `okura serve` replicas (own processes, data dirs and ports; one
PostgreSQL database and one S3 bucket), over HTTPS with auth on: a watch on one replica sees a
podman push through the other within a second, what kubectl applies through one is what
kubectl gets from the other, and a replace carrying a resourceVersion that the other replica
has since moved past is a Conflict.

Accounts come from `okura auth ...` (one database for both), a kubeconfig per replica from
`okura kubeconfig --server URL`. See tests/support/kubectl.py and tests/e2e/test_kubectl.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.clients import Account, Clients, require_clients
from tests.support.images import BuiltImage, build_image, random_layers
from tests.support.kubectl import Kubectl, KubeServer, cells, parse_table, podman_push, require_kubectl, skopeo_digest
from tests.support.s3 import REPLICAS_BUCKET
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY
from tests.support.servers import Replicas
from tests.support.tls import CertificateAuthority

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NS = "team"
IS = "imagestream.image.openshift.io"


@dataclass
class Accounts:
    editor: Account  # registry-editor in team
    viewer: Account  # registry-viewer in team


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, seaweedfs, pg_url) -> Iterator[Replicas]:
    """Two HTTPS replicas with auth on, certificates from one CA (this module's own pair: the
    conftest's `replicas` serve plain HTTP without auth)."""
    require_kubectl()
    root = tmp_path_factory.mktemp("kreplicas")
    ca = CertificateAuthority.create(root / "ca")
    env = {
        "OKURA_DATABASE_URL": pg_url,
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": REPLICAS_BUCKET,
        "OKURA_STORAGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
    }
    a = KubeServer(root / "replica-a", ca, env)
    b = KubeServer(root / "replica-b", ca, env)
    try:
        a.start()  # A migrates the schema first; B finds it current
        b.start()
        yield Replicas(a, b)
    finally:
        for server in (a, b):
            server.stop()


@pytest.fixture(autouse=True)
def _no_server_errors(replicas):
    """After every test: neither replica logged a 5xx answer or an error, and both still run."""
    marks = [server.mark() for server in replicas]
    yield
    for name, server, start in zip("AB", replicas, marks, strict=True):
        errors = server.server_errors(start)
        if errors or not server.alive():
            state = "is alive" if server.alive() else "exited"
            text = "\n".join(errors[-20:]) or server.log_tail(40)
            pytest.fail(f"replica {name} {state}; it logged {len(errors)} error(s)/5xx:\n{text}", pytrace=False)


@pytest.fixture(scope="module")
def accounts(replicas) -> Accounts:
    a = replicas.a  # the CLI on A's data dir writes the one database both replicas read
    return Accounts(
        editor=a.account("kube-editor", ("registry-editor", NS)),
        viewer=a.account("kube-viewer", ("registry-viewer", NS)),
    )


@pytest.fixture(scope="module")
def kubeconfigs(tmp_path_factory, replicas, accounts) -> dict[tuple[str, str], Path]:
    """(replica "a" | "b", account "editor" | "viewer") -> a kubeconfig for that replica."""
    root = tmp_path_factory.mktemp("kubeconfigs")
    return {
        (name, who): server.kubeconfig(root / f"{name}-{who}.yaml", getattr(accounts, who).token, server=server.url)
        for name, server in (("a", replicas.a), ("b", replicas.b))
        for who in ("editor", "viewer")
    }


@pytest.fixture
def kubectl(tmp_path, kubeconfigs) -> Callable[[str, str], Kubectl]:
    """kubectl(replica, account): kubectl on that replica as that account, HOME of this test."""

    def make(replica: str, who: str) -> Kubectl:
        return Kubectl(kubeconfigs[(replica, who)], tmp_path / f"home-{replica}-{who}")

    return make


@pytest.fixture(scope="module")
def podman_clients(tmp_path_factory, replicas) -> Clients:
    require_clients("podman", "buildah", "skopeo")
    return Clients(tmp_path_factory.mktemp("kcc"), [])


@pytest.fixture(scope="module")
def image(podman_clients) -> BuiltImage:
    return build_image(podman_clients, "localhost/replicas/kubectl", random_layers([[20_000], [3_000]], "krep"))


@pytest.fixture(scope="module")
def seeded(replicas, podman_clients, accounts, image) -> str:
    """team/base:v1, pushed through A; its digest."""
    return podman_push(podman_clients, replicas.a, accounts.editor, image.name, f"{NS}/base:v1")


def stream_yaml(name: str, labels: dict[str, str], tags: dict[str, str] | None = None) -> str:
    doc: dict = {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}}
    doc["metadata"]["labels"] = labels
    if tags:
        doc["spec"] = {
            "tags": [{"name": tag, "from": {"kind": "ImageStreamTag", "name": src}} for tag, src in tags.items()]
        }
    return yaml.safe_dump(doc, sort_keys=False)


def get_yaml(kc: Kubectl, *args: str) -> dict:
    return yaml.safe_load(kc.ok("get", *args, "-o", "yaml"))


def test_watch_on_a_sees_a_podman_push_through_b(replicas, kubectl, podman_clients, accounts, image, seeded):
    a, b = replicas
    watch = kubectl("a", "viewer").watch("get", "is", "-n", NS, "-w")
    try:
        watch.wait_for(lambda line: cells(line)[0] == "base", 30, "for team/base (the initial list)")
        podman_push(podman_clients, b, accounts.editor, image.name, f"{NS}/app:v1")
        pushed = time.monotonic()

        def app_with_v1(line: str) -> bool:
            c = cells(line)
            return c[0] == "app" and len(c) >= 3 and "v1" in c[2].split(",")

        arrived, line = watch.wait_for(app_with_v1, 10, "for team/app with tag v1")
    finally:
        err = watch.stop()
    assert cells(line)[1] == f"{a.host}/{NS}/app", line  # A names its own host
    assert arrived - pushed < 1.0, f"the watch on A printed team/app {arrived - pushed:.3f}s after the push through B"
    assert "error" not in err.lower(), err


def test_apply_through_b_is_what_a_gets(replicas, kubectl, podman_clients, accounts, seeded, tmp_path):
    a = replicas.a
    manifest = tmp_path / "applied.yaml"
    manifest.write_text(stream_yaml("applied", {"tier": "one"}, {"stable": "base:v1"}))
    on_a, on_b = kubectl("a", "editor"), kubectl("b", "editor")
    assert on_b.ok("apply", "-f", str(manifest)) == f"{IS}/applied created\n"
    from_b = get_yaml(on_b, "is", "applied")

    from_a = get_yaml(on_a, "is", "applied")
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "labels"):
        assert from_a["metadata"][key] == from_b["metadata"][key], key
    assert from_a["metadata"]["labels"] == {"tier": "one"}
    assert from_a["spec"]["tags"] == from_b["spec"]["tags"]
    header, rows = parse_table(on_a.ok("get", "istag", "applied:stable"))
    assert header == ["NAME", "IMAGE REFERENCE", "UPDATED"]
    assert rows[0][:2] == ["applied:stable", f"{a.host}/{NS}/applied@{seeded}"]
    assert skopeo_digest(podman_clients, a, accounts.viewer, f"{NS}/applied:stable") == seeded

    manifest.write_text(stream_yaml("applied", {"tier": "two"}, {"stable": "base:v1"}))
    assert on_b.ok("apply", "-f", str(manifest)) == f"{IS}/applied configured\n"
    assert get_yaml(on_a, "is", "applied")["metadata"]["labels"] == {"tier": "two"}


def test_replace_with_a_stale_resource_version_is_a_conflict(replicas, kubectl, seeded, tmp_path):
    on_a, on_b = kubectl("a", "editor"), kubectl("b", "editor")
    on_a.ok("create", "-f", "-", stdin=stream_yaml("raced", {"stage": "one"}))
    old = tmp_path / "old.yaml"
    old.write_text(on_a.ok("get", "is", "raced", "-o", "yaml").replace("stage: one", "stage: from-a"))

    assert on_b.ok("label", "is", "raced", "changed=by-b") == f"{IS}/raced labeled\n"
    err = on_a.fails("replace", "-f", str(old))
    expected = (
        f'Error from server (Conflict): error when replacing "{old}": Operation cannot be fulfilled on '
        f'imagestreams.image.openshift.io "raced": the object has been modified; please apply your changes '
        "to the latest version and try again"
    )
    assert expected in err, err
    assert get_yaml(on_a, "is", "raced")["metadata"]["labels"] == {"stage": "one", "changed": "by-b"}

    # The current version, as A serves it, replaces.
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(on_a.ok("get", "is", "raced", "-o", "yaml").replace("stage: one", "stage: from-a"))
    assert on_a.ok("replace", "-f", str(fresh)) == f"{IS}/raced replaced\n"
    assert get_yaml(on_b, "is", "raced")["metadata"]["labels"] == {"stage": "from-a", "changed": "by-b"}
