"""The real kubectl against a real `okura serve` over HTTPS with auth on: discovery, tables,
apply / patch / label / annotate / edit / delete, a watch that sees a podman push at once,
`kubectl auth can-i` agreeing with `okura auth can-i`, and the refusals kubectl prints.

One server per module (SQLite, filesystem). Accounts are made with `okura auth ...`, kubeconfigs
with `okura kubeconfig --token T -n team --certificate-authority CA` (no --server: the command
finds the live server itself). kubectl runs with no extra flags (no --validate=false, no
--insecure-skip-tls-verify) and a private HOME per test; podman and skopeo verify the server's
certificate with the test CA. See tests/support/kubectl.py."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.clients import Account, Clients, require_clients
from tests.support.images import BuiltImage, build_image, random_layers
from tests.support.kubectl import (
    Kubectl,
    KubeServer,
    cells,
    parse_table,
    podman_push,
    require_kubectl,
    skopeo_digest,
)
from tests.support.media_types import ALL_MANIFEST_TYPES
from tests.support.pruner import SEED_YAML
from tests.support.tls import CertificateAuthority
from tests.support.upstreams import push_image, start_distribution

pytestmark = pytest.mark.e2e

NS = "team"
IS = "imagestream.image.openshift.io"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RFC3339_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
AGE_RE = re.compile(r"\d+ (second|minute|hour|day)s? ago")


@dataclass
class Accounts:
    admin: Account  # cluster-admin
    editor: Account  # registry-editor in team
    viewer: Account  # registry-viewer in team


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[KubeServer]:
    require_kubectl()
    root = tmp_path_factory.mktemp("kubectl")
    server = KubeServer(root / "data", CertificateAuthority.create(root / "ca"), name="server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def accounts(server) -> Accounts:
    return Accounts(
        admin=server.account("kube-admin", ("cluster-admin", None)),
        editor=server.account("kube-editor", ("registry-editor", NS)),
        viewer=server.account("kube-viewer", ("registry-viewer", NS)),
    )


@pytest.fixture(scope="module")
def kubeconfigs(tmp_path_factory, server, accounts) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kubeconfigs")
    return {
        who: server.kubeconfig(root / f"{who}.yaml", getattr(accounts, who).token)
        for who in ("admin", "editor", "viewer")
    }


@pytest.fixture
def kubectl(tmp_path, kubeconfigs) -> Callable[[str], Kubectl]:
    """kubectl("admin" | "editor" | "viewer"): kubectl as that account, with a HOME of this test."""

    def make(who: str) -> Kubectl:
        return Kubectl(kubeconfigs[who], tmp_path / f"home-{who}")

    return make


@pytest.fixture(scope="module")
def podman_clients(tmp_path_factory, server) -> Clients:
    """podman/buildah/skopeo with a private configuration, no registry marked insecure."""
    require_clients("podman", "buildah", "skopeo")
    return Clients(tmp_path_factory.mktemp("kcc"), [])


@pytest.fixture(scope="module")
def image(podman_clients) -> BuiltImage:
    return build_image(podman_clients, "localhost/e2e/kubectl", random_layers([[20_000], [3_000]], "kubectl"))


@pytest.fixture(scope="module")
def seeded(server, podman_clients, accounts, image) -> str:
    """team/base:v1, pushed by the editor with podman; its digest."""
    return podman_push(podman_clients, server, accounts.editor, image.name, f"{NS}/base:v1")


@pytest.fixture(autouse=True)
def _no_server_errors(server):
    """After every test: the server logged no 5xx answer and no error, and is still running."""
    start = server.mark()
    yield
    errors = server.server_errors(start)
    if errors or not server.alive():
        state = "is alive" if server.alive() else "exited"
        text = "\n".join(errors[-20:]) or server.log_tail(40)
        pytest.fail(f"the server {state}; it logged {len(errors)} error(s)/5xx:\n{text}", pytrace=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tag_ref(tag: str, source: str) -> dict:
    """A spec tag pointing at the ImageStreamTag `source` (STREAM:TAG)."""
    return {"name": tag, "from": {"kind": "ImageStreamTag", "name": source}}


def stream_yaml(name: str, labels: dict[str, str], tags: dict[str, str] | None = None) -> str:
    """An ImageStream manifest; `tags` maps tag names to ImageStreamTag sources (STREAM:TAG)."""
    doc: dict = {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}}
    doc["metadata"]["labels"] = labels
    if tags:
        doc["spec"] = {"tags": [tag_ref(tag, source) for tag, source in tags.items()]}
    return yaml.safe_dump(doc, sort_keys=False)


def get_yaml(kc: Kubectl, *args: str) -> dict:
    return yaml.safe_load(kc.ok("get", *args, "-o", "yaml"))


def manifest_status(server: KubeServer, account: Account, repo: str, ref: str) -> tuple[int, str | None]:
    """GET /v2/REPO/manifests/REF with the account's token (as curl -u would): status, digest."""
    with server.http(account) as c:
        r = c.get(f"/v2/{repo}/manifests/{ref}", headers=[("Accept", t) for t in ALL_MANIFEST_TYPES])
    return r.status_code, r.headers.get("Docker-Content-Digest")


