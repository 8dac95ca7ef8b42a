"""podman, buildah and skopeo against okura with OpenShift-style auth on: logins with tokens,
per-namespace roles (editor pushes, viewer only pulls, "denied" naming the namespace otherwise),
public namespaces pulled anonymously, catalogs filtered per caller, cross-namespace mounts only
from what the caller may read, revoked tokens refused at once.

Accounts are made with `okura auth ...` on the server's data dir; each client command picks an
identity with --authfile (a per-account auth.json), --creds, or nothing (anonymous)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from tests.support.clients import Account, ClientError, Clients, auth_config_entry
from tests.support.digests import sha256
from tests.support.images import BuiltImage, build_image, random_layers
from tests.support.registries import AuthRegistry

# Authorization is decided before storage is touched: on S3, redirects (blob GETs answered 307,
# followed by clients holding a bearer token) are what differs, so s3-proxy is left out to save time.
pytestmark = [pytest.mark.e2e, pytest.mark.storages("filesystem", "s3-redirect")]

TLS = ["--src-tls-verify=false", "--dest-tls-verify=false"]


@pytest.fixture(scope="module")
def registry(auth_registry) -> AuthRegistry:
    """This module's registry has auth on (clients, puller and the error check use it)."""
    return auth_registry


@dataclass
class Accounts:
    builder: Account  # registry-editor in team-a
    reader: Account  # registry-viewer in team-a
    mover: Account  # registry-editor in team-a, registry-viewer in team-b
    editor_b: Account  # registry-editor in team-b
    editor_c: Account  # registry-editor in team-c
    nobody: Account  # a user with no role anywhere


@pytest.fixture(scope="module")
def accounts(registry) -> Accounts:
    registry.grant("registry-viewer", "system:unauthenticated", "pub")  # pub: publicly pullable
    return Accounts(
        builder=registry.account("team-a/builder", ("registry-editor", "team-a")),
        reader=registry.account("team-a/reader", ("registry-viewer", "team-a")),
        mover=registry.account("team-a/mover", ("registry-editor", "team-a"), ("registry-viewer", "team-b")),
        editor_b=registry.account("team-b/editor", ("registry-editor", "team-b")),
        editor_c=registry.account("team-c/editor", ("registry-editor", "team-c")),
        nobody=registry.account("nobody"),
    )


@pytest.fixture(scope="module")
def images(clients) -> dict[str, BuiltImage]:
    """Small images with disjoint layers: `base` goes to team-a and pub, `b` only to team-b,
    `c` only to team-c."""
    return {
        key: build_image(clients, f"localhost/e2e/auth-{key}", random_layers(sizes, f"auth-{key}"))
        for key, sizes in (("base", [[40_000], [12_000]]), ("b", [[30_000], [20_000]]), ("c", [[35_000], [15_000]]))
    }


def authfile(registry: AuthRegistry, clients: Clients, account: Account) -> tuple[str, ...]:
    return ("--authfile", str(clients.auth_file_for(registry.host, account)))


@pytest.fixture(scope="module")
def seeded(registry, clients, accounts, images) -> dict[str, str]:
    """Each namespace's editor pushes its image with podman: repository -> manifest digest.
    The pushing clients' blob-info-cache thereby learns where each layer lives."""
    pushes = {
        "team-a/app": ("base", accounts.builder),
        "team-b/base": ("b", accounts.editor_b),
        "team-c/secret": ("c", accounts.editor_c),
        "pub/app": ("base", registry.admin),
    }
    out = {}
    for repo, (key, account) in pushes.items():
        ref = f"{registry.host}/{repo}:v1"
        out[repo] = clients.push("podman", images[key].name, ref, extra=authfile(registry, clients, account))
    return out


def failing(fn, *args, **kw) -> str:
    """Run a client command that must fail; returns its output (stderr + stdout), lowercased."""
    with pytest.raises(ClientError) as excinfo:
        fn(*args, **kw)
    result = excinfo.value.result
    assert result is not None, str(excinfo.value)
    return (result.stderr + result.stdout).lower()


def assert_auth_error(output: str) -> None:
    assert "authentication required" in output or "unauthorized" in output, output


def assert_pulled_files(puller: Clients, image_id: str, image: BuiltImage) -> None:
    files = puller.read_image_files(image_id, list(image.files))
    for path, data in image.files.items():
        assert files[path] == data, f"{path} differs after the round trip"


