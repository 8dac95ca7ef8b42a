"""Pull-secret parsing and credential matching (registry.imports.keyring), as the kubelet's keyring does it."""

from __future__ import annotations

import base64
import json

import pytest

from registry.imports.keyring import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    Credential,
    DockerConfigError,
    Keyring,
    Location,
    key_matches,
    parse_docker_config,
    parse_image,
    parse_key,
)

SECRET = "s3cr3t-hunter2"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


NEITHER = 'entry \'quay.io\' has neither "auth" nor "username" nor "identitytoken"'


def configjson(auths: dict) -> bytes:
    return json.dumps({"auths": auths}).encode()


def cred(name: str) -> Credential:
    return Credential(name, f"{name}-password")


def users(credentials: list[Credential]) -> list[str]:
    return [c.username for c in credentials]


# --- parsing -----------------------------------------------------------------------------------------


def test_dockerconfigjson_with_username_and_password():
    data = configjson({"quay.io": {"username": "alice", "password": SECRET, "email": "a@example.com"}})
    assert parse_docker_config(data, DOCKERCONFIGJSON) == {"quay.io": Credential("alice", SECRET)}


def test_dockerconfigjson_with_auth_only():
    data = configjson({"https://index.docker.io/v1/": {"auth": b64(f"bob:{SECRET}")}})
    assert parse_docker_config(data, DOCKERCONFIGJSON) == {"https://index.docker.io/v1/": Credential("bob", SECRET)}


def test_dockerconfigjson_accepts_str():
    data = configjson({"quay.io": {"auth": b64("bob:pw")}}).decode()
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("bob", "pw")


def test_legacy_dockercfg():
    data = json.dumps(
        {
            "https://quay.io": {"auth": b64("carol:pw"), "email": "c@example.com"},
            "registry.example.com:5000": {"username": "dave", "password": "pw2"},
        }
    )
    assert parse_docker_config(data, DOCKERCFG) == {
        "https://quay.io": Credential("carol", "pw"),
        "registry.example.com:5000": Credential("dave", "pw2"),
    }


def test_podman_auth_json():
    """What `podman login` writes to ${XDG_RUNTIME_DIR}/containers/auth.json: auth only, per-repository keys
    allowed, plus fields we do not use."""
    data = json.dumps(
        {
            "auths": {
                "quay.io": {"auth": b64("robot+ci:TOKEN")},
                "quay.io/team/app": {"auth": b64("team+ci:TOKEN2")},
                "docker.io": {"auth": b64("hubuser:hubpw")},
            },
            "credHelpers": {"gcr.io": "gcloud"},
        },
        indent="\t",
    )
    assert parse_docker_config(data, DOCKERCONFIGJSON) == {
        "quay.io": Credential("robot+ci", "TOKEN"),
        "quay.io/team/app": Credential("team+ci", "TOKEN2"),
        "docker.io": Credential("hubuser", "hubpw"),
    }


def test_empty_auths_is_no_credentials():
    assert parse_docker_config(b'{"auths": {}}', DOCKERCONFIGJSON) == {}
    assert parse_docker_config(b"{}", DOCKERCFG) == {}


def test_auth_password_may_contain_colons():
    data = configjson({"quay.io": {"auth": b64("user:pa:ss:word:")}})
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("user", "pa:ss:word:")


def test_auth_with_empty_password():
    data = configjson({"quay.io": {"auth": b64("user:")}})
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("user", "")


def test_auth_tolerates_surrounding_whitespace():
    data = configjson({"quay.io": {"auth": f" {b64('user:pw')}\n"}})
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("user", "pw")


def test_explicit_fields_win_and_auth_fills_the_gaps():
    data = configjson(
        {
            "a.example.com": {"username": "explicit", "password": "explicit-pw", "auth": b64("decoded:decoded-pw")},
            "b.example.com": {"username": "explicit", "auth": b64("decoded:decoded-pw")},
            "c.example.com": {"password": "explicit-pw", "auth": b64("decoded:decoded-pw")},
        }
    )
    parsed = parse_docker_config(data, DOCKERCONFIGJSON)
    assert parsed["a.example.com"] == Credential("explicit", "explicit-pw")
    assert parsed["b.example.com"] == Credential("explicit", "decoded-pw")
    assert parsed["c.example.com"] == Credential("decoded", "explicit-pw")


