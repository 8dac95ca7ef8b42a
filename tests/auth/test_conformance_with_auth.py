"""The OCI conformance port (tests/protocol/test_conformance_{pull,push,discovery,management}.py)
re-run against an auth-enabled registry, as the suite runs with OCI_USERNAME/OCI_PASSWORD: the
client authenticates through the Docker token dance as an identity that may push, pull and delete
in the `conformance` namespace (only registry-editor there, as OCI_USERNAME/OCI_PASSWORD set to an
editor's credentials). Every test must pass unchanged.

The test functions are imported under prefixed names (pull and push both have a
`test_teardown_deletes`); the `client` fixture below replaces the open registry's client."""

from __future__ import annotations

import httpx
import pytest_asyncio

from tests.protocol import (
    test_conformance_discovery,
    test_conformance_management,
    test_conformance_pull,
    test_conformance_push,
)
from tests.protocol.test_conformance_discovery import discovered  # noqa: F401  (fixtures)
from tests.protocol.test_conformance_management import managed  # noqa: F401
from tests.protocol.test_conformance_pull import pulled  # noqa: F401
from tests.protocol.test_conformance_push import data  # noqa: F401
from tests.support.auth import Accounts, TokenDance

NAMESPACE = "conformance"  # every repository the workflows use is conformance/<workflow>

for _module in (test_conformance_pull, test_conformance_push, test_conformance_discovery, test_conformance_management):
    _workflow = _module.__name__.rsplit("_", 1)[1]
    assert {_module.NS.split("/")[0]} == {NAMESPACE}, _module.NS
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test):
            globals()[f"test_{_workflow}_{_name[5:]}"] = _test
del _module, _workflow, _name, _test


@pytest_asyncio.fixture
async def client(auth_app, accounts: Accounts, connect) -> httpx.AsyncClient:
    person = await accounts.user("oci", ("registry-editor", NAMESPACE))
    return connect(auth_app, auth=TokenDance("oci", person.token))


async def test_the_client_really_authenticates(client, raw):
    """The control: this registry is closed, and the client gets in only through the token dance."""
    assert (await client.get("/v2/conformance/pull/tags/list")).status_code == 404  # allowed; nothing pushed yet
    assert client.auth.fetches == [["repository:conformance/pull:pull"]]
    r = await raw.get("/v2/conformance/pull/tags/list")
    assert r.status_code == 401
    assert (await raw.post("/v2/conformance/push/blobs/uploads/")).status_code == 401
