"""`okura secrets`: pull secrets as kubectl create secret docker-registry and a podman
auth.json make them; the database holds them sealed (no password in it), every write is a
change of the log, bad input is one line and a non-zero exit."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from registry.imports.keyring import DOCKERCFG, DOCKERCONFIGJSON, Keyring, parse_docker_config
from registry.metadata.schema import changes
from registry.metadata.schema import secrets as secrets_table
from registry.model import secrets
from tests.support.backends import SQL_BACKENDS
from tests.support.processes import okura_on

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)
PASSWORD = "pw-3f9c1d-not-in-the-database"


async def ok(app, *args: str) -> str:
    result = await okura_on(app, "secrets", *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


async def fails(app, *args: str, status: int = 1) -> str:
    result = await okura_on(app, "secrets", *args)
    assert result.returncode == status, (args, result.returncode, result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stderr
    return result.stderr


def registry_of(app):
    return app.app.state.runtime.registry


async def stored_rows(app) -> list:
    return await registry_of(app).db.read(lambda conn: conn.execute(select(secrets_table)).all())


async def test_docker_registry_secret_is_sealed_and_matches_its_server(app):
    out = await ok(
        app, "create-docker-registry", "team/quay", "--docker-server", "quay.io/team",
        "--docker-username", "robot", "--docker-password", PASSWORD, "--docker-email", "r@example.com",
    )  # fmt: skip
    assert out == "secret/quay created in team (kubernetes.io/dockerconfigjson)\n"

    [row] = await stored_rows(app)
    assert row.type == DOCKERCONFIGJSON and PASSWORD.encode() not in row.data
    assert base64.b64encode(PASSWORD.encode()) not in row.data

    secret = await secrets.get_secret(registry_of(app), "team", "quay", reveal=True)
    document = json.loads(secret.data[".dockerconfigjson"])
    assert document["auths"]["quay.io/team"]["email"] == "r@example.com"
    keyring = Keyring([("team/quay", parse_docker_config(secret.data[".dockerconfigjson"], secret.type))])
    [credential] = keyring.lookup("quay.io/team/app")
    assert (credential.username, credential.password) == ("robot", PASSWORD)
    assert keyring.lookup("quay.io/other/app") == []
    assert (await secrets.get_secret(registry_of(app), "team", "quay")).data is None  # opened only on request

    listed = await ok(app, "list")
    assert listed.splitlines()[0].split() == ["NAMESPACE", "NAME", "TYPE", "CREATED"]
    assert listed.splitlines()[1].split()[:3] == ["team", "quay", DOCKERCONFIGJSON]
    assert PASSWORD not in listed


async def test_a_podman_auth_json_and_a_legacy_dockercfg(app, tmp_path):
    auth_json = tmp_path / "auth.json"
    auth_json.write_text(json.dumps({"auths": {"r.example:5000": {"auth": base64.b64encode(b"u:p").decode()}}}))
    assert await ok(app, "create", "team/podman", f"--from-file={auth_json}") == (
        "secret/podman created in team (kubernetes.io/dockerconfigjson)\n"
    )
    legacy = tmp_path / "dockercfg"
    legacy.write_text(json.dumps({"https://old.example/v1/": {"auth": base64.b64encode(b"o:q").decode()}}))
    await ok(app, "create", "other/old", f"--from-file=.dockercfg={legacy}")
    found = {(s.namespace, s.name, s.type) for s in await secrets.list_secrets(registry_of(app))}
    assert found == {("team", "podman", DOCKERCONFIGJSON), ("other", "old", DOCKERCFG)}
    assert [line.split()[0] for line in (await ok(app, "list", "-n", "other")).splitlines()[1:]] == ["other"]


async def test_replace_and_delete_are_changes_of_the_log(app):
    reg = registry_of(app)
    args = ["team/quay", "--docker-server", "quay.io", "--docker-username", "a", "--docker-password", PASSWORD]
    await ok(app, "create-docker-registry", *args)
    first = await secrets.get_secret(reg, "team", "quay")
    err = await fails(app, "create-docker-registry", *args)
    assert "already exists" in err
    await ok(app, "create-docker-registry", *args[:-1], "other-password", "--replace")
    second = await secrets.get_secret(reg, "team", "quay", reveal=True)
    assert second.resource_version > first.resource_version and second.uid == first.uid
    assert b"other-password" in base64.b64decode(
        json.loads(second.data[".dockerconfigjson"])["auths"]["quay.io"]["auth"]
    )
    assert await ok(app, "delete", "team/quay") == "secret/quay deleted from team\n"
    assert "not found" in await fails(app, "delete", "team/quay")
    logged = await reg.db.read(
        lambda conn: [(r.type, r.name) for r in conn.execute(select(changes).where(changes.c.resource == "secrets"))]
    )
    assert logged == [("ADDED", "quay"), ("MODIFIED", "quay"), ("DELETED", "quay")]
    assert await stored_rows(app) == []


async def test_bad_input_is_one_line(app, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"auths": {"r.example": {"auth": "!!"}}}')
    assert "not valid base64" in await fails(app, "create", "team/bad", f"--from-file={bad}")
    assert "cannot read" in await fails(app, "create", "team/x", f"--from-file={tmp_path / 'missing'}", status=2)
    assert ".dockerconfigjson or .dockercfg" in await fails(
        app, "create", "team/x", f"--from-file=token={bad}", status=2
    )
    assert "names no namespace" in await fails(app, "delete", "quay", status=2)
    assert "lowercase" in await fails(app, "delete", "team/Not_Valid", status=2)
    not_json = tmp_path / "not.json"
    not_json.write_text(f"password={PASSWORD}")
    err = await fails(app, "create", "team/x", f"--from-file={not_json}")
    assert "invalid" in err
    assert await stored_rows(app) == []