def test_an_identity_token_alone_is_a_credential():
    (parsed,) = parse_docker_config(configjson({"acr.example.io": {"identitytoken": "tok"}}), DOCKERCONFIGJSON).values()
    assert parsed == Credential("", "", identity_token="tok")


def test_identity_token_and_nulls():
    data = configjson(
        {"acr.example.io": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "tok"}}
    )
    parsed = parse_docker_config(data, DOCKERCONFIGJSON)["acr.example.io"]
    assert parsed == Credential("00000000-0000-0000-0000-000000000000", "", identity_token="tok")
    data = configjson({"quay.io": {"username": "u", "password": "p", "email": None, "identitytoken": None}})
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("u", "p")


def test_empty_auth_string_counts_as_absent():
    data = configjson({"quay.io": {"auth": "", "username": "u", "password": "p"}})
    assert parse_docker_config(data, DOCKERCONFIGJSON)["quay.io"] == Credential("u", "p")


# --- parse errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"{}", "kubernetes.io/basic-auth", "unsupported secret type 'kubernetes.io/basic-auth'"),
        (b"\xff\xfe", DOCKERCONFIGJSON, "not UTF-8 (bad byte at offset 0)"),
        (b'{"auths": ', DOCKERCONFIGJSON, "not JSON: Expecting value at line 1 column 11"),
        (b"[]", DOCKERCONFIGJSON, "must be a JSON object, not an array"),
        (b'"x"', DOCKERCFG, "must be a JSON object, not a string"),
        (b'{"quay.io": {"auth": "eDp5"}}', DOCKERCONFIGJSON, 'has no "auths" object'),
        (b'{"auths": []}', DOCKERCONFIGJSON, '"auths" must be an object, not an array'),
        (b'{"auths": {"quay.io": {}}}', DOCKERCFG, "it is a .dockerconfigjson"),
        (b'{"auths": {"quay.io": "user:pw"}}', DOCKERCONFIGJSON, "entry 'quay.io' must be an object, not a string"),
        (b'{"quay.io": null}', DOCKERCFG, "entry 'quay.io' must be an object, not null"),
        (b'{"quay.io": {"username": 7}}', DOCKERCFG, "entry 'quay.io': field \"username\" must be a string"),
        (b'{"quay.io": {"password": "pw"}}', DOCKERCFG, NEITHER),
        (b'{"quay.io": {"email": "a@b.c"}}', DOCKERCFG, NEITHER),
        (b'{"quay.io": {"auth": "not base64!"}}', DOCKERCFG, "entry 'quay.io': \"auth\" is not valid base64"),
        (b'{"quay.io": {"auth": "dXNlcg"}}', DOCKERCFG, "entry 'quay.io': \"auth\" is not valid base64"),
        (b'{"quay.io": {"auth": "dXNlcg=="}}', DOCKERCFG, 'does not decode to "username:password" (no ":")'),
        (b'{"quay.io": {"auth": "//79"}}', DOCKERCFG, "entry 'quay.io': \"auth\" does not decode to UTF-8 text"),
        (b'{"quay.io": {"auth": "OnB3"}}', DOCKERCFG, "entry 'quay.io': \"auth\" decodes to an empty username"),
        (b'{"": {"username": "u"}}', DOCKERCFG, "registry key '': no registry host"),
        (b'{"https:///v2/": {"username": "u"}}', DOCKERCFG, "registry key 'https:///v2/': no registry host"),
        (b'{"quay.io:https": {"username": "u"}}', DOCKERCFG, "registry key 'quay.io:https': port 'https' is not"),
        (b'{"*.example.com:*": {"username": "u"}}', DOCKERCFG, "port '*' is not a number"),
        (b'{"[::1:5000": {"username": "u"}}', DOCKERCFG, "unclosed '[' in IPv6 host"),
    ],
)
def test_parse_errors(data, kind, message):
    with pytest.raises(DockerConfigError) as raised:
        parse_docker_config(data, kind)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_errors_never_show_the_password():
    cases = [
        (json.dumps({"auths": {"quay.io": {"password": SECRET}}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": {"auth": SECRET + "!"}}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": {"auth": b64(SECRET)}}}), DOCKERCONFIGJSON),  # no ':'
        (json.dumps({"auths": {"quay.io": {"auth": b64(":" + SECRET)}}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": {"username": "u", "password": [SECRET]}}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": SECRET}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": {"username": "u", "password": SECRET}}})[:-3], DOCKERCONFIGJSON),
        (json.dumps({"quay.io": {"password": SECRET}}), DOCKERCONFIGJSON),
        (json.dumps({"auths": {"quay.io": {"password": SECRET}}}), DOCKERCFG),
        (json.dumps({"quay.io": {"password": SECRET}}).encode() + b"\xff", DOCKERCFG),
    ]
    for data, kind in cases:
        with pytest.raises(DockerConfigError) as raised:
            parse_docker_config(data, kind)
        for shown in (str(raised.value), repr(raised.value)):
            assert SECRET not in shown
            assert b64(SECRET) not in shown
        # `from None`: a traceback shows no chained JSON/Unicode/binascii error that quotes the payload
        assert raised.value.__suppress_context__ or raised.value.__context__ is None


def test_credential_repr_hides_secrets():
    credential = Credential("alice", SECRET, identity_token="tok-" + SECRET)
    assert repr(credential) == "Credential(username='alice')"
    assert SECRET not in str(credential)
    keyring = Keyring([("ns/pull", {"quay.io": credential})])
    assert SECRET not in repr(keyring) and "alice" not in repr(keyring)
    assert SECRET not in repr(keyring.lookup("quay.io/x/y"))


def test_credential_is_frozen():
    with pytest.raises(AttributeError):
        Credential("a", "b").password = "c"  # type: ignore[misc]


# --- keys and images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "normalised"),
    [
        ("quay.io", "quay.io"),
        ("https://quay.io", "quay.io"),
        ("http://quay.io/", "quay.io"),
        ("HTTPS://Quay.IO/coreos", "quay.io/coreos"),
        ("https://quay.io/v1/", "quay.io"),
        ("https://quay.io/v2/", "quay.io"),
        ("quay.io/v2/coreos/", "quay.io/coreos"),
        ("quay.io/coreos//etcd///", "quay.io/coreos/etcd"),
        ("quay.io/v2", "quay.io/v2"),  # no trailing slash: a namespace called v2, as in the kubelet
        ("registry.example.com:5000", "registry.example.com:5000"),
        ("https://registry.example.com:5000/v2/team", "registry.example.com:5000/team"),
        ("*.example.com", "*.example.com"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000/app", "[::1]:5000/app"),
        ("10.0.0.1:5000", "10.0.0.1:5000"),
        ("docker.io", "index.docker.io"),
        ("index.docker.io", "index.docker.io"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("registry-1.docker.io", "index.docker.io"),
        ("docker.io/myorg", "index.docker.io/myorg"),
        ("docker.io:443", "docker.io:443"),  # with a port it is just another host
    ],
)
def test_parse_key(key, normalised):
    assert str(parse_key(key)) == normalised


@pytest.mark.parametrize(
    ("image", "location"),
    [
        ("quay.io/coreos/etcd", Location("quay.io", "", ("coreos", "etcd"))),
        ("quay.io/coreos/etcd:v3.5", Location("quay.io", "", ("coreos", "etcd"))),
        ("quay.io/coreos/etcd@sha256:" + "a" * 64, Location("quay.io", "", ("coreos", "etcd"))),
        ("quay.io/coreos/etcd:v3@sha256:" + "a" * 64, Location("quay.io", "", ("coreos", "etcd"))),
        ("Quay.IO/coreos/etcd", Location("quay.io", "", ("coreos", "etcd"))),
        ("registry.example.com:5000/team/app", Location("registry.example.com", "5000", ("team", "app"))),
        ("registry.example.com:5000/team/app:1.0", Location("registry.example.com", "5000", ("team", "app"))),
        ("localhost/app", Location("localhost", "", ("app",))),
        ("localhost:5000/app", Location("localhost", "5000", ("app",))),
        ("[::1]:5000/app", Location("[::1]", "5000", ("app",))),
        ("busybox", Location("index.docker.io", "", ("library", "busybox"))),
        ("busybox:1.36", Location("index.docker.io", "", ("library", "busybox"))),
        ("library/busybox", Location("index.docker.io", "", ("library", "busybox"))),
        ("myorg/app", Location("index.docker.io", "", ("myorg", "app"))),
        ("docker.io/busybox", Location("index.docker.io", "", ("library", "busybox"))),
        ("docker.io/library/busybox", Location("index.docker.io", "", ("library", "busybox"))),
        ("index.docker.io/myorg/app", Location("index.docker.io", "", ("myorg", "app"))),
        ("registry-1.docker.io/myorg/app", Location("index.docker.io", "", ("myorg", "app"))),
        ("localhost:5000", Location("index.docker.io", "", ("library", "localhost"))),  # docker reads a tag
    ],
)
def test_parse_image(image, location):
    assert parse_image(image) == location


@pytest.mark.parametrize("image", ["", "  ", "quay.io/", ":tag", "@sha256:abc"])
def test_parse_image_rejects_images_without_repository(image):
    with pytest.raises(ValueError, match="names no repository"):
        parse_image(image)


def test_parse_image_rejects_bad_port():
    with pytest.raises(ValueError, match="port 'abc' is not a number"):
        parse_image("registry.example.com:abc/app")


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        ("quay.io", "quay.io/coreos/etcd", True),
        ("quay.io/coreos", "quay.io/coreos/etcd", True),
        ("quay.io/coreos/etcd", "quay.io/coreos/etcd", True),
        ("quay.io/coreos/etcd/more", "quay.io/coreos/etcd", False),
        ("quay.io/core", "quay.io/coreos/etcd", False),  # whole segments only
        ("quay.io/coreos/etc", "quay.io/coreos/etcd", False),
        ("quay.io/other", "quay.io/coreos/etcd", False),
        ("quay.io", "quay.io.evil.com/coreos/etcd", False),
        ("quay.io", "example.com/coreos/etcd", False),
        ("*.example.com", "a.example.com/app", True),
        ("*.example.com", "a.b.example.com/app", False),  # one label per '*'
        ("*.example.com", "example.com/app", False),
        ("*.*.example.com", "a.b.example.com/app", True),
        ("reg-?.example.com", "reg-1.example.com/app", True),
        ("reg-?.example.com", "reg-12.example.com/app", False),
        ("reg-[0-9].example.com", "reg-7.example.com/app", True),
        ("reg-[0-9].example.com", "reg-x.example.com/app", False),
        ("*.example.com/team", "a.example.com/team/app", True),
        ("*.example.com/team", "a.example.com/other/app", False),
        ("a.*.com", "a.example.com/app", True),
        ("*", "localhost/app", True),
        ("*", "quay.io/app", False),
        ("*.example.com", "a.example.org/app", False),
        ("registry.example.com:5000", "registry.example.com:5000/team/app", True),
        ("registry.example.com:5000", "registry.example.com/team/app", False),
        ("registry.example.com", "registry.example.com:5000/team/app", False),  # no port matches no port only
        ("registry.example.com:5001", "registry.example.com:5000/team/app", False),
        ("*.example.com:5000", "registry.example.com:5000/app", True),
        ("[::1]:5000", "[::1]:5000/app", True),
        ("[::1]:5000", "[::2]:5000/app", False),
        ("docker.io", "busybox", True),
        ("index.docker.io", "docker.io/library/busybox", True),
        ("https://index.docker.io/v1/", "myorg/app", True),
        ("registry-1.docker.io", "index.docker.io/myorg/app", True),
        ("docker.io/library", "busybox", True),
        ("docker.io/myorg", "myorg/app", True),
        ("docker.io/myorg", "busybox", False),
        ("docker.io", "quay.io/coreos/etcd", False),
        ("docker.io", "localhost/app", False),
        ("quay.io", "busybox", False),
    ],
)
def test_key_matches(key, image, matches):
    assert key_matches(parse_key(key), parse_image(image)) is matches


