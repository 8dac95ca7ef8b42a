"""Repository names, tags and digests (OCI distribution spec grammar)."""

from __future__ import annotations

import pytest

from registry.errors import DigestInvalid, NameInvalid, TagInvalid
from registry.names import NAME_MAX, is_digest, split_digest, validate_digest, validate_name, validate_tag

HEX64 = "a" * 64
HEX128 = "0123456789abcdef" * 8


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "ubuntu",
        "library/ubuntu",
        "team/app/component",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "a.b_c__d-e--f",
        "my-registry.example/ns/app",
        "x/y/z/w/v",
        "a1/2b",
    ],
)
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Library/ubuntu",
        "a//b",
        "/a",
        "a/",
        "a..b",
        "a___b",
        "a_",
        "_a",
        "-a",
        "a-",
        ".a",
        "a.",
        "a_.b",
        "a b",
        "a:b",
        "a@b",
        "a/../b",
        "../a",
        "a/./b",
        "é",
        "a\nb",
        "a\n",
        "library/ubuntu\n",
        "a\x00b",
    ],
)
def test_invalid_names(name):
    with pytest.raises(NameInvalid) as e:
        validate_name(name)
    assert e.value.code == "NAME_INVALID"
    assert e.value.status == 400


def test_name_length_limit():
    assert NAME_MAX == 255
    exactly = "/".join(["a" * 63] * 4)  # 4 * 63 + 3 = 255
    assert len(exactly) == 255
    assert validate_name(exactly) == exactly
    single = "a" * 255
    assert validate_name(single) == single
    for too_long in ("a" * 256, exactly + "b", "/".join(["b" * 100] * 3)):
        assert len(too_long) > 255
        with pytest.raises(NameInvalid) as e:
            validate_name(too_long)
        assert "255" in e.value.message


def test_overlong_name_detail_is_bounded():
    with pytest.raises(NameInvalid) as e:
        validate_name("a" * 100_000)
    assert len(str(e.value.detail)) < 1000


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1", "v1.2.3", "1.0-rc.1", "_private", "A", "UPPER_case-1.x", "a" * 128, "0"],
)
def test_valid_tags(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["", "a" * 129, ".hidden", "-dash", "a:b", "a/b", "a b", "a@b", "tag\n", "ü", "sha256:" + HEX64],
)
def test_invalid_tags(tag):
    with pytest.raises(TagInvalid) as e:
        validate_tag(tag)
    assert e.value.code == "TAG_INVALID"


@pytest.mark.parametrize("digest", [f"sha256:{HEX64}", f"sha512:{HEX128}", "sha256:" + "0123456789abcdef" * 4])
def test_valid_digests(digest):
    assert validate_digest(digest) == digest
    assert is_digest(digest)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256",
        "sha256:",
        ":" + HEX64,
        f"sha256:{HEX64[:-1]}",
        f"sha256:{HEX64}0",
        f"sha256:{HEX64.upper()}",
        f"SHA256:{HEX64}",
        f"sha256:{HEX64[:-1]}g",
        f"sha512:{HEX64}",
        f"sha256:{HEX128}",
        f"md5:{'a' * 32}",
        f"sha384:{'a' * 96}",
        f"sha256:{HEX64}\n",
        f"sha256:../{HEX64[:61]}",
        f"sha256 :{HEX64}",
    ],
)
def test_invalid_digests(digest):
    with pytest.raises(DigestInvalid) as e:
        validate_digest(digest)
    assert e.value.code == "DIGEST_INVALID"
    assert e.value.status == 400


def test_unsupported_algorithm_is_named():
    with pytest.raises(DigestInvalid, match="md5"):
        validate_digest("md5:" + "a" * 32)


def test_is_digest_and_split():
    assert not is_digest("latest")
    assert is_digest(f"sha256:{HEX64}")
    assert split_digest(f"sha256:{HEX64}") == ("sha256", HEX64)
    assert split_digest(f"sha512:{HEX128}") == ("sha512", HEX128)