def row(rows: list[list[str]], name: str, column: int = 0) -> list[str]:
    found = [r for r in rows if r[column] == name]
    assert len(found) == 1, f"expected one row {name!r}, got {rows}"
    return found[0]


# --------------------------------------------------------------------------------------------
# 1. discovery, version, explain
# --------------------------------------------------------------------------------------------


def test_kubeconfig_points_kubectl_at_https_with_the_ca(server, kubeconfigs, accounts):
    config = yaml.safe_load(kubeconfigs["editor"].read_text())
    [cluster] = config["clusters"]
    assert cluster["cluster"]["server"] == server.url
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == server.ca.path.read_bytes()
    assert "insecure-skip-tls-verify" not in cluster["cluster"]
    [user] = config["users"]
    assert user["user"] == {"token": accounts.editor.token}
    [context] = config["contexts"]
    assert context["context"]["namespace"] == NS
    assert config["current-context"] == context["name"]


def test_api_resources(kubectl):
    result = kubectl("editor").run("api-resources")
    assert "unable to retrieve" not in result.stderr, result.stderr
    assert result.stderr == "", result.stderr
    header, rows = parse_table(result.stdout)
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    expected = {
        "imagestreams": ["is", "image.openshift.io/v1", "true", "ImageStream"],
        "imagestreamtags": ["istag", "image.openshift.io/v1", "true", "ImageStreamTag"],
        "imagestreamimages": ["isimage", "image.openshift.io/v1", "true", "ImageStreamImage"],
        "images": ["", "image.openshift.io/v1", "false", "Image"],
        "imagestreamimports": ["", "image.openshift.io/v1", "true", "ImageStreamImport"],
        "imagepruners": ["", "imageregistry.operator.openshift.io/v1", "false", "ImagePruner"],
    }
    for name, rest in expected.items():
        assert row(rows, name) == [name, *rest]


def test_api_versions_and_server_version(kubectl):
    kc = kubectl("viewer")
    versions = kc.ok("api-versions").split()
    for gv in ("v1", "image.openshift.io/v1", "imageregistry.operator.openshift.io/v1", "authorization.k8s.io/v1"):
        assert gv in versions, versions
    out = kc.ok("version")
    assert re.search(r"^Client Version: v1\.\d+\.\d+", out, re.MULTILINE), out
    assert re.search(r"^Server Version: v1\.\d+\.\d+\S*$", out, re.MULTILINE), out


def test_explain_image_stream_tags(kubectl):
    out = kubectl("viewer").ok("explain", "is.spec.tags")
    assert re.search(r"^GROUP:\s+image\.openshift\.io$", out, re.MULTILINE), out
    assert re.search(r"^KIND:\s+ImageStream$", out, re.MULTILINE), out
    assert re.search(r"^FIELD:\s+tags <\[\]\w+>$", out, re.MULTILINE), out
    description = out.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0]
    assert description.strip(), f"no description:\n{out}"
    fields = out.split("FIELDS:", 1)[1]
    assert re.search(r"^\s+name\s+<string> -required-$", fields, re.MULTILINE), out
    assert re.search(r"^\s+from\s+<\w+>$", fields, re.MULTILINE), out


# --------------------------------------------------------------------------------------------
# 2. tables and objects
# --------------------------------------------------------------------------------------------


def test_get_imagestreams_table(kubectl, server, seeded):
    header, rows = parse_table(kubectl("viewer").ok("get", "is"))
    assert header == ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]
    _, repository, tags, updated = row(rows, "base")
    assert repository == f"{server.host}/{NS}/base"
    assert tags == "v1"
    assert AGE_RE.fullmatch(updated), updated


def test_get_imagestream_yaml_has_object_metadata(kubectl, server, seeded):
    stream = get_yaml(kubectl("viewer"), "is", "base")
    assert (stream["apiVersion"], stream["kind"]) == ("image.openshift.io/v1", "ImageStream")
    meta = stream["metadata"]
    assert (meta["name"], meta["namespace"]) == ("base", NS)
    assert UUID_RE.fullmatch(meta["uid"]), meta
    assert isinstance(meta["resourceVersion"], str) and meta["resourceVersion"].isdigit(), meta
    assert isinstance(meta["generation"], int) and meta["generation"] >= 1, meta
    assert RFC3339_RE.fullmatch(meta["creationTimestamp"]), meta
    [tag] = stream["status"]["tags"]
    assert tag["tag"] == "v1"
    assert tag["items"][0]["image"] == seeded
    assert stream["status"]["dockerImageRepository"] == f"{server.host}/{NS}/base"