def summary(entries: list[dict[str, str]]) -> str:
    return "\n".join(
        f"{e['method']} {e['path']} {e['status']} in={e['bytes_in']} as={e.get('subject')}" for e in entries
    )


# --------------------------------------------------------------------------------------------
# 1. podman login / logout with a token
# --------------------------------------------------------------------------------------------


def test_podman_login_with_token_then_logout(registry, clients, accounts, images, seeded):
    auth = clients.root / "login-auth.json"
    auth.write_text('{"auths":{}}')
    login = ["login", "--tls-verify=false", "--authfile", str(auth)]

    out = clients.podman(*login, "-u", "any-name-at-all", "-p", accounts.builder.token, registry.host)
    assert "login succeeded" in (out.stdout + out.stderr).lower()
    assert auth_config_entry(auth, registry.host) == ("any-name-at-all", accounts.builder.token)
    ref = f"{registry.host}/team-a/login:v1"
    assert clients.push("podman", images["base"].name, ref, extra=("--authfile", str(auth))) == seeded["team-a/app"]

    clients.podman("logout", "--authfile", str(auth), registry.host)
    assert auth_config_entry(auth, registry.host) is None
    out = failing(clients.push, "podman", images["base"].name, f"{registry.host}/team-a/login:v2", None,
                  ("--authfile", str(auth)))  # fmt: skip
    assert_auth_error(out)
    assert registry.get_manifest("team-a/login", "v2").status_code == 404

    out = failing(clients.podman, *login, "-u", "any-name-at-all", "-p", accounts.builder.token + "x", registry.host)
    assert "invalid username/password" in out, out  # c/image's words for a 401 from the token endpoint
    assert auth_config_entry(auth, registry.host) is None, "a failed login stored credentials"


# --------------------------------------------------------------------------------------------
# 2. an editor pushes and pulls in its namespace, and is denied elsewhere
# --------------------------------------------------------------------------------------------


def test_editor_pushes_and_pulls_in_its_namespace(registry, clients, puller, accounts, images, seeded):
    image = images["base"]
    as_builder = authfile(registry, clients, accounts.builder)
    digest, _, manifest = registry.manifest_json("team-a/app", "v1")  # pushed with podman by `seeded`
    assert digest == seeded["team-a/app"]
    assert len(manifest["layers"]) == len(image.layers)

    buildah_digest = clients.push("buildah", image.name, f"{registry.host}/team-a/app:buildah", extra=as_builder)
    assert registry.manifest_json("team-a/app", "buildah")[0] == buildah_digest

    ref = f"{registry.host}/team-a/app:v1"
    puller.podman("rmi", "--ignore", "--force", ref)
    mark = registry.mark()
    image_id = puller.pull(ref, *authfile(registry, puller, accounts.builder))
    registry.check_blob_reads(registry.access(mark))  # s3-redirect: 307s followed with a bearer token
    assert puller.image_inspect(image_id)["Digest"] == digest
    assert_pulled_files(puller, image_id, image)
    puller.podman("rmi", "--force", image_id)


DENIED_HELP = (
    "the registry refused correctly ({refusals}) but the client does not show it: a refusal must read "
    "\"denied\" naming the namespace (the 403's message, or its challenge's error_description, which "
    'RFC 6750 clients print), or "403 (Forbidden)" naming the repository (what c/image prints for a 403 '
    "to a HEAD, whose answer has no body). The 403 comes from OpenShiftAccessController._deny in "
    "auth/controller.py.\nclient output:\n{out}"
)
_REPOSITORY_RE = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")


def assert_denied_shown(registry, mark: int, namespace: str, out: str) -> None:
    """The registry refused in `namespace` with 403 (every method, HEAD included), and the client
    either says "denied" and names the namespace (the registry's message: SUBJECT cannot VERB
    RESOURCE in namespace NS) or, for a refused HEAD, "403 (Forbidden)" and the repository."""
    entries = registry.access(mark)
    ours = [e for e in entries if e["path"].startswith(f"/v2/{namespace}/")]
    refusals = [e for e in ours if e["status"] == "403"]
    assert refusals, f"no refusal in {namespace}:\n{summary(entries)}"
    assert not [e for e in ours if e["status"][0] == "2"]
    repositories = {m.group(1) for e in refusals if (m := _REPOSITORY_RE.match(e["path"]))}
    shown = ("denied" in out and f"namespace {namespace}" in out) or (
        "403 (forbidden)" in out and any(repo in out for repo in repositories)
    )
    first = refusals[0]
    assert shown, DENIED_HELP.format(refusals=f"first: {first['method']} {first['path']} {first['status']}", out=out)


