"""End-to-end fixtures: a real `okura serve` process driven by real clients.

Clients (podman, buildah, skopeo; docker through a private dockerd) run rootful with a private
configuration, see tests/support/clients.py; a missing client binary skips the tests that need
it, unless OKURA_TEST_REQUIRE_CLIENTS=1, in which case it is a failure (so is a dockerd that does
not start).

Run as root:  .venv/bin/pytest tests/e2e        (or -m e2e / -m "not e2e" from the whole suite)
Needs: podman skopeo buildah (apt), docker.io with --no-install-recommends (dockerd, containerd,
runc, tini) plus a docker CLI, util-linux (unshare, mount). Ports from tests/support/ports.py on
127.0.0.1. Every registry writes its log to <tmp>/okura*/okura.log; a failing test shows its tail.

Blob storage (`storage` parameter): every registry fixture runs once per storage a test module
allows, see tests/support/storages.py (STORAGES, @pytest.mark.storages(...),
OKURA_TEST_E2E_STORAGES).

With auth on (auth_registry / AuthRegistry, OKURA_AUTH_ENABLED=true), accounts are made with
`okura auth ...` on the server's data dir; clients pick an identity per command with --authfile
(Clients.auth_file_for), --creds, or `docker --config DIR`, and the HTTP shortcuts act as a
cluster-admin. A module that wants auth overrides `registry` with `auth_registry`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import Clients, make_clients
from tests.support.docker import Docker, start_dockerd
from tests.support.logs import tail
from tests.support.registries import AuthRegistry, Registry, start_registry
from tests.support.storages import ONLY_STORAGES, STORAGES, BlobStore, make_blob_store


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using `storage` (every registry fixture does) runs once per storage its
    closest @pytest.mark.storages(...) allows (all of STORAGES without one)."""
    if "storage" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("storages")
    kinds = list(mark.args) if mark else list(STORAGES)
    unknown = set(kinds) - set(STORAGES)
    if unknown:
        raise ValueError(f"{metafunc.definition.nodeid}: unknown storages {sorted(unknown)}")
    if ONLY_STORAGES:
        kinds = [k for k in kinds if k in ONLY_STORAGES]
    # module scope: one registry per module and storage, tests grouped by storage
    metafunc.parametrize("storage", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage(request) -> str:
    """The blob storage of this module's registry: one of STORAGES (see pytest_generate_tests)."""
    return getattr(request, "param", "filesystem")


@pytest.fixture(scope="module")
def blob_store(request, storage) -> BlobStore:
    """A fresh place for this module's registry to keep its blobs, of the kind `storage` says."""
    return make_blob_store(request, storage)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, blob_store) -> Iterator[Registry]:
    """One registry process per test module and storage, on a fresh data dir."""
    yield from start_registry(tmp_path_factory.mktemp("okura"), store=blob_store)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, blob_store) -> Iterator[AuthRegistry]:
    """One auth-enabled registry per test module and storage. A module that uses it overrides
    `registry` with it, so that `clients`, `puller` and the after-test error check use it too."""
    for registry in start_registry(tmp_path_factory.mktemp("okura-auth"), auth=True, store=blob_store):
        assert isinstance(registry, AuthRegistry)
        yield registry


@pytest.fixture(autouse=True)
def _no_server_errors(request):
    """After every test: the registry logged no 5xx answer and no error, and is still running."""
    if "registry" not in request.fixturenames:
        yield
        return
    registry: Registry = request.getfixturevalue("registry")
    start = registry.mark()
    yield
    alive = registry.proc.poll() is None
    if alive:
        registry.sync_log()
    errors = registry.server_errors(start)
    if errors or not alive:
        text = "\n".join(errors[-20:])
        pytest.fail(
            f"registry {'exited' if not alive else 'is alive'}; it logged {len(errors)} error(s)/5xx:\n{text}",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        registry = funcargs.get("registry")
        if isinstance(registry, Registry):
            report.sections.append((f"okura server log, tail ({registry.log_path})", registry.log_tail(60)))
        dockerd = funcargs.get("dockerd")
        log_path = getattr(dockerd, "log_path", None)
        if log_path is not None:
            report.sections.append((f"dockerd log, tail ({log_path})", tail(log_path, 30)))
    return report


@pytest.fixture(scope="module")
def clients(tmp_path_factory, registry) -> Clients:
    """The clients that build and push (their storage keeps the built images for the module)."""
    return make_clients(tmp_path_factory, registry, "clients")


@pytest.fixture(scope="module")
def puller(tmp_path_factory, registry) -> Clients:
    """A second set of clients with empty storage: pulls fetch every layer from the registry."""
    return make_clients(tmp_path_factory, registry, "puller")


@pytest.fixture(scope="module")
def dockerd(registry) -> Iterator[Docker]:
    """A private dockerd (own data-root, exec-root, socket, containerd namespace; vfs; no
    networking) that may talk plain HTTP to this module's registry."""
    yield from start_dockerd(registry.host)
