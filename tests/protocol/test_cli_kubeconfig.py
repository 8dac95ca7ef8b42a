"""`okura kubeconfig`: the server URL (base_url, else the listen address, https with TLS), the
caller's token (an existing one, checked; or a new one for --user), the CA kubectl must trust,
and one-line errors."""

from __future__ import annotations

import base64

import pytest
import yaml

from tests.support.auth import AUTH, Accounts
from tests.support.processes import okura_on
from tests.support.tls import CertificateAuthority

# Neither blob storage nor the database engine plays a part here.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def kubeconfig(app, *args: str) -> tuple[dict, str]:
    result = await okura_on(app, "kubeconfig", *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return yaml.safe_load(result.stdout), result.stderr


def only(doc: dict, key: str) -> dict:
    (entry,) = doc[key]
    return entry[key[:-1]]


async def test_a_token_and_the_tls_address(make_app, tmp_path):
    ca = CertificateAuthority.create(tmp_path / "tls")
    cert, key = ca.issue("server")
    app = await make_app(auth=AUTH, http={"addr": "127.0.0.1:6443", "tls": {"certificate": str(cert), "key": str(key)}})
    person = await Accounts(app).user("dev", ("registry-editor", "team"))

    doc, err = await kubeconfig(app, "--token", person.token, "-n", "team", "--certificate-authority", str(ca.path))
    assert doc["kind"] == "Config" and doc["apiVersion"] == "v1"
    cluster = only(doc, "clusters")
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.path.read_bytes()
    assert only(doc, "users") == {"token": person.token}
    context = only(doc, "contexts")
    assert context["namespace"] == "team"
    assert doc["current-context"] == doc["contexts"][0]["name"]
    assert doc["users"][0]["name"].startswith("dev/")
    assert err == ""

    # Without --certificate-authority: the server's chain does not end in a self-signed
    # certificate here (the CA is not in the file), so nothing is embedded: system trust.
    doc, _ = await kubeconfig(app, "--token", person.token)
    assert "certificate-authority-data" not in only(doc, "clusters")
    assert "namespace" not in only(doc, "contexts")


async def test_a_self_signed_certificate_is_embedded(make_app, tmp_path):
    ca = CertificateAuthority.create(tmp_path / "tls")
    cert, key = ca.issue("server")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(cert.read_bytes() + ca.path.read_bytes())  # server certificate, then its root
    app = await make_app(auth=AUTH, http={"tls": {"certificate": str(chain), "key": str(key)}})
    doc, _ = await kubeconfig(app, "--server", "https://registry.example:5000", "--insecure-skip-tls-verify")
    assert only(doc, "clusters") == {"server": "https://registry.example:5000", "insecure-skip-tls-verify": True}
    assert only(doc, "users") == {}  # no token: anonymous
    doc, _ = await kubeconfig(app, "--server", "https://registry.example:5000")
    assert base64.b64decode(only(doc, "clusters")["certificate-authority-data"]) == ca.path.read_bytes()


async def test_user_mints_a_token_that_works(make_app, connect):
    app = await make_app(auth=AUTH, http={"base_url": "https://registry.example"})
    await Accounts(app).user("dev", ("registry-viewer", "team"))
    doc, err = await kubeconfig(app, "--user", "dev")
    assert only(doc, "clusters")["server"] == "https://registry.example"
    token = only(doc, "users")["token"]
    assert "created for dev" in err
    c = connect(app, headers={"Authorization": f"Bearer {token}"})
    r = await c.get("/apis/image.openshift.io/v1/namespaces/team/imagestreams")
    assert r.status_code == 200, r.text
    assert (await c.get("/apis/image.openshift.io/v1/namespaces/other/imagestreams")).status_code == 403


async def test_plain_http_warns_that_kubectl_would_be_anonymous(make_app):
    app = await make_app(auth=AUTH, http={"addr": "127.0.0.1:5000"})
    person = await Accounts(app).user("dev")
    doc, err = await kubeconfig(app, "--token", person.token)
    assert only(doc, "clusters")["server"] == "http://127.0.0.1:5000"
    assert "only over https" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "okr_not-a-token"], "not valid"),
        (["--user", "nobody"], "no user or service account"),
        (["--server", "registry.example"], "must be an http:// or https:// URL"),
        (["--certificate-authority", "/nonexistent/ca.crt", "--token", "x"], "not valid"),
    ],
)
async def test_mistakes_are_one_line_errors(make_app, args, message):
    app = await make_app(auth=AUTH)
    result = await okura_on(app, "kubeconfig", *args)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
