"""docker (the private dockerd of tests/e2e/conftest.py) against okura with auth on: `docker login` with a
token as the password, push/pull as an editor, refusals, and cross-namespace mounts (docker asks
to mount straight away, POST ?mount=&from=, without checking the source first).

Each identity has its own docker client configuration directory (`docker --config DIR`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clients import Account, ClientError, auth_config_entry, write_auth_config
from tests.support.docker import Docker, pushed_digest
from tests.support.images import merged_files, random_layers, write_build_context
from tests.support.registries import AuthRegistry

# Authorization is decided before storage is touched: on S3, redirects (blob GETs answered 307,
# followed by clients holding a bearer token) are what differs, so s3-proxy is left out to save time.
pytestmark = [pytest.mark.e2e, pytest.mark.storages("filesystem", "s3-redirect")]

# The private dockerd fixture (tests/e2e/conftest.py) points --insecure-registry at `registry`:
# below, this module's auth-enabled registry.


@pytest.fixture(scope="module")
def registry(auth_registry) -> AuthRegistry:
    return auth_registry


@dataclass
class Accounts:
    editor: Account  # registry-editor in dk-a
    mover: Account  # registry-editor in dk-a, registry-viewer in dk-b
    editor_b: Account  # registry-editor in dk-b
    editor_c: Account  # registry-editor in dk-c


@pytest.fixture(scope="module")
def accounts(registry) -> Accounts:
    return Accounts(
        editor=registry.account("dk-a/pusher", ("registry-editor", "dk-a")),
        mover=registry.account("dk-a/mover", ("registry-editor", "dk-a"), ("registry-viewer", "dk-b")),
        editor_b=registry.account("dk-b/pusher", ("registry-editor", "dk-b")),
        editor_c=registry.account("dk-c/pusher", ("registry-editor", "dk-c")),
    )


def config_dir(dockerd: Docker, name: str) -> Path:
    d = dockerd.root / "configs" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def config_for(dockerd: Docker, registry: AuthRegistry, account: Account) -> Path:
    """A docker client configuration holding `account`'s token (what `docker login` writes)."""
    d = config_dir(dockerd, account.subject.replace("/", "-"))
    write_auth_config(d / "config.json", registry.host, account.username, account.token)
    return d


def docker_as(dockerd: Docker, config: Path, *args: str, stdin: str | None = None, check: bool = True):
    argv = ["docker", "--config", str(config), *args]
    try:
        result = subprocess.run(argv, env=dockerd.env, capture_output=True, text=True, timeout=300, input=stdin)
    except subprocess.TimeoutExpired as e:
        raise ClientError(argv, None, "(timed out after 300s)") from e
    if check and result.returncode != 0:
        raise ClientError(argv, result)
    return result


def failing_docker(dockerd: Docker, config: Path, *args: str, stdin: str | None = None) -> str:
    result = docker_as(dockerd, config, *args, stdin=stdin, check=False)
    assert result.returncode != 0, f"docker {' '.join(args)} succeeded:\n{result.stdout}\n{result.stderr}"
    return (result.stdout + result.stderr).lower()


def build(dockerd: Docker, tag: str, sizes: list[list[int]]) -> dict[str, bytes]:
    """docker build (legacy builder) of FROM scratch + one COPY per layer; returns the files."""
    layers = random_layers(sizes, tag)
    ctx = dockerd.root / "ctx" / tag
    write_build_context(ctx, layers, "Dockerfile")
    dockerd.run("build", "-t", f"e2e-auth/{tag}", str(ctx))
    return merged_files(layers)


@pytest.fixture(scope="module")
def images(dockerd) -> dict[str, dict[str, bytes]]:
    """Local images e2e-auth/<name> with disjoint layers."""
    return {
        "app": build(dockerd, "app", [[60_000], [20_000]]),
        "shared": build(dockerd, "shared", [[50_000], [15_000]]),
        "secret": build(dockerd, "secret", [[45_000], [25_000]]),
    }


def summary(entries: list[dict[str, str]]) -> str:
    return "\n".join(
        f"{e['method']} {e['path']} {e['status']} in={e['bytes_in']} as={e.get('subject')}" for e in entries
    )