def test_get_imagestreamtags_table(kubectl, server, seeded):
    header, rows = parse_table(kubectl("viewer").ok("get", "istag"))
    assert header == ["NAME", "IMAGE REFERENCE", "UPDATED"]
    _, reference, updated = row(rows, "base:v1")
    assert reference == f"{server.host}/{NS}/base@{seeded}"
    assert AGE_RE.fullmatch(updated), updated


def test_get_imagestreams_in_all_namespaces(kubectl, server, podman_clients, accounts, image, seeded):
    podman_push(podman_clients, server, accounts.admin, image.name, "elsewhere/base:v1")
    header, rows = parse_table(kubectl("admin").ok("get", "is", "-A"))
    assert header == ["NAMESPACE", "NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]
    assert row([r for r in rows if r[0] == NS], "base", 1)[2] == f"{server.host}/{NS}/base"
    assert row([r for r in rows if r[0] == "elsewhere"], "base", 1)[2] == f"{server.host}/elsewhere/base"
    # The viewer sees the namespaces it may list, no more.
    _, rows = parse_table(kubectl("viewer").ok("get", "is", "-A"))
    assert {r[0] for r in rows} == {NS}, rows


# --------------------------------------------------------------------------------------------
# 3. apply
# --------------------------------------------------------------------------------------------


def test_apply_creates_then_configures_an_imagestream(kubectl, server, podman_clients, accounts, seeded, tmp_path):
    kc = kubectl("editor")
    manifest = write(tmp_path / "applied.yaml", stream_yaml("applied", {"tier": "one"}, {"stable": "base:v1"}))
    assert kc.ok("apply", "-f", str(manifest)) == f"{IS}/applied created\n"

    stream = get_yaml(kc, "is", "applied")
    assert stream["metadata"]["labels"] == {"tier": "one"}
    assert [t["name"] for t in stream["spec"]["tags"]] == ["stable"]
    # The tag points at base:v1's image: clients pull it through the new stream.
    assert skopeo_digest(podman_clients, server, accounts.viewer, f"{NS}/applied:stable") == seeded
    assert manifest_status(server, accounts.viewer, f"{NS}/applied", "stable") == (200, seeded)

    write(manifest, stream_yaml("applied", {"tier": "two"}, {"stable": "base:v1", "copy": "base:v1"}))
    assert kc.ok("apply", "-f", str(manifest)) == f"{IS}/applied configured\n"
    stream = get_yaml(kc, "is", "applied")
    assert stream["metadata"]["labels"] == {"tier": "two"}
    assert sorted(t["name"] for t in stream["spec"]["tags"]) == ["copy", "stable"]
    assert manifest_status(server, accounts.viewer, f"{NS}/applied", "copy") == (200, seeded)


def test_reapplying_an_unchanged_imagestream_says_unchanged(kubectl, seeded, tmp_path):
    kc = kubectl("editor")
    manifest = write(tmp_path / "same.yaml", stream_yaml("same", {"tier": "one"}, {"stable": "base:v1"}))
    assert kc.ok("apply", "-f", str(manifest)) == f"{IS}/same created\n"
    before = get_yaml(kc, "is", "same")["metadata"]["resourceVersion"]
    assert kc.ok("apply", "-f", str(manifest)) == f"{IS}/same unchanged\n"
    assert get_yaml(kc, "is", "same")["metadata"]["resourceVersion"] == before


def test_reapply_keeps_the_tags_it_does_not_manage(kubectl, server, accounts, seeded, tmp_path):
    """spec.tags merge by name (as OpenShift declares them): a tag added since by someone else
    (`oc tag`, a patch) is no business of the applied manifest and stays."""
    kc = kubectl("editor")
    manifest = write(tmp_path / "kept.yaml", stream_yaml("kept", {"tier": "one"}, {"stable": "base:v1"}))
    assert kc.ok("apply", "-f", str(manifest)) == f"{IS}/kept created\n"
    other = [{"op": "add", "path": "/spec/tags/-", "value": tag_ref("other", "base:v1")}]
    kc.ok("patch", "is", "kept", "--type=json", "-p", json.dumps(other))
    kc.run("apply", "-f", str(manifest))
    assert sorted(t["name"] for t in get_yaml(kc, "is", "kept")["spec"]["tags"]) == ["other", "stable"]
    assert manifest_status(server, accounts.viewer, f"{NS}/kept", "other") == (200, seeded)


def test_apply_the_image_pruner_example(kubectl, tmp_path):
    """OpenShift's documented ImagePruner (status block, typo and all) as cluster-admin, with
    kubectl's default validation. The pruner exists from the start, not made by apply: kubectl
    warns once that it lacks the last-applied annotation (and adds it), and says nothing else."""
    kc = kubectl("admin")
    manifest = write(tmp_path / "pruner.yaml", SEED_YAML)
    first = kc.run("apply", "-f", str(manifest))
    assert first.stdout == "imagepruner.imageregistry.operator.openshift.io/cluster configured\n", first.stdout

    pruner = get_yaml(kc, "imagepruner", "cluster")
    spec = pruner["spec"]
    assert (spec["schedule"], spec["suspend"], spec["keepTagRevisions"]) == ("0 0 * * *", False, 3)
    assert spec["keepYoungerThanDuration"] in ("60m", "1h0m0s"), spec
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    assert "kubectl.kubernetes.io/last-applied-configuration" in pruner["metadata"]["annotations"]

    again = kc.run("apply", "-f", str(manifest))  # now with the annotation
    assert again.stdout.startswith("imagepruner.imageregistry.operator.openshift.io/cluster "), again.stdout

    expected = "missing the kubectl.kubernetes.io/last-applied-configuration annotation"
    printed = [line for line in first.stderr.splitlines() if line.strip() and expected not in line]
    printed += [line for line in again.stderr.splitlines() if line.strip()]
    assert not printed, "kubectl apply printed:\n" + "\n".join(printed)


# --------------------------------------------------------------------------------------------
# 4. patch, label, annotate, edit
# --------------------------------------------------------------------------------------------


def test_patch_merge_json_and_strategic(kubectl, server, accounts, seeded):
    kc = kubectl("editor")
    kc.ok("create", "-f", "-", stdin=stream_yaml("patched", {"tier": "one"}))

    merge = '{"metadata":{"labels":{"merge":"yes"}},"spec":{"lookupPolicy":{"local":true}}}'
    assert kc.ok("patch", "is", "patched", "--type=merge", "-p", merge) == f"{IS}/patched patched\n"
    add_tag = json.dumps([{"op": "add", "path": "/spec/tags", "value": [tag_ref("copy", "base:v1")]}])
    assert kc.ok("patch", "is", "patched", "--type=json", "-p", add_tag) == f"{IS}/patched patched\n"
    strategic = '{"metadata":{"annotations":{"note":"strategic"}}}'
    assert kc.ok("patch", "is", "patched", "-p", strategic) == f"{IS}/patched patched\n"
    assert kc.ok("patch", "is", "patched", "-p", strategic) == f"{IS}/patched patched (no change)\n"

    stream = get_yaml(kc, "is", "patched")
    assert stream["metadata"]["labels"] == {"tier": "one", "merge": "yes"}
    assert stream["metadata"]["annotations"]["note"] == "strategic"
    assert stream["spec"]["lookupPolicy"] == {"local": True}
    assert [t["name"] for t in stream["spec"]["tags"]] == ["copy"]
    assert manifest_status(server, accounts.viewer, f"{NS}/patched", "copy") == (200, seeded)

    remove = '[{"op":"remove","path":"/metadata/labels/merge"}]'
    assert kc.ok("patch", "is", "patched", "--type=json", "-p", remove) == f"{IS}/patched patched\n"
    assert get_yaml(kc, "is", "patched")["metadata"]["labels"] == {"tier": "one"}


def test_label_annotate_and_select(kubectl):
    kc = kubectl("editor")
    for name in ("sel-a", "sel-b"):
        kc.ok("create", "-f", "-", stdin=stream_yaml(name, {"group": "sel"}))
    assert kc.ok("label", "is", "sel-a", "color=blue") == f"{IS}/sel-a labeled\n"
    assert kc.ok("label", "is", "sel-b", "color=red") == f"{IS}/sel-b labeled\n"
    assert kc.ok("annotate", "is", "sel-a", "note=hello") == f"{IS}/sel-a annotated\n"

    assert kc.ok("get", "is", "-l", "color=blue", "-o", "name") == f"{IS}/sel-a\n"
    header, rows = parse_table(kc.ok("get", "is", "-l", "group=sel,color!=blue"))
    assert header[0] == "NAME" and [r[0] for r in rows] == ["sel-b"]
    assert kc.ok("get", "is", "-l", "color in (blue,red)", "-o", "name").split() == [f"{IS}/sel-a", f"{IS}/sel-b"]
    assert kc.run("get", "is", "-l", "color=green").stdout == ""

    stream = get_yaml(kc, "is", "sel-a")
    assert stream["metadata"]["labels"] == {"group": "sel", "color": "blue"}
    assert stream["metadata"]["annotations"]["note"] == "hello"

    assert kc.ok("label", "is", "sel-a", "color=green", "--overwrite") == f"{IS}/sel-a labeled\n"
    assert kc.ok("label", "is", "sel-b", "color-") == f"{IS}/sel-b unlabeled\n"
    assert kc.ok("get", "is", "-l", "color", "-o", "name") == f"{IS}/sel-a\n"


def test_edit_with_an_editor_script(kubectl, tmp_path):
    kc = kubectl("editor")
    kc.ok("create", "-f", "-", stdin=stream_yaml("edited", {"stage": "draft"}))
    editor = write(tmp_path / "editor.sh", "#!/bin/sh\nsed -i 's/stage: draft/stage: reviewed/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    before = get_yaml(kc, "is", "edited")["metadata"]["resourceVersion"]
    out = kc.ok("edit", "is", "edited", env={"EDITOR": str(editor)})
    assert out == f"{IS}/edited edited\n"
    stream = get_yaml(kc, "is", "edited")
    assert stream["metadata"]["labels"] == {"stage": "reviewed"}
    assert int(stream["metadata"]["resourceVersion"]) > int(before)


# --------------------------------------------------------------------------------------------
# 5. delete
# --------------------------------------------------------------------------------------------


def test_delete_imagestreamtag_then_imagestream(kubectl, server, podman_clients, accounts, image):
    for tag in ("v1", "v2"):
        podman_push(podman_clients, server, accounts.editor, image.name, f"{NS}/doomed:{tag}")
    kc = kubectl("editor")
    assert kc.ok("delete", "istag", "doomed:v1") == 'imagestreamtag.image.openshift.io "doomed:v1" deleted\n'
    assert manifest_status(server, accounts.viewer, f"{NS}/doomed", "v1")[0] == 404
    assert manifest_status(server, accounts.viewer, f"{NS}/doomed", "v2")[0] == 200
    with server.http(accounts.viewer) as c:
        assert c.get(f"/v2/{NS}/doomed/tags/list").json()["tags"] == ["v2"]
    err = kc.fails("get", "istag", "doomed:v1")
    assert 'Error from server (NotFound): imagestreamtags.image.openshift.io "doomed:v1" not found' in err, err
    assert [t["tag"] for t in get_yaml(kc, "is", "doomed")["status"]["tags"]] == ["v2"]

    assert kc.ok("delete", "is", "doomed") == f'{IS} "doomed" deleted\n'
    err = kc.fails("get", "is", "doomed")
    assert 'Error from server (NotFound): imagestreams.image.openshift.io "doomed" not found' in err, err
    assert manifest_status(server, accounts.viewer, f"{NS}/doomed", "v2")[0] == 404


def test_server_side_dry_runs_check_everything_and_keep_nothing(kubectl, server, seeded, tmp_path):
    kc = kubectl("editor")
    manifest = write(tmp_path / "dry.yaml", stream_yaml("dry", {"tier": "web"}, {"v1": "base:v1"}))
    out = kc.ok("apply", "-f", str(manifest), "--dry-run=server", "-o", "yaml")
    would = yaml.safe_load(out)
    # The answer is the object the write would make: the tag resolved, a uid, a version.
    assert would["metadata"]["name"] == "dry" and UUID_RE.fullmatch(would["metadata"]["uid"])
    assert [t["items"][0]["image"] for t in would["status"]["tags"]] == [seeded]
    err = kc.fails("get", "is", "dry")
    assert "NotFound" in err, err

    # A dry run fails as the real write would: the source tag does not exist.
    bad = write(tmp_path / "bad.yaml", stream_yaml("dry", {}, {"v1": "base:nope"}))
    err = kc.fails("apply", "-f", str(bad), "--dry-run=server")
    assert err.startswith('The ImageStream "dry" is invalid: spec.tags[0].from.name: '), err
    assert 'imagestreamtag.image.openshift.io "base:nope" not found' in err, err

    before = get_yaml(kc, "is", "base")
    assert kc.ok("delete", "is", "base", "--dry-run=server") == f'{IS} "base" deleted (server dry run)\n'
    assert get_yaml(kc, "is", "base") == before


def test_diff_shows_only_what_would_change(kubectl, tmp_path):
    kc = kubectl("editor")
    kc.ok("apply", "-f", str(write(tmp_path / "a.yaml", stream_yaml("diffed", {"tier": "one"}))))
    result = kc.run("diff", "-f", str(write(tmp_path / "b.yaml", stream_yaml("diffed", {"tier": "two"}))), check=False)
    assert result.returncode == 1, result.stderr  # 1: differences found
    changed = [line for line in result.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-    tier: one", "+    tier: two"], result.stdout
    assert get_yaml(kc, "is", "diffed")["metadata"]["labels"] == {"tier": "one"}


def test_pull_secrets_as_kubectl_creates_them(kubectl, tmp_path):
    create = ["create", "secret", "docker-registry", "upstream", "--docker-server=quay.io",
              "--docker-username=robot", "--docker-password=s3cret-pw", "-n", NS]  # fmt: skip
    err = kubectl("editor").fails(*create)
    assert "cannot create secrets in namespace team" in err and "s3cret-pw" not in err, err  # admins only
    admin = kubectl("admin")
    assert admin.ok(*create) == "secret/upstream created\n"
    secret = get_yaml(admin, "secret", "upstream", "-n", NS)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert auths["quay.io"]["username"] == "robot" and auths["quay.io"]["password"] == "s3cret-pw"
    header, rows = parse_table(admin.ok("get", "secrets", "-n", NS))
    assert header == ["NAME", "TYPE", "DATA", "AGE"]
    assert row(rows, "upstream")[1:3] == ["kubernetes.io/dockerconfigjson", "1"]
    assert "Forbidden" in kubectl("viewer").fails("get", "secrets", "-n", NS)
    assert admin.ok("delete", "secret", "upstream", "-n", NS) == 'secret "upstream" deleted\n'


def test_imports_declared_and_requested_with_kubectl(kubectl, tmp_path):
    for upstream in start_distribution(tmp_path / "upstream"):
        pushed = asyncio.run(_push_upstream(upstream.url))
        source = f"{upstream.host}/lib/app:v1"
        editor = kubectl("editor")
        stream = {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "external"},
            "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": source},
                               "importPolicy": {"insecure": True}}]},
        }  # fmt: skip
        assert "created" in editor.ok("apply", "-f", str(write(tmp_path / "is.yaml", yaml.safe_dump(stream))))
        deadline = time.monotonic() + 15
        image = ""
        while time.monotonic() < deadline and not image:
            image = editor.run(
                "get", "istag", "external:v1", "-o", "jsonpath={.image.metadata.name}", check=False
            ).stdout
            time.sleep(0.3)
        assert image == pushed
        request = {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStreamImport",
            "metadata": {"name": "requested"},
            "spec": {"import": True, "images": [{"from": {"kind": "DockerImage", "name": source},
                                                 "to": {"name": "v1"}, "importPolicy": {"insecure": True}}]},
        }  # fmt: skip
        answer = yaml.safe_load(
            editor.ok("create", "-f", str(write(tmp_path / "isi.yaml", yaml.safe_dump(request))), "-o", "yaml")
        )
        assert answer["status"]["images"][0]["status"]["status"] == "Success", answer["status"]
        assert answer["status"]["import"]["status"]["tags"][0]["items"][0]["image"] == pushed
        err = kubectl("viewer").fails("create", "-f", str(tmp_path / "isi.yaml"))
        assert "cannot create" in err and "imagestreamimports" in err, err


