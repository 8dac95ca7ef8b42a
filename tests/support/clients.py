"""podman, buildah and skopeo run rootful with a private configuration (vfs storage,
storage.conf, containers.conf, registries.conf, auth file, HOME) so that they touch nothing
outside a temporary directory. The one global piece of client state, the blob-info-cache in
/var/lib/containers/cache (it decides when clients try cross-repository mounts), is isolated by
running every client command under `unshare --mount` with a private directory bind-mounted over
/var/lib/containers. See /work/shared/reference/real-clients.md.

A missing client binary skips the tests that need it, unless OKURA_TEST_REQUIRE_CLIENTS=1, in
which case it is a failure (so is a dockerd that does not start).

Identities: an Account (a token made with `okura auth`) goes to a client as --creds, or in an
auth file (Clients.auth_file_for, write_auth_config) for --authfile or `docker --config DIR`."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.registries import Registry

REQUIRE_CLIENTS = os.environ.get("OKURA_TEST_REQUIRE_CLIENTS") == "1"
CLIENT_TIMEOUT = 300


def unavailable(reason: str) -> None:
    """Skip the test for want of a client, or fail it under OKURA_TEST_REQUIRE_CLIENTS=1."""
    if REQUIRE_CLIENTS:
        pytest.fail(f"{reason} (OKURA_TEST_REQUIRE_CLIENTS=1)", pytrace=False)
    pytest.skip(reason)


def require_binaries(*names: str) -> None:
    """Skip (or fail under OKURA_TEST_REQUIRE_CLIENTS=1) when a client binary is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        unavailable(f"client binaries not installed: {', '.join(missing)}")


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("the e2e suite runs the clients rootful (vfs storage, unshare --mount); run it as root")


@dataclass
class Account:
    """An identity and one of its tokens. Any username works with a token as the password."""

    subject: str  # as the CLI takes it: a user name, or NS/NAME for a service account
    token: str
    token_id: str
    username: str = "e2e"

    @property
    def creds(self) -> str:
        """USER:PASSWORD for skopeo --creds / podman --creds."""
        return f"{self.username}:{self.token}"

    @property
    def basic(self) -> tuple[str, str]:
        return (self.username, self.token)