def test_docker_login_with_token_push_pull(registry, dockerd, accounts, images):
    config = config_dir(dockerd, "login")
    out = docker_as(dockerd, config, "login", "-u", "whoever", "--password-stdin", registry.host,
                    stdin=accounts.editor.token + "\n")  # fmt: skip
    assert "login succeeded" in (out.stdout + out.stderr).lower()
    assert auth_config_entry(config / "config.json", registry.host) == ("whoever", accounts.editor.token)

    ref = f"{registry.host}/dk-a/app:v1"
    dockerd.run("tag", "e2e-auth/app", ref)
    digest = pushed_digest(docker_as(dockerd, config, "push", ref).stdout, "v1")
    assert registry.manifest_json("dk-a/app", "v1")[0] == digest

    dockerd.run("rmi", ref)
    out = docker_as(dockerd, config, "pull", ref).stdout
    assert f"Digest: {digest}" in out
    files = dockerd.export(ref)
    for path, data in images["app"].items():
        assert files.get(path) == data, f"{path} differs after docker push/pull"

    # the same token may not write into another namespace; nobody may push anonymously
    other = f"{registry.host}/dk-z/app:v1"
    dockerd.run("tag", "e2e-auth/app", other)
    out = failing_docker(dockerd, config, "push", other)
    assert "denied" in out and "namespace dk-z" in out, out
    out = failing_docker(dockerd, config, "pull", f"{registry.host}/dk-z/app:v1")
    assert "denied" in out and "namespace dk-z" in out, out
    anonymous = config_dir(dockerd, "anonymous")
    out = failing_docker(dockerd, anonymous, "push", f"{registry.host}/dk-a/app:v1")
    assert "authentication required" in out or "unauthorized" in out, out
    out = failing_docker(dockerd, anonymous, "pull", f"{registry.host}/dk-a/app:v1")
    assert "authentication required" in out or "unauthorized" in out, out
    assert registry.get_manifest("dk-z/app", "v1").status_code == 404


def test_docker_login_with_bad_password_fails(registry, dockerd, accounts):
    config = config_dir(dockerd, "bad-login")
    out = failing_docker(dockerd, config, "login", "-u", "whoever", "--password-stdin", registry.host,
                         stdin=accounts.editor.token + "-wrong\n")  # fmt: skip
    assert "unauthorized" in out or "invalid" in out, out
    assert auth_config_entry(config / "config.json", registry.host) is None
    out = failing_docker(dockerd, config, "login", "-u", "dk-a/pusher", "--password-stdin", registry.host,
                         stdin="not-a-token\n")  # fmt: skip
    assert "unauthorized" in out or "invalid" in out, out


def test_docker_mount_from_readable_namespace(registry, dockerd, accounts, images):
    """mover (editor of dk-a, viewer of dk-b) pushes an image whose layers docker last pushed to
    dk-b: docker mounts them (201)."""
    source = f"{registry.host}/dk-b/base:v1"
    dockerd.run("tag", "e2e-auth/shared", source)
    docker_as(dockerd, config_for(dockerd, registry, accounts.editor_b), "push", source)
    _, _, manifest = registry.manifest_json("dk-b/base", "v1")
    layers = manifest["layers"]

    target = f"{registry.host}/dk-a/mounted:v1"
    dockerd.run("tag", "e2e-auth/shared", target)
    mark = registry.mark()
    digest = pushed_digest(
        docker_as(dockerd, config_for(dockerd, registry, accounts.mover), "push", target).stdout, "v1"
    )
    entries = registry.access(mark)
    ours = [e for e in entries if e["path"].startswith("/v2/dk-a/mounted/")]
    assert registry.manifest_json("dk-a/mounted", "v1")[0] == digest
    mounted = [e for e in ours if e["method"] == "POST" and e["status"] == "201"]
    assert len(mounted) == len(layers), f"expected {len(layers)} mounts answered 201:\n{summary(entries)}"
    smallest = min(layer["size"] for layer in layers)
    assert all(int(e["bytes_in"]) < smallest for e in ours if e["method"] == "PATCH"), summary(entries)


def test_docker_mount_from_unreadable_namespace_falls_back_to_upload(registry, dockerd, accounts, images):
    """editor (dk-a only) pushes an image whose layers docker last pushed to dk-c: docker asks to
    mount from dk-c, the registry answers 202 (upload instead), and the layers are uploaded."""
    source = f"{registry.host}/dk-c/secret:v1"
    dockerd.run("tag", "e2e-auth/secret", source)
    docker_as(dockerd, config_for(dockerd, registry, accounts.editor_c), "push", source)
    _, _, manifest = registry.manifest_json("dk-c/secret", "v1")
    layers = manifest["layers"]

    target = f"{registry.host}/dk-a/fromc:v1"
    dockerd.run("tag", "e2e-auth/secret", target)
    mark = registry.mark()
    out = docker_as(dockerd, config_for(dockerd, registry, accounts.editor), "push", target).stdout
    digest = pushed_digest(out, "v1")
    assert "mounted from" not in out.lower(), out
    entries = registry.access(mark)
    ours = [e for e in entries if e["path"].startswith("/v2/dk-a/fromc/")]
    assert registry.manifest_json("dk-a/fromc", "v1")[0] == digest
    posts = [e for e in ours if e["method"] == "POST" and e["path"] == "/v2/dk-a/fromc/blobs/uploads/"]
    assert posts and all(e["status"] == "202" for e in posts), f"a mount from dk-c was granted:\n{summary(entries)}"
    uploaded = sum(int(e["bytes_in"]) for e in ours if e["method"] == "PATCH")
    assert uploaded >= sum(layer["size"] for layer in layers), f"layers were not uploaded:\n{summary(entries)}"
    assert not [e for e in entries if e["path"].startswith("/v2/dk-c/") and e["status"][0] == "2"], summary(entries)
    for layer in layers:
        r = registry.head_blob("dk-a/fromc", layer["digest"])
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == layer["size"]