async def _push_upstream(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return (await push_image(client, "lib/app", "v1")).digest


def test_images_and_image_stream_images(kubectl, seeded):
    admin, viewer = kubectl("admin"), kubectl("viewer")
    isimage = get_yaml(viewer, "isimage", f"base@{seeded}")
    assert (isimage["kind"], isimage["image"]["metadata"]["name"]) == ("ImageStreamImage", seeded)
    image = get_yaml(admin, "images", seeded)
    assert image["kind"] == "Image" and image["dockerImageManifestMediaType"]
    names = admin.ok("get", "images", "-o", "name").split()
    assert f"image.image.openshift.io/{seeded}" in names
    # Images are cluster-scoped: a namespace viewer may not list them, nor delete one in use.
    err = viewer.fails("get", "images")
    assert "Forbidden" in err, err
    err = admin.fails("delete", "image", seeded)
    assert "Conflict" in err or "referenced" in err, err


def test_rollback_by_applying_an_image_stream_tag(kubectl, server, podman_clients, accounts, image, tmp_path):
    first = podman_push(podman_clients, server, accounts.editor, image.name, f"{NS}/roll:prod")
    other = build_image(podman_clients, "localhost/e2e/kubectl-two", random_layers([[9_000]], "kubectl-two"))
    second = podman_push(podman_clients, server, accounts.editor, other.name, f"{NS}/roll:prod")
    assert first != second
    kc = kubectl("editor")
    istag = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamTag",
        "metadata": {"name": "roll:prod"},
        "tag": {"name": "prod", "from": {"kind": "ImageStreamImage", "name": f"roll@{first}"}},
    }
    out = kc.ok("replace", "-f", str(write(tmp_path / "rollback.yaml", yaml.safe_dump(istag))))
    assert out == "imagestreamtag.image.openshift.io/roll:prod replaced\n", out
    assert manifest_status(server, accounts.viewer, f"{NS}/roll", "prod") == (200, first)
    [prod] = get_yaml(kc, "is", "roll")["status"]["tags"]
    assert [i["image"] for i in prod["items"]] == [first, second, first]