def write_auth_config(path: Path, host: str, username: str, password: str) -> Path:
    """A containers auth.json / docker config.json holding one registry's credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": encoded}}}))
    return path


def auth_config_entry(path: Path, host: str) -> tuple[str, str] | None:
    """(username, password) stored for `host` in an auth.json / config.json, or None."""
    if not path.exists():
        return None
    entry = json.loads(path.read_text() or "{}").get("auths", {}).get(host)
    if not entry or not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


class ClientError(AssertionError):
    def __init__(self, argv: list[str], result: subprocess.CompletedProcess | None, note: str = ""):
        self.argv = argv
        self.result = result
        out = result.stdout[-3000:] if result else ""
        err = result.stderr[-5000:] if result else ""
        rc = result.returncode if result else "timeout"
        super().__init__(f"{' '.join(argv)} -> exit {rc} {note}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")


def run_client(
    argv: list[str],
    env: dict[str, str],
    check: bool = True,
    timeout: float = CLIENT_TIMEOUT,
    wrapped: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a client command (`wrapped`, the command line that actually runs it, if given) with no
    stdin; its output as text. ClientError, naming `argv`, when it times out or (check) fails."""
    try:
        result = subprocess.run(
            wrapped or argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise ClientError(argv, None, f"(timed out after {timeout}s)") from e
    if check and result.returncode != 0:
        raise ClientError(argv, result)
    return result


# Runs "$@" with a private directory ($0) bind-mounted over /var/lib/containers, in a private
# mount namespace: the clients' global blob-info-cache then lives in that directory.
_ISOLATE = 'mount --bind "$0" /var/lib/containers && exec "$@"'


class Clients:
    """podman, buildah and skopeo on one private storage + one private blob-info-cache."""

    def __init__(self, root: Path, registries: list[str]):
        self.root = root
        self.storage = root / "storage"
        self.runroot = root / "run"
        self.cache_dir = root / "var-lib-containers"
        self.home = root / "home"
        for d in (self.storage, self.runroot, self.cache_dir, self.home, root / "tmp", root / "work"):
            d.mkdir(parents=True, exist_ok=True)
        self.storage_conf = root / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.storage}"\nrunroot = "{self.runroot}"\n'
        )
        self.containers_conf = root / "containers.conf"
        self.containers_conf.write_text(
            "[engine]\n"
            f'tmp_dir = "{self.runroot}/libpod"\n'
            'events_logger = "none"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'image_copy_tmp_dir = "{root}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{self.runroot}/networks"\n'
        )
        self.registries_conf = root / "registries.conf"
        self.registries_conf.write_text(
            "".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n\n' for host in registries)
        )
        self.auth_file = root / "auth.json"
        self.auth_file.write_text('{"auths":{}}')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "DOCKER_", "BUILDAH_"))}
        self.env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_RUNTIME_DIR=str(self.runroot / "xdg"),
            TMPDIR=str(root / "tmp"),
            CONTAINERS_STORAGE_CONF=str(self.storage_conf),
            CONTAINERS_CONF=str(self.containers_conf),
            CONTAINERS_REGISTRIES_CONF=str(self.registries_conf),
            REGISTRY_AUTH_FILE=str(self.auth_file),
        )
        (self.runroot / "xdg").mkdir(parents=True, exist_ok=True)
        self._counter = 0

    def auth_file_for(self, host: str, account: Account) -> Path:
        """A private auth file (for --authfile) holding `account`'s token for `host`."""
        name = re.sub(r"[^a-zA-Z0-9]+", "-", account.subject)
        return write_auth_config(self.root / "authfiles" / f"{name}.json", host, account.username, account.token)

    def workdir(self, name: str) -> Path:
        self._counter += 1
        d = self.root / "work" / f"{self._counter:03d}-{name}"
        d.mkdir(parents=True)
        return d

    def command(self, *argv: str) -> list[str]:
        """`argv` wrapped to run with this instance's private blob-info-cache (use with env=self.env)."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _ISOLATE, str(self.cache_dir), *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
        return run_client(list(argv), self.env, check=check, timeout=timeout, wrapped=self.command(*argv))

    def _storage_flags(self) -> list[str]:
        return ["--root", str(self.storage), "--runroot", str(self.runroot), "--storage-driver", "vfs"]

    def podman(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("podman", *self._storage_flags(), *args, **kw)

    def buildah(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("buildah", *self._storage_flags(), *args, **kw)

    def skopeo(self, *args: str, **kw) -> subprocess.CompletedProcess:
        # skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF
        return self.run("skopeo", "--registries-conf", str(self.registries_conf), *args, **kw)

    # conveniences -------------------------------------------------------------------------
    def push(self, tool: str, local: str, dest: str, fmt: str | None = None, extra: tuple[str, ...] = ()) -> str:
        """Push with podman or buildah; returns the digest the client reports."""
        digestfile = self.workdir("digest") / "digest"
        args = ["push", "--tls-verify=false", "--digestfile", str(digestfile), *extra]
        if fmt:
            args += ["--format", fmt]
        getattr(self, tool)(*args, local, f"docker://{dest}")
        return digestfile.read_text().strip()

    def pull(self, ref: str, *extra: str) -> str:
        """podman pull; returns the local image ID."""
        out = self.podman("pull", "--tls-verify=false", *extra, ref).stdout.strip().splitlines()
        assert out, f"podman pull {ref} printed no image ID"
        return out[-1].strip()

    def image_inspect(self, ref: str) -> dict:
        return json.loads(self.podman("image", "inspect", ref).stdout)[0]

    def skopeo_inspect(self, ref: str, *extra: str) -> dict:
        return json.loads(self.skopeo("inspect", "--tls-verify=false", *extra, f"docker://{ref}").stdout)

    def read_image_files(self, image: str, paths: list[str]) -> dict[str, bytes]:
        """Contents of `paths` inside a local image (podman image mount; vfs gives a plain dir)."""
        mountpoint = Path(self.podman("image", "mount", image).stdout.strip().splitlines()[-1])
        try:
            return {p: (mountpoint / p.lstrip("/")).read_bytes() for p in paths}
        finally:
            self.podman("image", "unmount", image, check=False)


def require_clients(*needs: str) -> None:
    """What Clients need to run `needs` (client binaries): them, root, and the isolation's tools."""
    require_binaries(*needs, "unshare", "mount", "sh")
    require_root()
    os.makedirs("/var/lib/containers", exist_ok=True)  # the bind-mount target must exist


def make_clients(tmp_path_factory, registry: Registry, name: str, needs=("podman", "buildah", "skopeo")) -> Clients:
    require_clients(*needs)
    return Clients(tmp_path_factory.mktemp(name), [registry.host])


def skopeo_argv(clients: Clients, *args: str) -> list[str]:
    """A skopeo command line for Popen (with env=clients.env): runs in the clients' isolation."""
    return clients.command("skopeo", "--registries-conf", str(clients.registries_conf), *args)


def start_client(clients: Clients, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=clients.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
