"""The real kubectl on the registry's Config resource (configs.imageregistry.operator.openshift.io,
one cluster-scoped object named cluster) of a real `okura serve` over HTTPS with auth on:
discovery and explain, the table, -o yaml, patch, apply and edit as cluster-admin, and the
refusals (others' 403, other names' 404, invalid fields' 422) as kubectl prints them.

A server of this module's own (the fixtures of test_kubectl.py): read-only mode, set here, must
not meet the pushes of the other modules."""

from __future__ import annotations

import re
import stat

import yaml

from tests.e2e import test_kubectl as base
from tests.e2e.test_kubectl import get_yaml, row, write
from tests.support.kubectl import parse_table

# test_kubectl.py's fixtures, made again for this module (its own server).
server, accounts, kubeconfigs, kubectl = base.server, base.accounts, base.kubeconfigs, base.kubectl
_no_server_errors = base._no_server_errors

CONFIG = "configs.imageregistry.operator.openshift.io"
NAMED = "config.imageregistry.operator.openshift.io/cluster"
GROUP = "imageregistry.operator.openshift.io"


def test_api_resources_and_explain(kubectl):
    kc = kubectl("admin")
    header, rows = parse_table(kc.ok("api-resources", f"--api-group={GROUP}"))
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert row(rows, "configs") == ["configs", "", f"{GROUP}/v1", "false", "Config"]
    out = kc.ok("explain", f"{CONFIG}.spec.storage.s3")
    assert re.search(r"^KIND:\s+Config$", out, re.MULTILINE), out
    fields = out.split("FIELDS:", 1)[1]
    for name in ("bucket", "region", "regionEndpoint", "rootDirectory", "virtualHostedStyle"):
        assert re.search(rf"^\s+{name}\s+<\w+>$", fields, re.MULTILINE), out


def test_get_table_and_yaml(kubectl, server):
    kc = kubectl("admin")
    header, rows = parse_table(kc.ok("get", CONFIG))
    assert header == ["NAME", "AGE"]
    assert [r[0] for r in rows] == ["cluster"]
    obj = get_yaml(kc, CONFIG, "cluster")
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == (f"{GROUP}/v1", "Config", "cluster")
    assert obj["spec"]["managementState"] == "Managed"
    assert obj["spec"]["storage"]["filesystem"]["path"] == str(server.data_dir / "blobs")
    status = obj["status"]
    assert status["readyReplicas"] == 1  # the server itself, registered and ready
    assert {c["type"] for c in status["conditions"]} >= {"Available", "Progressing", "Degraded", "StorageExists"}


def test_patch_read_only_takes_effect_and_back(kubectl, server, accounts):
    kc = kubectl("admin")
    before = get_yaml(kc, CONFIG, "cluster")["metadata"]["generation"]
    try:
        out = kc.ok("patch", CONFIG, "cluster", "--type", "merge", "-p", '{"spec":{"readOnly":true}}')
        assert out == f"{NAMED} patched\n"
        obj = get_yaml(kc, CONFIG, "cluster")
        assert obj["spec"]["readOnly"] is True and obj["metadata"]["generation"] == before + 1
        with server.http(accounts.admin) as c:
            assert c.post("/v2/team/app/blobs/uploads/").status_code == 405  # in effect at once
    finally:
        kc.ok("patch", CONFIG, "cluster", "--type", "merge", "-p", '{"spec":{"readOnly":false}}')
    with server.http(accounts.admin) as c:
        assert c.post("/v2/team/app/blobs/uploads/").status_code == 202


def test_apply_and_edit(kubectl, tmp_path):
    kc = kubectl("admin")
    manifest = write(
        tmp_path / "config.yaml",
        yaml.safe_dump(
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Config",
                "metadata": {"name": "cluster"},
                "spec": {"managementState": "Managed", "requests": {"read": {"maxRunning": 50, "maxInQueue": 10}}},
            }
        ),
    )
    result = kc.run("apply", "-f", str(manifest))
    assert result.stdout == f"{NAMED} configured\n", result
    assert get_yaml(kc, CONFIG, "cluster")["spec"]["requests"]["read"]["maxRunning"] == 50

    editor = write(tmp_path / "editor.sh", "#!/bin/sh\nsed -i 's/maxRunning: 50/maxRunning: 60/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    assert kc.ok("edit", CONFIG, "cluster", env={"EDITOR": str(editor)}) == f"{NAMED} edited\n"
    assert get_yaml(kc, CONFIG, "cluster")["spec"]["requests"]["read"]["maxRunning"] == 60
    kc.ok("patch", CONFIG, "cluster", "--type", "json", "-p", '[{"op":"remove","path":"/spec/requests"}]')
    assert get_yaml(kc, CONFIG, "cluster")["spec"]["requests"]["read"]["maxRunning"] == 0


def test_refusals_as_kubectl_prints_them(kubectl):
    err = kubectl("editor").fails("get", CONFIG, "cluster")
    assert "Forbidden" in err and CONFIG in err, err
    err = kubectl("admin").fails("get", CONFIG, "other")
    assert f'{CONFIG} "other" not found' in err, err
    err = kubectl("admin").fails("patch", CONFIG, "cluster", "--type", "merge", "-p", '{"spec":{"replicas":-1}}')
    assert "spec.replicas" in err, err
    err = kubectl("admin").fails(
        "patch", CONFIG, "cluster", "--type", "merge", "-p", '{"spec":{"storage":{"s3":{"bucket":"b"}}}}'
    )
    assert "config file" in err, err


def test_can_i(kubectl):
    # (kubectl warns that the kubeconfig's namespace does not apply to a cluster-scoped resource)
    result = kubectl("admin").run("auth", "can-i", "update", CONFIG, check=False)
    assert (result.returncode, result.stdout) == (0, "yes\n"), result
    result = kubectl("editor").run("auth", "can-i", "get", CONFIG, check=False)
    assert (result.returncode, result.stdout) == (1, "no\n"), result
