"""Digest computation whose state survives between requests.

An upload's PATCH and its closing PUT may reach different worker processes or
replicas. hashlib objects cannot be serialised, so the running sha256/sha512
state is kept in OpenSSL's plain SHA*_CTX structs through ctypes: the state is
a few hundred bytes that the upload row stores, and the blob is never re-read.
Where libcrypto is unavailable, hashlib is used and `state()` returns None, which
makes the caller fall back to re-reading the uploaded bytes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol

_CTX_SIZE = {"sha256": 112, "sha512": 216}
_DIGEST_SIZE = {"sha256": 32, "sha512": 64}


def _load_libcrypto() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("crypto")
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)  # CDLL releases the GIL during calls, so hashing runs in parallel
        for algo in ("SHA256", "SHA512"):
            for fn in ("Init", "Update", "Final"):
                getattr(lib, f"{algo}_{fn}")
            getattr(lib, f"{algo}_Update").argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            getattr(lib, f"{algo}_Init").argtypes = [ctypes.c_void_p]
            getattr(lib, f"{algo}_Final").argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        return lib
    except (OSError, AttributeError):
        return None


_LIB = _load_libcrypto()


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def hexdigest(self) -> str: ...
    def state(self) -> bytes | None: ...


class ResumableHasher:
    """sha256/sha512 over OpenSSL's low-level API; `state()` is the raw context."""

    def __init__(self, algorithm: str, state: bytes | None = None):
        assert _LIB is not None
        self.algorithm = algorithm
        self._size = _CTX_SIZE[algorithm]
        prefix = algorithm.upper()
        self._update = getattr(_LIB, f"{prefix}_Update")
        self._final = getattr(_LIB, f"{prefix}_Final")
        if state is not None:
            if len(state) != self._size:
                raise ValueError("hash state has the wrong size")
            self._ctx = ctypes.create_string_buffer(state, self._size)
        else:
            self._ctx = ctypes.create_string_buffer(self._size)
            getattr(_LIB, f"{prefix}_Init")(self._ctx)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):
            if data:
                self._update(self._ctx, data, len(data))
            return
        view = memoryview(data)
        if not view.nbytes:
            return
        if view.readonly or not view.c_contiguous:
            self._update(self._ctx, view.tobytes(), view.nbytes)
        else:  # zero-copy; cast so that a wide item format still counts bytes
            self._update(self._ctx, (ctypes.c_char * view.nbytes).from_buffer(view.cast("B")), view.nbytes)

    def hexdigest(self) -> str:
        ctx = ctypes.create_string_buffer(self._ctx.raw, self._size)  # Final destroys the context
        out = ctypes.create_string_buffer(_DIGEST_SIZE[self.algorithm])
        self._final(out, ctx)
        return out.raw.hex()

    def state(self) -> bytes | None:
        return self._ctx.raw


class PlainHasher:
    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def state(self) -> bytes | None:
        return None


def new_hasher(algorithm: str = "sha256", state: bytes | None = None) -> Hasher:
    """A hasher, resumed from `state` when given. Raises ValueError if a state cannot be resumed."""
    if _LIB is not None and algorithm in _CTX_SIZE:
        return ResumableHasher(algorithm, state)
    if state is not None:
        raise ValueError("resumable hashing is unavailable")
    return PlainHasher(algorithm)


def resumable() -> bool:
    return _LIB is not None
