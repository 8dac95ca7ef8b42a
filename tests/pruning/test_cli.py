"""`okura pruner get/apply/suspend/resume` and `okura prune images`, run in-process against a
real data dir (the prune function itself is injected)."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import pytest
import yaml

from registry.cli import main
from registry.pruning import spec
from tests.support.pruner import SEED_YAML, FakePrune

PATH = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster"


@pytest.fixture
def okura(tmp_path, capsys):
    """Run `okura ARGS --data-dir DIR`; returns (exit code, stdout, stderr)."""
    data_dir = str(tmp_path / "data")

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--data-dir", data_dir])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("migrate")[0] == 0  # what the server does at start; read-only commands never create it
    return run


@pytest.fixture
def patched_prune(monkeypatch) -> FakePrune:
    fake = FakePrune()
    monkeypatch.setattr("registry.pruning.images.prune_images", fake, raising=False)
    return fake


def test_get_prints_the_resource_as_yaml_or_json(okura):
    code, out, _ = okura("pruner", "get")
    assert code == 0
    obj = yaml.safe_load(out)
    assert obj["kind"] == "ImagePruner" and obj["metadata"]["generation"] == 1
    assert obj["spec"]["keepTagRevisions"] == 3
    code, out, _ = okura("pruner", "get", "-o", "json")
    assert json.loads(out)["spec"] == obj["spec"]


def test_apply_suspend_resume_round_trip(okura, tmp_path):
    seed = tmp_path / "pruner.yaml"
    seed.write_text(SEED_YAML.replace("keepTagRevisions: 3", "keepTagRevisions: 4"))
    code, out, _ = okura("pruner", "apply", "-f", str(seed))
    assert (code, out.strip()) == (0, "imagepruner.imageregistry.operator.openshift.io/cluster configured")
    code, out, _ = okura("pruner", "apply", "-f", str(seed))
    assert (code, out.strip()) == (0, "imagepruner.imageregistry.operator.openshift.io/cluster unchanged")
    obj = yaml.safe_load(okura("pruner", "get")[1])
    assert obj["spec"]["keepTagRevisions"] == 4
    assert obj["spec"]["tolerations"] == []
    assert obj["metadata"]["generation"] == 2

    code, out, _ = okura("pruner", "suspend")
    assert (code, out.strip()) == (0, "imagepruner.imageregistry.operator.openshift.io/cluster suspended")
    obj = yaml.safe_load(okura("pruner", "get")[1])
    assert obj["spec"]["suspend"] is True and obj["metadata"]["generation"] == 3
    scheduled = next(c for c in obj["status"]["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Suspended")
    assert "already suspended" in okura("pruner", "suspend")[1]

    code, out, _ = okura("pruner", "resume")
    assert (code, out.strip()) == (0, "imagepruner.imageregistry.operator.openshift.io/cluster resumed")
    obj = yaml.safe_load(okura("pruner", "get")[1])
    assert obj["spec"]["suspend"] is False and obj["metadata"]["generation"] == 4
    assert obj["spec"]["keepTagRevisions"] == 4  # the rest of the spec kept


def test_apply_from_stdin(okura, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"spec": {"schedule": "@hourly"}})))
    code, out, _ = okura("pruner", "apply", "-f", "-")
    assert code == 0, out
    assert yaml.safe_load(okura("pruner", "get")[1])["spec"]["schedule"] == "@hourly"


def test_apply_refuses_invalid_objects_naming_the_field(okura, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ImagePruner\nspec:\n  keepYoungerThanDuration: 2 days\n")
    code, out, err = okura("pruner", "apply", "-f", str(bad))
    assert code == 1 and out == ""
    assert "spec.keepYoungerThanDuration" in err
    code, _, err = okura("pruner", "apply", "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err
    assert yaml.safe_load(okura("pruner", "get")[1])["metadata"]["generation"] == 1


def test_prune_images_is_a_dry_run_by_default_with_options_from_the_spec(okura, patched_prune, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"spec": {"keepTagRevisions": 5, "keepYoungerThanDuration": "2h", "pruneRegistry": False}})
    )
    assert okura("pruner", "apply", "-f", str(spec))[0] == 0
    code, out, err = okura("prune", "images")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Dry run enabled - no modifications will be made. Add --confirm to remove images"
    assert lines[1:3] == ["would delete team/app:v1 revision sha256:aaaa", "would delete blob sha256:bbbb"]
    assert lines[-1] == (
        "Would delete 2 image stream tag item(s), 1 manifest(s), 3 repository blob link(s), 4 blob(s) (5.0 MiB)"
    )
    (options,) = patched_prune.calls
    assert options.confirm is False
    assert (options.keep_tag_revisions, options.keep_younger_than, options.prune_registry) == (5, 7200, False)
    assert options.ignore_invalid_refs is False  # omitted from the applied spec: the API default
    # Dry runs are not recorded.
    assert yaml.safe_load(okura("pruner", "get")[1])["status"]["runs"] == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--keep-tag-revisions", "1"], {"keep_tag_revisions": 1}),
        (["--keep-tag-revisions=0"], {"keep_tag_revisions": 0}),
        (["--keep-younger-than", "90s"], {"keep_younger_than": 90}),
        (["--keep-younger-than=1h"], {"keep_younger_than": 3600}),
        (["--keep-younger-than=0s"], {"keep_younger_than": 0}),
        (["--keep-younger-than=1h30m"], {"keep_younger_than": 5400}),
        (["--prune-registry=false"], {"prune_registry": False}),
        (["--prune-registry"], {"prune_registry": True}),
        (["--ignore-invalid-refs=false"], {"ignore_invalid_refs": False}),
        (["--ignore-invalid-refs=true"], {"ignore_invalid_refs": True}),
        (["--confirm=false"], {"confirm": False}),
    ],
)
def test_prune_images_flags_override_the_spec(okura, patched_prune, flags, expected):
    code, out, err = okura("prune", "images", *flags)
    assert code == 0, err
    (options,) = patched_prune.calls
    for key, value in expected.items():
        assert getattr(options, key) == value, key
    assert out.startswith("Dry run enabled")


@pytest.mark.parametrize(
    "flags",
    [
        ["--keep-tag-revisions", "-1"],
        ["--keep-tag-revisions", "x"],
        ["--keep-younger-than", "1w"],
        ["--keep-younger-than", "soon"],
        ["--prune-registry=maybe"],
        ["--confirm=perhaps"],
    ],
)
def test_prune_images_refuses_bad_flags(okura, patched_prune, flags):
    with pytest.raises(SystemExit) as info:
        okura("prune", "images", *flags)
    assert info.value.code == 2
    assert patched_prune.calls == []


def test_a_confirmed_run_is_recorded_as_manual(okura, patched_prune):
    code, out, err = okura("prune", "images", "--confirm", "--keep-tag-revisions", "2")
    assert code == 0, err
    assert "Dry run" not in out
    assert out.splitlines()[-1] == (
        "Deleted 2 image stream tag item(s), 1 manifest(s), 3 repository blob link(s), 4 blob(s) (5.0 MiB)"
    )
    assert patched_prune.calls[0].confirm is True and patched_prune.calls[0].keep_tag_revisions == 2
    status = yaml.safe_load(okura("pruner", "get")[1])["status"]
    assert [(r["trigger"], r["outcome"]) for r in status["runs"]] == [("manual", "succeeded")]
    assert status["runs"][0]["counts"]["blobs"] == 4
    assert status["lastRun"]["trigger"] == "manual"

    patched_prune.fail = "no space left"
    code, out, err = okura("prune", "images", "--confirm=true")
    assert code == 1
    assert "no space left" in err
    status = yaml.safe_load(okura("pruner", "get")[1])["status"]
    assert [(r["trigger"], r["outcome"]) for r in status["runs"]] == [("manual", "failed"), ("manual", "succeeded")]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["message"]) == ("True", "no space left")


def test_a_confirmed_run_waits_for_no_one(okura, patched_prune, tmp_path):
    """While another process holds the run lease, a confirmed run refuses (never two at once)."""
    from registry.config import config_from_dict
    from registry.metadata import leases
    from registry.pruning import schedule
    from registry.runtime import open_runtime

    async def hold() -> None:
        async with open_runtime(config_from_dict({"data_dir": str(tmp_path / "data")}), storage=False) as runtime:
            db = runtime.registry.db
            assert await leases.acquire(db, schedule.LEASE, ttl=600, holder="server-replica")

    asyncio.run(hold())
    code, _, err = okura("prune", "images", "--confirm")
    assert code == 1
    assert "in progress" in err
    assert patched_prune.calls == []
    # A dry run still works: it changes nothing.
    assert okura("prune", "images")[0] == 0


async def test_cli_changes_are_what_the_server_serves(make_app, connect, tmp_path, pg_url):
    """`okura pruner apply` on the server's data dir (and database), then the API shows it."""
    app = await make_app()
    c = connect(app)
    assert (await c.get(PATH)).json()["metadata"]["generation"] == 1
    config = tmp_path / "okura.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "database": {"url": pg_url or ""}}))
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED_YAML.replace("suspend: false", "suspend: true"))
    code = await asyncio.to_thread(main, ["pruner", "apply", "-f", str(seed), "--config", str(config)])
    assert code == 0
    obj = (await c.get(PATH)).json()
    assert obj["spec"]["suspend"] is True
    assert obj["metadata"]["generation"] == 2
    assert spec.RESOURCE == "imagepruner.imageregistry.operator.openshift.io/cluster"
