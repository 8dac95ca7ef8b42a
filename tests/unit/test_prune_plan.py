"""The prune plan's rules, on hand-made snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.pruning.plan import Blob, InvalidReferences, Link, Manifest, Snapshot, TagEvent, make_plan

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def d(name: str) -> str:
    return "sha256:" + name.ljust(64, "0")


def manifest(i: int, name: str, hours: float, *, children=(), subject=None, blobs=(), repo=1) -> Manifest:
    return Manifest(i, repo, d(name), ago(hours), subject and d(subject), tuple(map(d, children)), tuple(map(d, blobs)))


def plan(snap: Snapshot, keep: int = 1, younger: float = 1, grace: float = 1, registry: bool = True, ignore=True):
    return make_plan(
        snap,
        keep_tag_revisions=keep,
        cutoff=ago(younger),
        grace_cutoff=ago(grace),
        prune_registry=registry,
        ignore_invalid_refs=ignore,
    )


def history(tag: str, *items: tuple[str, float], repo: int = 1, start: int = 1) -> list[TagEvent]:
    return [TagEvent(start + n, repo, tag, d(name), ago(h)) for n, (name, h) in enumerate(items)]


def test_keeps_newest_n_and_young_items_whatever_the_insertion_order():
    events = history("t", ("a", 10), ("c", 6), ("b", 8), ("d", 0.5))
    snap = Snapshot({1: "ns/r"}, events, {(1, "t"): d("d")}, [manifest(i, n, 10) for i, n in enumerate("abcd")])
    p = plan(snap, keep=2)
    assert sorted(e.digest for e in p.events) == [d("a"), d("b")]


def test_current_tag_target_is_kept_even_with_no_history_kept():
    snap = Snapshot({1: "ns/r"}, history("t", ("a", 10)), {(1, "t"): d("a")}, [manifest(1, "a", 10)])
    p = plan(snap, keep=0)
    assert [e.digest for e in p.events] == [d("a")]
    assert p.manifests == []


def test_index_first_then_children_and_referrers_before_subjects():
    ms = [
        manifest(1, "idx", 10, children=["c1", "c2"]),
        manifest(2, "c1", 10, blobs=["l1"]),
        manifest(3, "c2", 10, blobs=["l2"]),
        manifest(4, "sig", 10, subject="idx"),
        manifest(5, "new", 0.1, blobs=["l1"]),
    ]
    events = history("t", ("idx", 10), ("new", 0.1))
    snap = Snapshot({1: "ns/r"}, events, {(1, "t"): d("new")}, ms)
    snap.links = [Link(1, d(x), None) for x in ("l1", "l2")]
    snap.blobs = [Blob(d(x), 10, None, False) for x in ("l1", "l2")]
    p = plan(snap)
    order = [m.digest for m, _ in p.manifests]
    assert set(order) == {d("idx"), d("c1"), d("c2"), d("sig")}
    assert order.index(d("sig")) < order.index(d("idx")) < min(order.index(d("c1")), order.index(d("c2")))
    assert [link.digest for link in p.links] == [d("l2")]  # l1 is still used by "new"
    assert [b.digest for b in p.blobs] == [d("l2")]


def test_reachable_from_kept_stays():
    ms = [manifest(1, "idx", 10, children=["c"]), manifest(2, "c", 10), manifest(3, "sig", 10, subject="c")]
    snap = Snapshot({1: "ns/r"}, history("t", ("idx", 10)), {(1, "t"): d("idx")}, ms)
    assert plan(snap).manifests == []


def test_untagged_pushes_wait_for_grace_but_released_ones_do_not():
    ms = [manifest(1, "old", 3, children=["child"]), manifest(2, "child", 3), manifest(3, "loose", 3)]
    events = history("t", ("old", 3), ("new", 0.1))
    ms.append(manifest(4, "new", 0.1))
    snap = Snapshot({1: "ns/r"}, events, {(1, "t"): d("new")}, ms)
    # grace 5h: "loose" (never tagged) waits; "child" was released with "old" and goes.
    p = plan(snap, younger=1, grace=5)
    assert {m.digest for m, _ in p.manifests} == {d("old"), d("child")}
    p = plan(snap, younger=1, grace=2)
    assert {m.digest for m, _ in p.manifests} == {d("old"), d("child"), d("loose")}


def test_pending_links_and_blobs_and_claimed_blobs_are_left():
    snap = Snapshot({1: "ns/r"}, [], {}, [])
    snap.links = [Link(1, d("p"), ago(0.5)), Link(1, d("q"), ago(3))]
    snap.blobs = [Blob(d("p"), 1, ago(0.5), False), Blob(d("q"), 1, None, False), Blob(d("z"), 1, None, True)]
    p = plan(snap, grace=1)
    assert [link.digest for link in p.links] == [d("q")]
    assert [b.digest for b in p.blobs] == [d("q")]


def test_registry_untouched_when_not_pruning_it():
    snap = Snapshot({1: "ns/r"}, history("t", ("a", 10), ("b", 9)), {(1, "t"): d("b")}, [])
    snap.manifests = [manifest(1, "a", 10, blobs=["x"]), manifest(2, "b", 9)]
    p = plan(snap, registry=False)
    assert [m.digest for m, _ in p.manifests] == [d("a")] and p.links == [] and p.blobs == []


def test_invalid_references_abort_unless_ignored():
    snap = Snapshot({1: "ns/r"}, history("t", ("gone", 10)), {}, [])
    with pytest.raises(InvalidReferences, match="no changes made"):
        plan(snap, ignore=False)
    assert len(plan(snap, keep=0, ignore=True).events) == 1