# --------------------------------------------------------------------------------------------
# 6. watch
# --------------------------------------------------------------------------------------------


def test_watch_prints_a_podman_push_within_a_second(kubectl, server, podman_clients, accounts, image, seeded):
    watch = kubectl("viewer").watch("get", "is", "-n", NS, "-w")
    try:
        watch.wait_for(lambda line: cells(line)[0] == "base", 30, "for team/base (the initial list)")
        podman_push(podman_clients, server, accounts.editor, image.name, f"{NS}/app:v1")
        pushed = time.monotonic()

        def app_with_v1(line: str) -> bool:
            c = cells(line)
            return c[0] == "app" and len(c) >= 3 and "v1" in c[2].split(",")

        arrived, line = watch.wait_for(app_with_v1, 10, "for team/app with tag v1")
    finally:
        err = watch.stop()
    assert cells(line)[1] == f"{server.host}/{NS}/app", line
    assert arrived - pushed < 1.0, f"the watch printed team/app {arrived - pushed:.3f}s after podman push exited"
    assert "error" not in err.lower(), err


# --------------------------------------------------------------------------------------------
# 7. auth can-i
# --------------------------------------------------------------------------------------------


def can_i(kc: Kubectl, verb: str, resource: str, namespace: str | None) -> tuple[str, int]:
    """kubectl auth can-i's answer and exit code (cluster-wide: --all-namespaces, since kubectl
    otherwise asks in the context's namespace even for a cluster-scoped resource)."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = kc.run("auth", "can-i", verb, resource, *where, check=False)
    return result.stdout.strip(), result.returncode


def okura_can_i(server: KubeServer, user: str, verb: str, resource: str, namespace: str | None) -> tuple[str, int]:
    where = ["-n", namespace] if namespace else []
    result = server.okura("auth", "can-i", verb, resource, *where, "--as", user, check=False)
    return result.stdout.strip(), result.returncode


def test_can_i_create_imagestreams_editor_vs_viewer(kubectl):
    assert can_i(kubectl("editor"), "create", "imagestreams", NS) == ("yes", 0)
    assert can_i(kubectl("viewer"), "create", "imagestreams", NS) == ("no", 1)


CAN_I = [  # (verb, resource, namespace or None for cluster-wide)
    ("create", "imagestreams", NS),
    ("get", "is", NS),
    ("delete", "istag", NS),
    ("update", "imagestreamtags", NS),
    ("watch", "is", NS),
    ("create", "is", "other"),
    ("get", "images", None),
]
EXPECTED = {  # what the roles grant (the rest of the table is only compared)
    ("editor", "create", "imagestreams", NS): "yes",
    ("viewer", "create", "imagestreams", NS): "no",
    ("viewer", "get", "is", NS): "yes",
    ("viewer", "delete", "istag", NS): "no",
    ("editor", "delete", "istag", NS): "yes",
    ("editor", "create", "is", "other"): "no",
    ("viewer", "get", "images", None): "no",
    ("admin", "get", "images", None): "yes",
    ("admin", "create", "is", "other"): "yes",
}


def test_can_i_agrees_with_okura_auth_can_i(kubectl, server, accounts):
    asks = [("editor", *c) for c in CAN_I] + [("viewer", *c) for c in CAN_I]
    asks += [("admin", "get", "images", None), ("admin", "create", "is", "other")]
    users = {"admin": accounts.admin.subject, "editor": accounts.editor.subject, "viewer": accounts.viewer.subject}
    with ThreadPoolExecutor(max_workers=2) as pool:
        cli = list(pool.map(lambda a: okura_can_i(server, users[a[0]], *a[1:]), asks))
    kubectls = {who: kubectl(who) for who in users}
    disagree, wrong = [], []
    for ask, by_cli in zip(asks, cli, strict=True):
        by_kubectl = can_i(kubectls[ask[0]], *ask[1:])
        if by_kubectl != by_cli:
            disagree.append(f"{ask}: kubectl {by_kubectl}, okura {by_cli}")
        if ask in EXPECTED and by_kubectl[0] != EXPECTED[ask]:
            wrong.append(f"{ask}: kubectl says {by_kubectl[0]}, expected {EXPECTED[ask]}")
        assert by_kubectl in (("yes", 0), ("no", 1)), f"{ask}: {by_kubectl}"
    assert not disagree and not wrong, "\n".join(disagree + wrong)


def test_can_i_list(kubectl):
    for who, verbs in (("editor", "create"), ("viewer", "list")):
        header, rows = parse_table(kubectl(who).ok("auth", "can-i", "--list", "-n", NS))
        assert header == ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
        streams = row(rows, "imagestreams.image.openshift.io")
        assert verbs in streams[3].strip("[]").split(), f"{who}: {streams}"
    _, rows = parse_table(kubectl("viewer").ok("auth", "can-i", "--list", "-n", NS))
    assert row(rows, "imagestreams.image.openshift.io")[3] == "[get list watch]"


# --------------------------------------------------------------------------------------------
# 8. refusals
# --------------------------------------------------------------------------------------------


def forbidden(verb: str, user: str) -> re.Pattern:
    return re.compile(
        r"^Error from server \(Forbidden\): .*imagestreams\.image\.openshift\.io\b.* is forbidden: "
        rf"{re.escape(user)} cannot {verb} imagestreams in namespace {NS}$",
        re.MULTILINE,
    )


def test_viewer_writes_are_forbidden(kubectl, accounts, seeded, tmp_path):
    kc = kubectl("viewer")
    user = accounts.viewer.subject
    manifest = write(tmp_path / "denied.yaml", stream_yaml("denied", {"tier": "one"}))
    err = kc.fails("apply", "-f", str(manifest))
    assert forbidden("create", user).search(err), err
    err = kc.fails("delete", "is", "base")
    assert forbidden("delete", user).search(err), err
    err = kc.fails("label", "is", "base", "k=v")
    assert forbidden("patch", user).search(err), err

    assert "(NotFound)" in kc.fails("get", "is", "denied")  # not created
    stream = get_yaml(kc, "is", "base")  # neither deleted nor labeled
    assert "k" not in (stream["metadata"].get("labels") or {})


def test_invalid_token_is_unauthorized(kubectl, kubeconfigs, tmp_path):
    config = yaml.safe_load(kubeconfigs["viewer"].read_text())
    config["users"][0]["user"]["token"] = "okr_not-a-token-this-server-made"
    bad = write(tmp_path / "bad.yaml", yaml.safe_dump(config))
    kc = Kubectl(bad, tmp_path / "home-bad")
    err = kc.fails("get", "is")
    # kubectl's discovery client cannot decode a 401 Status (as against the API server), so
    # it words it its own way; what matters is that it knows it must log in.
    assert err.strip().splitlines()[-1].startswith("error: You must be logged in to the server ("), err


# --------------------------------------------------------------------------------------------
# 9. notification endpoints: cluster-admins only
# --------------------------------------------------------------------------------------------

ENDPOINT_SECRET = "e2e-hmac-key"
# A loopback port nothing listens on: no event is pending while it exists, and were one sent,
# the refusal would only be a logged warning.
NOTIFICATION_ENDPOINT_YAML = f"""\
apiVersion: notifications.okura.io/v1
kind: NotificationEndpoint
metadata:
  name: e2e-hook
