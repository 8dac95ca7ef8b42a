"""The `okura` command as a user meets it: real processes beside a real server. Each test is
a defect found trying it as a new user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.media_types import OCI_MANIFEST
from tests.support.postgres import PG_ADMIN_URL
from tests.support.processes import OKURA

pytestmark = pytest.mark.e2e


def okura(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed `okura`, with only the OKURA_* variables given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OKURA_", "PROMETHEUS_"))}
    return subprocess.run(
        [OKURA, *args], env={**clean, **(env or {})}, input=stdin, capture_output=True, text=True, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def push_image(client: httpx.Client, repo: str, tag: str) -> str:
    blobs = []
    for data, media_type in (
        (json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()}).encode(), "config"),
        (os.urandom(2000), "layer"),
    ):
        digest = sha256(data)
        assert client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        kind = f"application/vnd.oci.image.{'config.v1+json' if media_type == 'config' else 'layer.v1.tar+gzip'}"
        blobs.append({"mediaType": kind, "digest": digest, "size": len(data)})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[0], "layers": blobs[1:]}).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def test_processes_sharing_the_database_see_each_others_changes(start_server, tmp_path):
    """A server and an `okura prune images --confirm` sharing the database and the storage but
    not the data directory: the server stops serving what the prune deleted at once."""
    shared = {
        "OKURA_DATABASE_URL": f"sqlite:///{tmp_path / 'shared' / 'okura.db'}",
        "OKURA_STORAGE_FILESYSTEM_ROOT": str(tmp_path / "shared" / "blobs"),
    }
    server = start_server(env=shared)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        old = push_image(client, "team/app", "v1")
        push_image(client, "team/app", "v1")  # the first image is now only history
        assert client.get(f"/v2/team/app/manifests/{old}", headers={"Accept": OCI_MANIFEST}).status_code == 200
        result = okura(
            "prune", "images", "--confirm", "--keep-tag-revisions", "1", "--keep-younger-than", "0s",
            "--data-dir", str(tmp_path / "elsewhere"), env=shared,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "1 manifest(s)" in result.stdout, result.stdout
        r = client.get(f"/v2/team/app/manifests/{old}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 404, "the server still serves a manifest the prune deleted"


@pytest.mark.parametrize(
    "command",
    [
        ["get", "is"],
        ["get", "image", "sha256:" + "a" * 64],
        ["auth", "list-tokens"],
        ["auth", "can-i", "get", "imagestreams", "--as", "alice"],
        ["auth", "who-can", "get", "imagestreams"],
        ["pruner", "get"],
        ["prune", "images"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_read_only_commands_never_create_a_database(tmp_path, command):
    data_dir = tmp_path / "fresh"
    result = okura(*command, "--data-dir", str(data_dir))
    one_line_error(result, "error: no database at", str(data_dir / "okura.db"), "okura migrate")
    assert not (data_dir / "okura.db").exists()


def test_read_only_commands_name_an_outdated_or_unreachable_database(tmp_path):
    db = f"sqlite:///{tmp_path / 'old.db'}"
    import sqlite3

    sqlite3.connect(tmp_path / "old.db").close()  # exists, no schema
    one_line_error(okura("get", "is", env={"OKURA_DATABASE_URL": db}), "has no schema", "okura migrate")
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/okura"
    line = one_line_error(okura("get", "is", env={"OKURA_DATABASE_URL": url}), "cannot reach the database")
    assert "postgres@" not in line  # credentials are never printed


def test_image_references_use_the_servers_address(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push_image(client, "team/app", "v1")
        api = client.get("/apis/image.openshift.io/v1/namespaces/team/imagestreams/app").json()
    result = okura("get", "is", "team/app", "-o", "json", "--data-dir", str(server.data_dir))
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    assert cli["status"]["dockerImageRepository"] == f"127.0.0.1:{server.port}/team/app"
    assert cli["status"]["dockerImageRepository"] == api["status"]["dockerImageRepository"]
    table = okura("get", "is", "-n", "team", "--data-dir", str(server.data_dir)).stdout
    assert f"127.0.0.1:{server.port}/team/app" in table
    # With a public base URL, both use it.
    env = {"OKURA_HTTP_BASE_URL": "https://registry.example.com"}
    cli = json.loads(okura("get", "is", "team/app", "-o", "json", "--data-dir", str(server.data_dir), env=env).stdout)
    assert cli["status"]["dockerImageRepository"] == "registry.example.com/team/app"


def test_user_errors_are_one_line_never_a_traceback(tmp_path):
    one_line_error(okura("get", "is", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("http:\n  workers: many\n  addr: nowhere\nuploads:\n  purge_age: soon\n")
    result = okura("check-config", "--config", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid literal" not in result.stderr
    for key in ("http.workers", "http.addr", "uploads.purge_age"):  # every problem at once
        assert f"{key} ({bad})" in result.stderr, result.stderr
    assert okura("migrate", "--data-dir", str(tmp_path / "d")).returncode == 0
    one_line_error(okura("pruner", "apply", "-f", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path / "d")),
                   "missing.yaml", "No such file")  # fmt: skip
    result = okura("serve", "--workers", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2 and "must be at least 1" in result.stderr and "Traceback" not in result.stderr
    result = okura("--version")
    assert result.returncode == 0 and result.stdout.startswith("okura ")
    result = okura("auth", "add-role", "registry-viewer", "ghost", "-n", "team", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0
    assert "warning: no user or service account ghost exists yet" in result.stderr


def test_serve_waits_for_an_unreachable_database_then_says_why(tmp_path):
    url = f"postgres://postgres:secret@127.0.0.1:{closed_port()}/okura"
    start = time.monotonic()
    result = okura("serve", "--data-dir", str(tmp_path / "d"), "--addr", f"127.0.0.1:{closed_port()}",
                   env={"OKURA_DATABASE_URL": url, "OKURA_DATABASE_WAIT_AT_START": "2s"})  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode == 1 and 1.5 < elapsed < 20, (elapsed, result.stderr)
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    attempts = [line for line in result.stderr.splitlines() if "waiting for the database" in line]
    assert len(attempts) >= 2, result.stderr  # one logged line per attempt
    assert result.stderr.strip().splitlines()[-1].startswith("okura serve: error: cannot reach the database")


def test_postgres_urls_are_accepted(start_server, tmp_path):
    import asyncio
    import uuid

    import asyncpg

    name = f"okura_cli_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{name}"
        server = start_server(env={"OKURA_DATABASE_URL": url})
        with httpx.Client(base_url=server.url) as client:
            push_image(client, "team/pg", "v1")
        server.stop()
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_check_config_reaches_the_database_and_the_storage(tmp_path):
    assert okura("migrate", "--data-dir", str(tmp_path / "d")).returncode == 0
    ok = okura("check-config", "--data-dir", str(tmp_path / "d"))
    assert ok.returncode == 0, ok.stderr
    assert "database: sqlite:///" in ok.stdout and "reachable, schema current" in ok.stdout
    assert f"storage: filesystem {tmp_path / 'd' / 'blobs'}" in ok.stdout
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/okura"
    down = okura("check-config", "--data-dir", str(tmp_path / "d"), env={"OKURA_DATABASE_URL": url})
    assert down.returncode == 1
    errors = down.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: database: postgresql://") and "unreachable" in errors[0]
    assert "storage: filesystem" in down.stdout  # the storage is still reported


def test_one_duration_grammar_on_the_command_line(tmp_path):
    d = ["--data-dir", str(tmp_path / "d")]
    assert okura("auth", "create-user", "alice", *d).returncode == 0
    for text, seconds in (("1h30m", 5400), ("2d", 172800), ("90m", 5400)):
        result = okura("auth", "create-token", "alice", "--expires", text, *d)
        assert result.returncode == 0, result.stderr
        expires = result.stderr.split("expires ")[1].strip()
        from datetime import datetime

        left = (datetime.fromisoformat(expires) - datetime.now(datetime.fromisoformat(expires).tzinfo)).total_seconds()
        assert abs(left - seconds) < 60, (text, left)
    result = okura("prune", "images", "--keep-younger-than", "2d", *d)
    assert result.returncode == 0, result.stderr
    ok = okura("check-config", *d, env={"OKURA_UPLOADS_PURGE_AGE": "1d12h", "OKURA_AUTH_TOKEN_TTL": "5m"})
    assert ok.returncode == 0, ok.stderr


def test_a_confirmed_prune_reports_its_phases(start_server, tmp_path):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            push_image(client, "team/app", "v1")
    d = ["--data-dir", str(server.data_dir)]
    result = okura("prune", "images", "--confirm", "--keep-tag-revisions", "1", "--keep-younger-than", "0s", *d)
    assert result.returncode == 0, result.stderr
    phases = result.stderr.splitlines()
    assert phases[0] == "Reading image metadata..." and "3 tag revisions" in phases[1]
    assert "Deleting 2 tag revisions..." in phases and "Deleting 2 manifests..." in phases, phases
    assert any(line.startswith("  2 deleted (") for line in phases)
    assert result.stdout.splitlines()[-1].startswith("Deleted 2 image stream tag item(s)")
    quiet = okura("prune", "images", "--confirm", "-q", *d)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.strip().splitlines() == ["Deleted 0 image stream tag item(s), 0 manifest(s), "
                                                 "0 repository blob link(s), 0 blob(s) (0 B)"]  # fmt: skip