# --- the keyring -------------------------------------------------------------------------------------


def test_most_specific_key_first():
    keyring = Keyring(
        [
            (
                "ns/pull",
                {
                    "quay.io": cred("host"),
                    "https://quay.io/coreos/etcd": cred("repo"),
                    "quay.io/coreos": cred("org"),
                    "quay.io/other": cred("other-org"),
                },
            )
        ]
    )
    assert users(keyring.lookup("quay.io/coreos/etcd")) == ["repo", "org", "host"]
    assert users(keyring.lookup("quay.io/coreos/flannel")) == ["org", "host"]
    assert users(keyring.lookup("quay.io/someone/else")) == ["host"]


def test_insertion_order_does_not_matter():
    entries = [("quay.io", cred("host")), ("quay.io/coreos", cred("org"))]
    for ordered in (entries, entries[::-1]):
        assert users(Keyring([("s", dict(ordered))]).lookup("quay.io/coreos/etcd")) == ["org", "host"]


def test_concrete_host_before_wildcard():
    keyring = Keyring([("s", {"*.example.com": cred("wild"), "a.example.com": cred("exact")})])
    assert users(keyring.lookup("a.example.com/app")) == ["exact", "wild"]
    assert users(keyring.lookup("b.example.com/app")) == ["wild"]
    assert keyring.lookup("a.b.example.com/app") == []


