"""Repository names, tags and digests as the OCI distribution spec defines them."""

from __future__ import annotations

import re

from registry.errors import DigestInvalid, NameInvalid, TagInvalid

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
NAME_COMPONENT_RE = re.compile(NAME_COMPONENT)  # use with fullmatch: one path component (a namespace)
NAME_MAX = 255
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
HEX_LENGTH = {"sha256": 64, "sha512": 128}
HEX_RE = re.compile(r"^[a-f0-9]+$")


def validate_name(name: str) -> str:
    if len(name) > NAME_MAX:
        raise NameInvalid(f"repository name is longer than {NAME_MAX} characters", detail={"name": name[:300]})
    if not NAME_RE.fullmatch(name):
        raise NameInvalid(
            "repository name must be lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'",
            detail={"name": name},
        )
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid("tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", detail={"tag": tag})
    return tag


def is_digest(reference: str) -> bool:
    return ":" in reference


def validate_digest(digest: str) -> str:
    """Return the digest if it is well formed with a supported algorithm, else raise DIGEST_INVALID."""
    m = DIGEST_RE.fullmatch(digest)
    if not m:
        raise DigestInvalid("invalid digest format", detail={"digest": digest[:200]})
    algorithm, encoded = m.groups()
    expected = HEX_LENGTH.get(algorithm)
    if expected is None:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", detail={"digest": digest[:200]})
    if len(encoded) != expected or not HEX_RE.fullmatch(encoded):
        raise DigestInvalid(
            f"{algorithm} digest must be {expected} lowercase hex characters", detail={"digest": digest[:200]}
        )
    return digest


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, encoded = digest.partition(":")
    return algorithm, encoded
