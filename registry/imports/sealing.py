"""Secrets at rest: AES-256-GCM with a key from a file the database never holds, so a
database dump or backup alone gives no credentials away.

A sealed value is `okura-seal-v1` + 12-byte nonce + ciphertext and tag; the associated data
names the row (namespace/name), so a sealed value copied onto another secret does not open.
The key file holds 32 random bytes, base64; it is created (mode 0600) on first use when it
does not exist. Replicas must share it (mount the same file)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

MAGIC = b"okura-seal-v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value does not open with this key (another key, or tampered with), or the key
    file is unusable. Says which, never what the value holds."""


class SecretBox:
    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise SealError(f"a secrets key is {KEY_BYTES} bytes, not {len(key)}")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # loaded only when secrets are used

        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + NONCE_BYTES + 16:
            raise SealError("the stored secret is not a sealed value")
        nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES :], context.encode())
        except InvalidTag:
            raise SealError(
                "the stored secret does not open with this key (another secrets key, or the data was altered)"
            ) from None


class SecretKeys:
    """The secrets key of this runtime, read (or created) on first use: commands that never
    touch secrets never create a key file."""

    def __init__(self, path: str):
        self.path = path
        self._box: SecretBox | None = None

    def box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(load_or_create_key(Path(self.path)))
        return self._box


def load_or_create_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return _create_key(path)
    except OSError as e:
        raise SealError(f"cannot read the secrets key {path}: {e.strerror or e}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"the secrets key {path} is not base64 of {KEY_BYTES} bytes") from None
    if len(key) != KEY_BYTES:
        raise SealError(f"the secrets key {path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(temp, path)  # never replaces a key another process created meanwhile
    except FileExistsError:
        os.unlink(temp)
        return load_or_create_key(path)
    os.unlink(temp)
    return key