def test_namespace_sources_before_cluster_sources():
    keyring = Keyring(
        [
            ("ns/team-pull", {"quay.io": cred("ns-host")}),
            ("ns/other-pull", {"quay.io/coreos": cred("ns-org")}),
            ("cluster/global-pull", {"quay.io/coreos/etcd": cred("cluster-repo"), "quay.io": cred("cluster-host")}),
        ]
    )
    assert users(keyring.lookup("quay.io/coreos/etcd")) == ["ns-host", "ns-org", "cluster-repo", "cluster-host"]


def test_docker_hub_spellings():
    keyring = Keyring(
        [
            ("ns/a", {"https://index.docker.io/v1/": cred("legacy-login")}),
            ("ns/b", {"docker.io": cred("podman-login")}),
            ("ns/c", {"index.docker.io/myorg": cred("org")}),
        ]
    )
    for image in ("busybox", "library/busybox", "docker.io/busybox", "index.docker.io/library/busybox"):
        assert users(keyring.lookup(image)) == ["legacy-login", "podman-login"], image
    for image in ("myorg/app", "docker.io/myorg/app", "registry-1.docker.io/myorg/app:latest"):
        assert users(keyring.lookup(image)) == ["legacy-login", "podman-login", "org"], image
    assert keyring.lookup("quay.io/myorg/app") == []
    assert keyring.lookup("localhost/myorg/app") == []