spec:
  url: http://127.0.0.1:9/hook
  headers:
    Authorization: [Bearer e2e]
  timeout: 5s
  ignore:
    actions: [pull]
  secret: {ENDPOINT_SECRET}
"""


def test_notification_endpoints_are_applied_listed_and_deleted_by_cluster_admins(kubectl, accounts, tmp_path):
    manifest = write(tmp_path / "endpoint.yaml", NOTIFICATION_ENDPOINT_YAML)
    editor, admin = kubectl("editor"), kubectl("admin")
    # kubectl apply reads the object first: the editor is refused that get.
    refused = re.compile(
        r"notificationendpoints\.notifications\.okura\.io\b.* is forbidden: "
        rf"{re.escape(accounts.editor.subject)} cannot (get|list|delete) notificationendpoints cluster-wide$",
        re.MULTILINE,
    )
    err = editor.fails("apply", "-f", str(manifest))
    assert err.startswith("Error from server (Forbidden)") and refused.search(err), err
    assert ENDPOINT_SECRET not in err

    assert admin.ok("apply", "-f", str(manifest)) == "notificationendpoint.notifications.okura.io/e2e-hook created\n"
    header, rows = parse_table(admin.ok("get", "notificationendpoints"))
    assert header == ["NAME", "URL", "SOURCE", "PENDING", "FAILURES", "AGE"]
    assert row(rows, "e2e-hook")[1:5] == ["http://127.0.0.1:9/hook", "api", "0", "0"]
    obj = get_yaml(admin, "notificationendpoint", "e2e-hook")
    assert obj["spec"]["ignore"] == {"actions": ["pull"]} and obj["status"]["signed"] is True
    assert ENDPOINT_SECRET not in yaml.safe_dump(obj)  # nor in kubectl's last-applied copy

    assert refused.search(editor.fails("get", "notificationendpoints"))
    assert refused.search(editor.fails("delete", "notificationendpoint", "e2e-hook"))
    deleted = admin.ok("delete", "notificationendpoint", "e2e-hook")
    assert deleted == 'notificationendpoint.notifications.okura.io "e2e-hook" deleted\n'
    assert "(NotFound)" in admin.fails("get", "notificationendpoint", "e2e-hook")
