"""The metadata cache and the generation counters that keep workers coherent."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import struct

import pytest

from registry.cache import SLOTS, Generation, MetadataCache, _slot


@pytest.fixture
def counter_path(tmp_path):
    return str(tmp_path / "run" / "cache-generation")


def _bump_in_child(path: str, repo: str | None, times: int) -> None:
    generation = Generation(path)
    for _ in range(times):
        generation.bump(repo)
    generation.close()


def _names_in_distinct_slots() -> tuple[str, str]:
    a, b = "team/a", "team/b"
    assert _slot(a) != _slot(b)
    return a, b


def _names_sharing_a_slot() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in itertools.count():
        name = f"repo{i}"
        slot = _slot(name)
        if slot in seen:
            return seen[slot], name
        seen[slot] = name
    raise AssertionError("unreachable")


# -- the generation counters --------------------------------------------------------------------


def test_generation_starts_at_zero(counter_path):
    generation = Generation(counter_path)
    assert generation.stamp("any/repo") == (0, 0)
    assert os.path.getsize(counter_path) == 8 * (1 + SLOTS)
    generation.close()


def test_generation_shared_between_objects_on_one_file(counter_path):
    a, b = Generation(counter_path), Generation(counter_path)
    one, two = _names_in_distinct_slots()
    assert a.stamp(one) == b.stamp(one)
    a.bump(one)
    assert a.stamp(one) == b.stamp(one) == (0, 1)
    assert b.stamp(two) == (0, 0)  # another repository is untouched
    b.bump()  # global
    assert a.stamp(one) == b.stamp(one) == (1, 1)
    assert a.stamp(two) == b.stamp(two) == (1, 0)
    a.close()
    b.close()


def test_generation_survives_reopen(counter_path):
    a = Generation(counter_path)
    a.bump("x/y")
    a.bump()
    a.close()
    b = Generation(counter_path)
    assert b.stamp("x/y") == (1, 1)
    b.close()


def test_generation_grows_a_file_of_the_single_counter_format(counter_path):
    os.makedirs(os.path.dirname(counter_path))
    with open(counter_path, "wb") as f:
        f.write(struct.pack("<Q", 5))
    generation = Generation(counter_path)
    assert generation.stamp("r") == (5, 0)
    generation.bump("r")
    assert generation.stamp("r") == (5, 1)
    generation.close()


@pytest.mark.parametrize("repo", [None, "shared/repo"], ids=["global", "repository"])
def test_generation_shared_across_processes(counter_path, repo):
    parent = Generation(counter_path)
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_bump_in_child, args=(counter_path, repo, 200)) for _ in range(3)]
    for child in children:
        child.start()
    for _ in range(200):
        parent.bump(repo)
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    global_, slot = parent.stamp("shared/repo")
    assert (global_ if repo is None else slot) == 800  # no lost updates
    parent.close()


def test_in_memory_generation():
    generation = Generation()
    assert generation.stamp("r") == (0, 0)
    generation.bump("r")
    generation.bump()
    assert generation.stamp("r") == (1, 1)
    generation.close()


# -- the cache ----------------------------------------------------------------------------------


def test_entries_are_retired_when_any_sharer_bumps_their_repository(counter_path):
    worker1 = MetadataCache(Generation(counter_path), max_bytes=1 << 20)
    worker2 = MetadataCache(Generation(counter_path), max_bytes=1 << 20)
    moved, other = _names_in_distinct_slots()
    for repo in (moved, other):
        stamp = worker1.stamp(repo)
        worker1.put(repo, ("manifest", "latest"), f"{repo}-old-digest", stamp)
        worker1.put(repo, "id", 7, stamp)
    assert worker1.get(moved, ("manifest", "latest")) == f"{moved}-old-digest"
    worker2.invalidate(moved)  # another worker moved a tag in `moved`
    assert worker1.get(moved, ("manifest", "latest")) is None
    assert worker1.get(moved, "id") is None
    assert worker1.get(other, ("manifest", "latest")) == f"{other}-old-digest"  # unaffected
    worker2.invalidate()  # a change spanning repositories
    assert worker1.get(other, ("manifest", "latest")) is None
    assert worker1.get(other, "id") is None
    worker1.generation.close()
    worker2.generation.close()


def test_repositories_sharing_a_slot_are_invalidated_together():
    """Slots are shared by hash: over-invalidation is allowed, a stale answer is not."""
    one, two = _names_sharing_a_slot()
    cache = MetadataCache(Generation(), max_bytes=1 << 20)
    cache.put(two, "tags", ["v1"], cache.stamp(two))
    cache.invalidate(one)
    assert cache.get(two, "tags") is None


def test_keys_are_per_repository():
    cache = MetadataCache(Generation(), max_bytes=1 << 20)
    cache.put("a/x", "tags", ["1"], cache.stamp("a/x"))
    cache.put("b/x", "tags", ["2"], cache.stamp("b/x"))
    assert cache.get("a/x", "tags") == ["1"]
    assert cache.get("b/x", "tags") == ["2"]
    assert cache.get("c/x", "tags") is None


def test_entry_from_before_a_bump_is_never_served(counter_path):
    """An answer read from the database before a concurrent change carries the stamp
    read before the query, so it is stale on arrival."""
    cache = MetadataCache(Generation(counter_path), max_bytes=1 << 20)
    other = Generation(counter_path)
    for bump in (lambda: other.bump("r/x"), other.bump):
        stamp = cache.stamp("r/x")
        bump()  # the change commits while the query runs
        cache.put("r/x", "key", "stale", stamp)
        assert cache.get("r/x", "key") is None
        cache.put("r/x", "key", "fresh", cache.stamp("r/x"))
        assert cache.get("r/x", "key") == "fresh"
    other.close()
    cache.generation.close()


def test_falsy_values_are_cached():
    cache = MetadataCache(Generation(), max_bytes=1000)
    cache.put("r", "zero", 0, cache.stamp("r"))
    cache.put("r", "empty", [], cache.stamp("r"))
    assert cache.get("r", "zero") == 0
    assert cache.get("r", "empty") == []


def _accounted(cache: MetadataCache) -> int:
    return sum(entry[2] for entry in cache._entries.values())


def test_byte_bound_is_respected():
    cache = MetadataCache(Generation(), max_bytes=1000)
    for i in range(100):
        cache.put("r", i, f"value-{i}", cache.stamp("r"), size=100)
        assert cache._bytes <= 1000
        assert _accounted(cache) == cache._bytes
    assert len(cache._entries) == 10
    assert cache.get("r", 99) == "value-99"
    assert cache.get("r", 0) is None  # the oldest went first


def test_replacing_an_entry_does_not_leak_bytes():
    cache = MetadataCache(Generation(), max_bytes=1000)
    for _ in range(50):
        cache.put("r", "same", "x", cache.stamp("r"), size=200)
    assert cache._bytes == 200
    cache.put("r", "same", "y", cache.stamp("r"), size=10)
    assert cache._bytes == 10
    assert cache.get("r", "same") == "y"


def test_oversized_entries_are_not_cached():
    cache = MetadataCache(Generation(), max_bytes=1000)
    cache.put("r", "small", 1, cache.stamp("r"), size=100)
    cache.put("r", "huge", 2, cache.stamp("r"), size=251)  # more than a quarter of the budget
    assert cache.get("r", "huge") is None
    assert cache.get("r", "small") == 1
    assert cache._bytes == 100


def test_mixed_sizes_stay_within_bound():
    cache = MetadataCache(Generation(), max_bytes=10_000)
    for i in range(2000):
        repo = f"r{i % 7}"
        cache.put(repo, ("k", i % 300), i, cache.stamp(repo), size=(i * 37) % 2500 + 1)
        assert cache._bytes <= 10_000
    assert cache._bytes == _accounted(cache)


def test_zero_budget_caches_nothing():
    cache = MetadataCache(Generation(), max_bytes=0)
    cache.put("r", "a", 1, cache.stamp("r"), size=1)
    assert cache.get("r", "a") is None
    assert cache._bytes == 0