def test_same_key_twice_keeps_the_given_order():
    keyring = Keyring([("s", {"docker.io": cred("first"), "https://index.docker.io/v1/": cred("second")})])
    assert users(keyring.lookup("busybox")) == ["first", "second"]


def test_ports():
    keyring = Keyring(
        [("s", {"registry.example.com:5000": cred("5000"), "registry.example.com": cred("none")})],
    )
    assert users(keyring.lookup("registry.example.com:5000/team/app")) == ["5000"]
    assert users(keyring.lookup("registry.example.com/team/app")) == ["none"]
    assert keyring.lookup("registry.example.com:443/team/app") == []


def test_no_match_is_empty():
    keyring = Keyring([("ns/pull", {"quay.io/coreos": cred("org")})])
    assert keyring.lookup("quay.io/core/etcd") == []
    assert keyring.lookup("busybox") == []
    assert Keyring([]).lookup("quay.io/coreos/etcd") == []
    assert Keyring([("ns/empty", {})]).lookup("quay.io/coreos/etcd") == []


def test_lookup_returns_the_credentials_themselves():
    credential = Credential("u", "p", identity_token="t")
    assert Keyring([("s", {"quay.io": credential})]).lookup("quay.io/a/b") == [credential]


def test_keyring_from_parsed_secrets():
    namespace = parse_docker_config(configjson({"quay.io/coreos": {"auth": b64("ns:pw")}}), DOCKERCONFIGJSON)
    cluster = parse_docker_config(json.dumps({"https://quay.io": {"auth": b64("cl:pw")}}), DOCKERCFG)
    keyring = Keyring([("ns/pull", namespace), ("cluster/pull", cluster)])
    assert keyring.lookup("quay.io/coreos/etcd:v3") == [Credential("ns", "pw"), Credential("cl", "pw")]


def test_keyring_rejects_unusable_keys_naming_the_source():
    with pytest.raises(DockerConfigError, match=r"^ns/pull: registry key 'quay.io:x': port 'x' is not a number$"):
        Keyring([("ns/pull", {"quay.io:x": cred("u")})])


def test_describe_lists_sources_and_normalised_keys_without_secrets():
    keyring = Keyring(
        [
            ("ns/pull", {"https://quay.io/v1/": Credential("alice", SECRET), "quay.io/coreos": cred("bob")}),
            ("ns/empty", {}),
            ("cluster/pull", {"docker.io": Credential("carol", SECRET, identity_token=SECRET)}),
        ]
    )
    described = keyring.describe()
    assert described == "ns/pull: quay.io/coreos, quay.io; ns/empty: (no entries); cluster/pull: index.docker.io"
    assert SECRET not in described
    assert "alice" not in described
    assert repr(keyring) == f"Keyring({described})"
    assert Keyring([]).describe() == "(no pull secrets)"
