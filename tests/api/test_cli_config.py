"""`okura config get/apply/edit`, run in-process against a real data dir (the editor is a small
script given as $EDITOR, as kubectl edit takes one)."""

from __future__ import annotations

import io
import json
import logging
import shlex
import stat
import sys
from pathlib import Path

import pytest
import yaml

from registry.cli import main
from tests.support.processes import okura_command

RESOURCE = "config.imageregistry.operator.openshift.io/cluster"


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def okura(data_dir, capsys):
    """Run `okura ARGS --data-dir DIR`; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--data-dir", data_dir])
        out, err = capsys.readouterr()
        return code, out, err

    # What the server does at start (read-only commands never create the database). It sets
    # up logging to this test's captured stderr, as `okura serve` does: undone, as a fresh
    # process running one command would have none.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    assert run("migrate")[0] == 0
    root.handlers[:], root.level = handlers, level
    return run


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """editor(script): $EDITOR becomes a shell script whose body is `script` ($1: the file)."""
    monkeypatch.delenv("KUBE_EDITOR", raising=False)

    def make(script: str) -> Path:
        path = tmp_path / "editor.sh"
        path.write_text(f"#!/bin/sh\nset -e\n{script}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("EDITOR", str(path))
        return path

    return make


def get(okura) -> dict:
    code, out, err = okura("config", "get")
    assert code == 0, err
    return yaml.safe_load(out)


def test_get_prints_the_whole_object_as_yaml_or_json(okura, data_dir):
    obj = get(okura)
    assert (obj["kind"], obj["metadata"]["name"], obj["metadata"]["generation"]) == ("Config", "cluster", 1)
    assert obj["spec"]["managementState"] == "Managed" and obj["spec"]["replicas"] == 1
    assert obj["spec"]["storage"]["filesystem"]["path"] == str(Path(data_dir) / "blobs")
    assert [c["type"] for c in obj["status"]["conditions"]][:3] == ["Available", "Progressing", "Degraded"]
    code, out, _ = okura("config", "get", "-o", "json")
    assert code == 0 and json.loads(out)["spec"] == obj["spec"]


def test_apply_replaces_the_spec_and_says_whether_anything_changed(okura, tmp_path):
    manifest = tmp_path / "config.yaml"
    manifest.write_text(
        "apiVersion: imageregistry.operator.openshift.io/v1\nkind: Config\n"
        "metadata:\n  name: cluster\n  labels: {ignored: 'yes'}\n"
        "spec:\n  managementState: Managed\n  readOnly: true\n  requests:\n    read:\n      maxRunning: 10\n"
    )
    code, out, err = okura("config", "apply", "-f", str(manifest))
    assert (code, out, err) == (0, f"{RESOURCE} configured\n", "")
    assert okura("config", "apply", "-f", str(manifest))[1] == f"{RESOURCE} unchanged\n"
    obj = get(okura)
    assert obj["spec"]["readOnly"] is True and obj["spec"]["requests"]["read"]["maxRunning"] == 10
    assert obj["metadata"]["generation"] == 2
    assert "labels" not in obj["metadata"]  # the spec only


def test_apply_from_stdin_and_a_get_round_trip(okura, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"spec": {"logLevel": "Debug"}})))
    assert okura("config", "apply", "-f", "-")[:2] == (0, f"{RESOURCE} configured\n")
    obj = get(okura)
    assert obj["spec"]["logLevel"] == "Debug"
    # What `config get` prints (status, storage and all) applies as it is: nothing changes.
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(obj)))
    assert okura("config", "apply", "-f", "-")[:2] == (0, f"{RESOURCE} unchanged\n")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("replicas: -1", "spec.replicas"),
        ("managementState: Sideways", "spec.managementState"),
        ("requests: {write: {maxWaitInQueue: soon}}", "spec.requests.write.maxWaitInQueue"),
        ("routes: [{name: a}, {name: a}]", "spec.routes[1].name"),
        ("storage: {filesystem: {path: /elsewhere}}", "set in the config file"),
        ("readOnyl: true", "spec.readOnyl"),
    ],
)
def test_apply_refuses_an_invalid_object_naming_the_field(okura, tmp_path, spec, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"kind: Config\nspec:\n  {spec}\n")
    code, out, err = okura("config", "apply", "-f", str(bad))
    assert (code, out) == (1, "")
    assert err.startswith("okura config apply: error: ") and says in err, err
    assert get(okura)["metadata"]["generation"] == 1


def test_apply_of_a_missing_file(okura, tmp_path):
    code, _, err = okura("config", "apply", "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err


def test_edit_applies_what_the_editor_saved(okura, editor):
    labels = "s/^  name: cluster$/  name: cluster\\n  labels: {a: b}/"
    editor(f"sed -i -e 's/readOnly: false/readOnly: true/' -e '{labels}' \"$1\"")
    before = get(okura)
    code, out, err = okura("config", "edit")
    assert (code, out, err) == (0, f"{RESOURCE} edited\n", "")
    after = get(okura)
    assert after["spec"]["readOnly"] is True
    assert after["metadata"]["labels"] == {"a": "b"}  # metadata the edit may change
    assert after["metadata"]["generation"] == 2
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_an_edit_that_changes_nothing_is_cancelled(okura, editor, tmp_path):
    seen = tmp_path / "seen.yaml"
    editor(f'cp "$1" {shlex.quote(str(seen))}')
    assert okura("config", "edit")[:2] == (0, "Edit cancelled, no changes made.\n")
    shown = seen.read_text()
    assert shown.startswith("# Please edit the object below.")
    obj = yaml.safe_load(shown)
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}  # no status
    assert obj["metadata"]["resourceVersion"] == get(okura)["metadata"]["resourceVersion"]
    editor(': > "$1"')
    assert okura("config", "edit")[:2] == (0, "Edit cancelled, saved file was empty.\n")
    assert get(okura)["metadata"]["generation"] == 1


def test_an_invalid_edit_is_refused_and_kept(okura, editor):
    editor("sed -i 's/replicas: 1/replicas: -3/' \"$1\"")
    code, out, err = okura("config", "edit")
    assert (code, out) == (1, "")
    assert "okura config edit: error: spec.replicas" in err
    kept = err.split("stored to ", 1)[1].split("\n", 1)[0].strip("'")
    assert "replicas: -3" in Path(kept).read_text()
    Path(kept).unlink()
    editor("echo 'spec: [' >> \"$1\"")
    code, _, err = okura("config", "edit")
    assert code == 1 and "not valid YAML" in err
    Path(err.rsplit("your changes are in ", 1)[1].strip()).unlink()
    editor("exit 3")
    code, _, err = okura("config", "edit")
    assert code == 1 and "exited with status 3" in err
    assert get(okura)["metadata"]["generation"] == 1


def test_an_edit_of_a_config_changed_meanwhile_is_a_conflict(okura, editor, data_dir, tmp_path):
    """The edit applies only to the version it showed (a resourceVersion precondition)."""
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"spec": {"logLevel": "Trace"}}))
    okura_cli = shlex.join([*okura_command(), "config", "apply", "-f", str(other), "--data-dir", data_dir])
    editor(f"{okura_cli} >/dev/null\nsed -i 's/readOnly: false/readOnly: true/' \"$1\"")
    code, out, err = okura("config", "edit")
    assert (code, out) == (1, "")
    assert "the object has been modified" in err, err
    obj = get(okura)
    assert obj["spec"]["logLevel"] == "Trace" and obj["spec"]["readOnly"] is False
    Path(err.split("stored to ", 1)[1].split("\n", 1)[0].strip("'")).unlink()