@pytest.mark.parametrize("tool", ["podman", "buildah"])
def test_editor_push_into_another_namespace_is_denied(registry, clients, accounts, images, seeded, tool):
    ref = f"{registry.host}/team-z/app:{tool}"
    mark = registry.mark()
    out = failing(clients.push, tool, images["base"].name, ref, None, authfile(registry, clients, accounts.builder))
    assert registry.get_manifest("team-z/app", tool).status_code == 404
    assert_denied_shown(registry, mark, "team-z", out)


def test_skopeo_copy_into_another_namespace_is_denied(registry, clients, accounts, seeded):
    src = f"docker://{registry.host}/team-a/app:v1"
    dest = f"docker://{registry.host}/team-z/copied:v1"
    mark = registry.mark()
    out = failing(clients.skopeo, "copy", *TLS, "--src-creds", accounts.builder.creds,
                  "--dest-creds", accounts.builder.creds, src, dest)  # fmt: skip
    assert registry.get_manifest("team-z/copied", "v1").status_code == 404
    assert_denied_shown(registry, mark, "team-z", out)


def test_editor_pull_from_another_namespace_is_denied(registry, puller, accounts, seeded):
    mark = registry.mark()
    out = failing(puller.pull, f"{registry.host}/team-b/base:v1", *authfile(registry, puller, accounts.builder))
    assert_denied_shown(registry, mark, "team-b", out)


def test_skopeo_inspect_in_another_namespace_is_denied(registry, clients, accounts, seeded):
    mark = registry.mark()
    out = failing(clients.skopeo, "inspect", "--tls-verify=false", "--creds", accounts.builder.creds,
                  f"docker://{registry.host}/team-b/base:v1")  # fmt: skip
    assert_denied_shown(registry, mark, "team-b", out)


# --------------------------------------------------------------------------------------------
# 3. a viewer pulls but cannot push
# --------------------------------------------------------------------------------------------


def test_viewer_pulls_but_cannot_push(registry, clients, puller, accounts, images, seeded):
    ref = f"{registry.host}/team-a/app:v1"
    as_reader = authfile(registry, puller, accounts.reader)
    puller.podman("rmi", "--ignore", "--force", ref)
    image_id = puller.pull(ref, *as_reader)
    assert puller.image_inspect(image_id)["Digest"] == seeded["team-a/app"]
    assert_pulled_files(puller, image_id, images["base"])
    puller.podman("rmi", "--force", image_id)

    for target in ("team-a/app:viewer", "team-a/viewer-new:v1"):
        out = failing(clients.push, "podman", images["c"].name, f"{registry.host}/{target}", None,
                      authfile(registry, clients, accounts.reader))  # fmt: skip
        assert "denied" in out, out
        assert "cannot update imagestreams/layers in namespace team-a" in out, f"the reason is not shown:\n{out}"
        repo, tag = target.split(":")
        assert registry.get_manifest(repo, tag).status_code == 404


# --------------------------------------------------------------------------------------------
# 4. skopeo with --creds / --src-creds / --dest-creds
# --------------------------------------------------------------------------------------------


def test_skopeo_with_creds(registry, clients, accounts, seeded):
    src = f"{registry.host}/team-a/app:v1"
    dest = f"{registry.host}/team-b/from-a:v1"
    digestfile = clients.workdir("digest") / "digest"
    clients.skopeo("copy", *TLS, "--digestfile", str(digestfile), "--src-creds", accounts.reader.creds,
                   "--dest-creds", accounts.editor_b.creds, f"docker://{src}", f"docker://{dest}")  # fmt: skip
    assert digestfile.read_text().strip() == seeded["team-a/app"]
    served, _, manifest = registry.manifest_json("team-b/from-a", "v1")
    assert served == seeded["team-a/app"]
    for blob in [manifest["config"], *manifest["layers"]]:
        assert registry.head_blob("team-b/from-a", blob["digest"]).status_code == 200

    inspected = clients.skopeo_inspect(dest, "--creds", accounts.editor_b.creds)
    assert inspected["Digest"] == seeded["team-a/app"]
    raw = clients.skopeo("inspect", "--tls-verify=false", "--raw", "--creds", accounts.reader.creds,
                         f"docker://{src}").stdout  # fmt: skip
    assert sha256(raw.encode()) == seeded["team-a/app"]

    clients.push("podman", "localhost/e2e/auth-base", f"{registry.host}/team-a/app:second",
                 extra=authfile(registry, clients, accounts.builder))  # fmt: skip
    tags = json.loads(clients.skopeo("list-tags", "--tls-verify=false", "--creds", accounts.reader.creds,
                                     f"docker://{registry.host}/team-a/app").stdout)  # fmt: skip
    assert {"v1", "second"} <= set(tags["Tags"]), tags

    out = failing(clients.skopeo, "inspect", "--tls-verify=false", f"docker://{src}")
    assert_auth_error(out)
    out = failing(clients.skopeo, "list-tags", "--tls-verify=false", f"docker://{registry.host}/team-a/app")
    assert_auth_error(out)


