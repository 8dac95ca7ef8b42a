"""The resumable hasher must agree with hashlib whatever the split points and input types."""

from __future__ import annotations

import array
import hashlib
import os
import random

import pytest

from registry.hashing import PlainHasher, new_hasher, resumable

ALGORITHMS = ["sha256", "sha512"]

pytestmark = pytest.mark.skipif(not resumable(), reason="libcrypto is not available")


def chained(algorithm: str, data: bytes, cuts: list[int], wrap=bytes) -> str:
    """Hash `data` piecewise, saving and restoring the state at every cut (a new request each time)."""
    state = None
    start = 0
    for cut in [*cuts, len(data)]:
        h = new_hasher(algorithm, state)
        h.update(wrap(data[start:cut]))
        state = h.state()
        assert state is not None
        start = cut
    return new_hasher(algorithm, state).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fresh_hasher_matches_hashlib(algorithm):
    for size in (0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 100_000):
        data = os.urandom(size)
        h = new_hasher(algorithm)
        h.update(data)
        assert h.hexdigest() == hashlib.new(algorithm, data).hexdigest(), size
        assert h.algorithm == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_state_round_trip_at_random_split_points(algorithm):
    rng = random.Random(1234)
    for _ in range(60):
        data = rng.randbytes(rng.randrange(0, 20_000))
        cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 8)))
        assert chained(algorithm, data, cuts) == hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_state_round_trip_at_every_split_of_a_block(algorithm):
    data = os.urandom(300)
    expected = hashlib.new(algorithm, data).hexdigest()
    for cut in range(len(data) + 1):
        assert chained(algorithm, data, [cut]) == expected, cut


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_input_types(algorithm, wrap):
    data = os.urandom(10_000)
    assert chained(algorithm, data, [1, 64, 5000], wrap) == hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memoryview_slices(algorithm):
    buf = bytearray(os.urandom(4096))
    original = bytes(buf)
    h = new_hasher(algorithm)
    h.update(memoryview(buf)[100:1100])
    h.update(memoryview(bytes(buf))[2000:])
    expected = hashlib.new(algorithm, bytes(buf[100:1100]) + bytes(buf[2000:])).hexdigest()
    assert h.hexdigest() == expected
    assert buf == original  # the input is not modified


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memoryview_with_wide_items(algorithm):
    """hashlib hashes a buffer's bytes (nbytes), not its item count."""
    items = array.array("I", range(1000))
    view = memoryview(items)
    h = new_hasher(algorithm)
    h.update(view)
    assert h.hexdigest() == hashlib.new(algorithm, view).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hexdigest_does_not_end_the_hash(algorithm):
    h = new_hasher(algorithm)
    h.update(b"abc")
    assert h.hexdigest() == hashlib.new(algorithm, b"abc").hexdigest()
    assert h.hexdigest() == hashlib.new(algorithm, b"abc").hexdigest()
    h.update(b"def")
    assert h.hexdigest() == hashlib.new(algorithm, b"abcdef").hexdigest()
    resumed = new_hasher(algorithm, h.state())
    resumed.update(b"ghi")
    assert resumed.hexdigest() == hashlib.new(algorithm, b"abcdefghi").hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_state_is_a_snapshot(algorithm):
    h = new_hasher(algorithm)
    h.update(b"first")
    state = h.state()
    h.update(b"second")
    assert new_hasher(algorithm, state).hexdigest() == hashlib.new(algorithm, b"first").hexdigest()
    # Two requests resuming from one state do not affect each other.
    a, b = new_hasher(algorithm, state), new_hasher(algorithm, state)
    a.update(b"A")
    b.update(b"B")
    assert a.hexdigest() == hashlib.new(algorithm, b"firstA").hexdigest()
    assert b.hexdigest() == hashlib.new(algorithm, b"firstB").hexdigest()


def test_state_of_wrong_size_is_rejected():
    with pytest.raises(ValueError):
        new_hasher("sha256", b"\x00" * 10)
    sha512_state = new_hasher("sha512").state()
    with pytest.raises(ValueError):
        new_hasher("sha256", sha512_state)
    with pytest.raises(ValueError):
        new_hasher("sha512", new_hasher("sha256").state())


def test_state_is_stable_bytes():
    state = new_hasher("sha256").state()
    assert isinstance(state, bytes)
    assert state == new_hasher("sha256").state()


def test_other_algorithms_fall_back_to_plain_hashing():
    h = new_hasher("sha384")
    assert isinstance(h, PlainHasher)
    h.update(b"x")
    assert h.hexdigest() == hashlib.sha384(b"x").hexdigest()
    assert h.state() is None
    with pytest.raises(ValueError):
        new_hasher("sha384", b"state")


def test_large_input():
    data = os.urandom(8 << 20)
    h = new_hasher("sha256")
    h.update(memoryview(data))
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
