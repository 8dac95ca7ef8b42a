"""The pruner end to end on a real `okura serve` whose clock the test moves (through
OKURA_TEST_CLOCK_FILE, read by the server and by the `okura` CLI alike).

Podman pushes three revisions of two tags an hour apart; `okura prune images` keeps the
newest two per tag plus what is younger than 90 minutes: a dry run first (nothing
changes), then --confirm. Every kept revision pulls with podman from an empty store, the
pruned ones are gone, and the bytes the run reports freed are exactly what left the
storage directory. Then the schedule: the scheduled run inside the server prunes further
once its cron time comes, and records itself in the pruner's status."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.clients import ClientError, make_clients
from tests.support.clock import MovableClock
from tests.support.images import build_image, random_layers
from tests.support.media_types import DOCKER_MANIFEST
from tests.support.processes import okura_command
from tests.support.registries import start_registry

pytestmark = pytest.mark.e2e

PRUNER = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster"


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clock") / "offset"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, clock_file):
    clock_file.write_text("0")
    env = {"OKURA_TEST_CLOCK_FILE": str(clock_file), "OKURA_PRUNER_CHECK_INTERVAL": "0.5s"}
    yield from start_registry(tmp_path_factory.mktemp("okura-pruner"), env=env)


def storage_files(data_dir: Path) -> dict[str, int]:
    root = data_dir / "blobs" / "blobs"
    return {p.name: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def okura(registry, clock_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    env["OKURA_TEST_CLOCK_FILE"] = str(clock_file)
    return subprocess.run(
        [*okura_command(), *args, "--data-dir", str(registry.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prune_keeps_newest_and_young_revisions_and_frees_what_it_says(registry, clients, clock_file, tmp_path_factory):
    clock = MovableClock(clock_file)
    pushed: dict[str, list[str]] = {"a": [], "b": []}
    for rev in range(3):
        for tag in ("a", "b"):
            image = build_image(
                clients, f"localhost/e2e/prune-{tag}{rev}", random_layers([[40_000 + rev], [7_000]], f"p{tag}{rev}")
            )
            pushed[tag].append(clients.push("podman", image.name, f"{registry.host}/team/app:{tag}"))
        clock.advance(3600)
    # Revision r was pushed (3 - r) hours ago. Keep 1 per tag + younger than 150 minutes:
    # revisions 1 and 2 stay, revision 0 goes.
    before = storage_files(registry.data_dir)

    dry = okura(registry, clock_file, "prune", "images", "--keep-tag-revisions", "1", "--keep-younger-than", "150m")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Dry run enabled")
    assert f"manifest team/app@{pushed['a'][0]}" in dry.stdout
    assert storage_files(registry.data_dir) == before

    real = okura(
        registry,
        clock_file,
        "prune",
        "images",
        "--keep-tag-revisions",
        "1",
        "--keep-younger-than",
        "150m",
        "--confirm",
    )
    assert real.returncode == 0, real.stderr
    after = storage_files(registry.data_dir)
    status = json.loads(okura(registry, clock_file, "pruner", "get", "-o", "json").stdout)["status"]
    run = status["runs"][0]
    assert run["trigger"] == "manual" and run["outcome"] == "succeeded"
    counts = run["counts"]
    assert counts["manifests"] == 2 and counts["tagRevisions"] == 2
    freed = sum(size for name, size in before.items() if name not in after)
    assert freed > 0 and counts["bytesFreed"] == freed

    puller = make_clients(tmp_path_factory, registry, "prune-puller", needs=("podman",))
    for tag, digests in pushed.items():
        for digest in digests[1:]:
            puller.pull(f"{registry.host}/team/app@{digest}")
        puller.pull(f"{registry.host}/team/app:{tag}")
        with pytest.raises(ClientError):
            puller.pull(f"{registry.host}/team/app@{digests[0]}")
    with registry.http() as c:
        for digests in pushed.values():
            assert c.head(f"/v2/team/app/manifests/{digests[0]}").status_code == 404
            r = c.get(f"/v2/team/app/manifests/{digests[2]}", headers={"Accept": DOCKER_MANIFEST})
            for blob in [r.json()["config"], *r.json()["layers"]]:
                assert c.head(f"/v2/team/app/blobs/{blob['digest']}").status_code == 200


def test_scheduled_run_prunes_when_its_time_comes(registry, clock_file):
    clock = MovableClock(clock_file)
    with registry.http() as c:
        r = c.patch(
            PRUNER,
            content=json.dumps(
                {"spec": {"schedule": "*/5 * * * *", "keepTagRevisions": 1, "keepYoungerThanDuration": "0s"}}
            ),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"]["observedGeneration"] == r.json()["metadata"]["generation"]
        before = len(c.get(PRUNER).json()["status"].get("runs", []))
        clock.advance(6 * 60)  # past the next */5 time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = c.get(PRUNER).json()["status"]
            runs = status.get("runs", [])
            if len(runs) > before and runs[0]["outcome"] != "running":
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"no scheduled run: {status}")
        run = runs[0]
        assert run["trigger"] == "scheduled" and run["outcome"] == "succeeded", run
        assert run["counts"]["manifests"] == 2  # revision 1 of each tag
        conditions = {cond["type"]: cond for cond in status["conditions"]}
        assert conditions["Failed"]["status"] == "False"
        assert conditions["Scheduled"]["status"] == "True"
        assert c.get("/v2/team/app/tags/list").json()["tags"] == ["a", "b"]
        metrics = c.get("/metrics").text
        assert "image_registry_operator_image_pruner_install_status 2.0" in metrics