# --------------------------------------------------------------------------------------------
# 5. a public namespace: anonymous pulls, no anonymous pushes
# --------------------------------------------------------------------------------------------


def test_anonymous_pull_from_public_namespace(registry, clients, puller, accounts, images, seeded):
    ref = f"{registry.host}/pub/app:v1"
    assert auth_config_entry(puller.auth_file, registry.host) is None  # the default auth file is empty
    mark = registry.mark()
    puller.podman("rmi", "--ignore", "--force", ref)
    image_id = puller.pull(ref)
    assert puller.image_inspect(image_id)["Digest"] == seeded["pub/app"]
    assert_pulled_files(puller, image_id, images["base"])
    puller.podman("rmi", "--force", image_id)
    assert clients.skopeo_inspect(ref)["Digest"] == seeded["pub/app"]
    subjects = {e["subject"] for e in registry.access(mark) if e["path"].startswith("/v2/pub/")}
    assert subjects == {"system:anonymous"}, subjects

    # ... but a private namespace stays private, and nobody pushes anonymously
    out = failing(puller.pull, f"{registry.host}/team-a/app:v1")
    assert_auth_error(out)
    for target in ("pub/app:anon", "pub/anon:v1"):
        out = failing(clients.push, "podman", images["c"].name, f"{registry.host}/{target}")
        assert_auth_error(out)
        repo, tag = target.split(":")
        assert registry.get_manifest(repo, tag).status_code == 404


# --------------------------------------------------------------------------------------------
# 6. the catalog shows each caller what it may pull
# --------------------------------------------------------------------------------------------


def test_catalog_filtered_per_caller(registry, accounts, seeded):
    with registry.http() as c:  # cluster-admin
        r = c.get("/v2/_catalog")
    assert r.status_code == 200, r.text
    everything = r.json()["repositories"]
    assert set(seeded) <= set(everything), everything
    assert registry.bearer_dance("GET", "/v2/_catalog", registry.admin).json()["repositories"] == everything

    def visible(*namespaces: str) -> list[str]:
        # The public namespace stays visible to logged-in callers: logging in never takes access away.
        return [repo for repo in everything if repo.split("/")[0] in (*namespaces, "pub")]

    expected = {
        "builder": (accounts.builder, visible("team-a")),
        "reader": (accounts.reader, visible("team-a")),
        "mover": (accounts.mover, visible("team-a", "team-b")),
        "editor_b": (accounts.editor_b, visible("team-b")),
        "editor_c": (accounts.editor_c, visible("team-c")),
        "nobody": (accounts.nobody, visible()),
    }
    for name, (account, repos) in expected.items():
        with registry.http(account) as c:
            basic = c.get("/v2/_catalog")
        assert basic.status_code == 200, f"{name}: {basic.status_code} {basic.text}"
        assert basic.json()["repositories"] == repos, f"{name} (Basic) sees the wrong repositories"
        bearer = registry.bearer_dance("GET", "/v2/_catalog", account)
        assert bearer.status_code == 200, f"{name}: {bearer.status_code} {bearer.text}"
        assert bearer.json()["repositories"] == repos, f"{name} (bearer token) sees the wrong repositories"
    anonymous = registry.bearer_dance("GET", "/v2/_catalog", None)
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json()["repositories"] == visible("pub")


# --------------------------------------------------------------------------------------------
# 8. cross-repository mounts across namespaces
# --------------------------------------------------------------------------------------------


