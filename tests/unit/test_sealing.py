"""Secrets at rest: sealed values open only with their key and in their place; the key file
is created once, private, and a broken one is named, never guessed around."""

from __future__ import annotations

import base64
import os
import stat
import threading

import pytest

from registry.imports.sealing import KEY_BYTES, SealError, SecretBox, SecretKeys, load_or_create_key


def box() -> SecretBox:
    return SecretBox(os.urandom(KEY_BYTES))


def test_a_sealed_value_opens_in_its_place_only():
    b = box()
    sealed = b.seal(b"hunter2", "team/quay")
    assert b"hunter2" not in sealed
    assert b.open(sealed, "team/quay") == b"hunter2"
    assert b.seal(b"hunter2", "team/quay") != sealed  # a fresh nonce each time
    with pytest.raises(SealError, match="does not open"):
        b.open(sealed, "team/other")  # copied onto another secret


def test_tampering_and_other_keys_are_refused():
    b = box()
    sealed = bytearray(b.seal(b"hunter2", "ns/s"))
    sealed[-1] ^= 1
    with pytest.raises(SealError, match="does not open"):
        b.open(bytes(sealed), "ns/s")
    with pytest.raises(SealError, match="does not open"):
        box().open(b.seal(b"x", "ns/s"), "ns/s")
    for junk in (b"", b"plain", b"okura-seal-v1" + b"\0" * 5):
        with pytest.raises(SealError, match="not a sealed value"):
            b.open(junk, "ns/s")
    with pytest.raises(SealError, match="32 bytes"):
        SecretBox(b"short")


def test_the_key_file_is_created_once_and_private(tmp_path):
    path = tmp_path / "keys" / "secrets.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == key
    assert load_or_create_key(path) == key
    keys = SecretKeys(str(path))
    assert keys.box().open(SecretBox(key).seal(b"v", "a/b"), "a/b") == b"v"


def test_processes_racing_to_create_the_key_agree(tmp_path):
    path = tmp_path / "secrets.key"
    found: list[bytes] = []
    threads = [threading.Thread(target=lambda: found.append(load_or_create_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1 and found[0] == load_or_create_key(path)
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.key"]  # no temporary files left


@pytest.mark.parametrize("content", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_broken_key_file_is_named(tmp_path, content):
    path = tmp_path / "secrets.key"
    path.write_text(content)
    with pytest.raises(SealError, match=str(path)):
        load_or_create_key(path)


def test_no_key_file_is_made_until_a_secret_is_used(tmp_path):
    SecretKeys(str(tmp_path / "secrets.key"))
    assert not (tmp_path / "secrets.key").exists()