def test_mount_from_a_namespace_the_pusher_may_read(registry, clients, accounts, images, seeded):
    """mover (editor of team-a, viewer of team-b) pushes the image that lives in team-b: its
    layers are mounted from team-b (201), not uploaded."""
    image = images["b"]
    _, _, manifest = registry.manifest_json("team-b/base", "v1")
    layers = manifest["layers"]
    mark = registry.mark()
    digest = clients.push("podman", image.name, f"{registry.host}/team-a/mounted:v1",
                          extra=authfile(registry, clients, accounts.mover))  # fmt: skip
    assert digest == seeded["team-b/base"]
    entries = registry.access(mark)
    ours = [e for e in entries if e["path"].startswith("/v2/team-a/mounted/")]
    mounted = [e for e in ours if e["method"] == "POST" and e["status"] == "201"]
    assert len(mounted) == len(layers), f"expected {len(layers)} mounts answered 201:\n{summary(entries)}"
    smallest = min(layer["size"] for layer in layers)
    assert all(int(e["bytes_in"]) < smallest for e in ours if e["method"] == "PATCH"), summary(entries)
    for layer in layers:
        r = registry.head_blob("team-a/mounted", layer["digest"])
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == layer["size"]


def test_mount_from_an_unreadable_namespace_falls_back_to_upload(registry, clients, accounts, images, seeded):
    """builder (editor of team-a only) pushes the image that lives only in team-c. A mount from
    team-c must not link anything (202: upload instead), so the push uploads every layer."""
    image = images["c"]
    _, _, manifest = registry.manifest_json("team-c/secret", "v1")
    layers = manifest["layers"]

    # The request itself, as docker sends it: POST ?mount=<digest>&from=team-c/secret.
    mark = registry.mark()
    with registry.http(accounts.builder) as c:
        for layer in layers:
            for query in (f"?mount={layer['digest']}&from=team-c/secret", f"?mount={layer['digest']}"):
                r = c.post(f"/v2/team-a/probe/blobs/uploads/{query}")
                assert r.status_code == 202, f"POST {query} -> {r.status_code} {r.text}"
                assert r.headers["Location"].startswith("/v2/team-a/probe/blobs/uploads/")
                assert c.delete(r.headers["Location"]).status_code == 204
            assert c.head(f"/v2/team-a/probe/blobs/{layer['digest']}").status_code == 404
    probes = [e for e in registry.access(mark) if e["method"] == "POST"]
    assert [e["status"] for e in probes] == ["202"] * 2 * len(layers), summary(probes)

    # podman: its blob-info-cache knows team-c/secret holds these layers.
    mark = registry.mark()
    digest = clients.push("podman", image.name, f"{registry.host}/team-a/fallback:v1",
                          extra=authfile(registry, clients, accounts.builder))  # fmt: skip
    assert digest == seeded["team-c/secret"]
    entries = registry.access(mark)
    ours = [e for e in entries if e["path"].startswith("/v2/team-a/fallback/")]
    assert not [e for e in ours if e["method"] == "POST" and e["status"] == "201"], summary(entries)
    uploaded = sum(int(e["bytes_in"]) for e in ours if e["method"] == "PATCH")
    assert uploaded >= sum(layer["size"] for layer in layers), f"layers were not uploaded:\n{summary(entries)}"
    # c/image checks the source repository first: that HEAD is refused, so it never asks to mount.
    into_c = [e for e in entries if e["path"].startswith("/v2/team-c/")]
    assert all(e["status"] in ("401", "403") for e in into_c), summary(entries)
    for layer in layers:
        r = registry.head_blob("team-a/fallback", layer["digest"])
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == layer["size"]


# --------------------------------------------------------------------------------------------
# 9. a revoked token stops working at once
# --------------------------------------------------------------------------------------------


def test_revoked_token_stops_working(registry, puller, accounts, seeded):
    token, token_id = registry.create_token("team-a/reader", "--description", "revoke me")
    revocable = Account("team-a/reader", token, token_id, username="revocable")
    ref = f"{registry.host}/team-a/app:v1"
    as_revocable = ("--authfile", str(puller.auth_file_for(registry.host, revocable)))
    puller.podman("rmi", "--ignore", "--force", ref)
    image_id = puller.pull(ref, *as_revocable)
    puller.podman("rmi", "--force", image_id)

    registry.okura_auth("revoke-token", token_id)
    listing = registry.okura_auth("list-tokens", "team-a/reader").stdout
    assert re.search(rf"^{token_id}\s+\S+\s+revoked\s", listing, re.MULTILINE), listing

    out = failing(puller.pull, ref, *as_revocable)
    assert_auth_error(out)
    with registry.http(revocable) as c:
        assert c.get("/v2/").status_code == 401
    # the account's other token is untouched
    with registry.http(accounts.reader) as c:
        assert c.get("/v2/team-a/app/tags/list").status_code == 200
