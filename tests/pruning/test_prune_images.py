"""The prune algorithm and online GC against the real app, database and storage
(SQLite, PostgreSQL, SeaweedFS), with a clock the test moves."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from sqlalchemy import insert, select, update

from registry.metadata.schema import blobs, repository_blobs, tag_events
from registry.pruning.images import PruneFailed, prune_images
from registry.pruning.plan import PruneOptions
from tests.support.backends import BACKENDS
from tests.support.digests import sha256
from tests.support.http import descriptor, push_blob, push_image
from tests.support.media_types import OCI_INDEX, OCI_MANIFEST
from tests.support.storages import stored_blobs

pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)  # every backend, not this directory's SQL-only

HOUR = 3600.0


def options(**kw) -> PruneOptions:
    base = {
        "keep_tag_revisions": 3,
        "keep_younger_than": HOUR,
        "confirm": True,
        "grace_period": HOUR,
        "ignore_invalid_refs": True,
    }
    return PruneOptions(**{**base, **kw})


async def image_blobs(client, repo: str, digest: str) -> list[str]:
    r = await client.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST + "," + OCI_INDEX})
    assert r.status_code == 200
    body = r.json()
    return [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]


async def history(reg, repo: str, tag: str) -> list[str]:
    def q(conn):
        from registry.metadata.schema import repositories

        return list(
            conn.execute(
                select(tag_events.c.digest)
                .join(repositories, repositories.c.id == tag_events.c.repository_id)
                .where(repositories.c.name == repo, tag_events.c.tag == tag)
                .order_by(tag_events.c.created_at.desc(), tag_events.c.id.desc())
            ).scalars()
        )

    return await reg.db.read(q)


async def status(client, repo: str, ref: str) -> int:
    r = await client.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST + "," + OCI_INDEX})
    return r.status_code


async def test_keeps_newest_revisions_per_tag_and_everything_younger(client, registry_model, fake_clock):
    """Five revisions of two tags an hour apart: keep 2 per tag, plus what is younger than
    90 minutes; every kept revision pulls; freed bytes are what left storage."""
    reg = registry_model
    pushed: dict[str, list[str]] = {"a": [], "b": []}
    for _ in range(5):
        for tag in ("a", "b"):
            digest, _ = await push_image(client, "ns/app", tag, layers=2)
            pushed[tag].append(digest)
        fake_clock.advance(hours=1)
    # Now: revision i was pushed (5 - i) hours ago. Cutoff 2.5h keeps revisions 3 and 4
    # by age; keep_tag_revisions=1 keeps revision 4 by count: revisions 0, 1 and 2 go.
    before = await stored_blobs(reg)
    report = await prune_images(reg, options(keep_tag_revisions=1, keep_younger_than=2.5 * HOUR))
    after = await stored_blobs(reg)

    assert report.tag_revisions == 6 and report.manifests == 6
    for tag, digests in pushed.items():
        assert await history(reg, "ns/app", tag) == digests[:2:-1]  # 4, 3 newest first
        for digest in digests[:3]:
            assert await status(client, "ns/app", digest) == 404
        for digest in digests[3:]:
            assert await status(client, "ns/app", digest) == 200
            for blob in await image_blobs(client, "ns/app", digest):
                r = await client.get(f"/v2/ns/app/blobs/{blob}")
                assert r.status_code == 200 and sha256(r.content) == blob
        assert await status(client, "ns/app", tag) == 200
    gone = set(before) - set(after)
    assert len(gone) == report.blobs == 6 * 3  # config + 2 layers per pruned image
    assert report.bytes_freed == sum(before[d] for d in gone)
    assert report.repository_blobs == 18


async def test_dry_run_changes_nothing_and_predicts_the_real_run(client, registry_model, fake_clock):
    reg = registry_model
    for _ in range(4):
        await push_image(client, "ns/app", "latest")
        fake_clock.advance(hours=2)
    await push_blob(client, "ns/app", os.urandom(300))  # pending, never referenced
    fake_clock.advance(hours=2)
    before = await stored_blobs(reg)
    dry = await prune_images(reg, options(keep_tag_revisions=1, confirm=False))
    assert await stored_blobs(reg) == before
    assert len(await history(reg, "ns/app", "latest")) == 4
    assert dry.dry_run and dry.tag_revisions == 3 and dry.manifests == 3 and dry.blobs == 7
    assert any(line.startswith("manifest ns/app@") for line in dry.details)

    real = await prune_images(reg, options(keep_tag_revisions=1))
    assert real.counts() == dry.counts()
    assert set(before) - set(await stored_blobs(reg)) and real.bytes_freed == dry.bytes_freed


async def test_prune_registry_false_leaves_storage_untouched(client, registry_model, fake_clock):
    reg = registry_model
    digests = []
    for _ in range(3):
        digests.append((await push_image(client, "ns/app", "v1"))[0])
        fake_clock.advance(hours=2)
    before = await stored_blobs(reg)
    report = await prune_images(reg, options(keep_tag_revisions=1, prune_registry=False))
    assert report.manifests == 2 and report.blobs == 0 and report.bytes_freed == 0
    assert await stored_blobs(reg) == before
    assert await status(client, "ns/app", digests[0]) == 404
    assert await status(client, "ns/app", "v1") == 200


async def test_shared_layers_and_other_repositories_keep_blobs(client, registry_model, fake_clock):
    reg = registry_model
    shared = os.urandom(2048)
    config_old = json.dumps({"architecture": "amd64", "os": "linux", "n": 1}).encode()
    config_new = json.dumps({"architecture": "amd64", "os": "linux", "n": 2}).encode()

    async def image(repo: str, tag: str, config: bytes, layers: list[bytes]) -> str:
        await push_blob(client, repo, config)
        for layer in layers:
            await push_blob(client, repo, layer)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", x) for x in layers],
            }
        ).encode()
        r = await client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201
        return r.headers["Docker-Content-Digest"]

    unique = os.urandom(2048)
    old = await image("ns/a", "t", config_old, [shared, unique])
    await image("ns/other", "t", config_old, [unique])  # the same blobs in another repository
    fake_clock.advance(hours=2)
    await image("ns/a", "t", config_new, [shared])
    fake_clock.advance(hours=2)
    report = await prune_images(reg, options(keep_tag_revisions=1))
    assert report.manifests == 1
    assert await status(client, "ns/a", old) == 404
    stored = await stored_blobs(reg)
    assert sha256(shared) in stored and sha256(unique) in stored and sha256(config_old) in stored
    assert report.blobs == 0
    # The links of ns/a to what only the pruned image used are gone; ns/other still serves.
    assert (await client.head(f"/v2/ns/a/blobs/{sha256(unique)}")).status_code == 404
    assert (await client.head(f"/v2/ns/a/blobs/{sha256(shared)}")).status_code == 200
    assert (await client.head(f"/v2/ns/other/blobs/{sha256(unique)}")).status_code == 200


async def test_index_children_and_referrers_follow_their_parents(client, registry_model, fake_clock):
    reg = registry_model

    async def index(tag: str) -> tuple[str, list[str]]:
        children = [(await push_image(client, "ns/multi"))[0] for _ in range(2)]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": c, "size": 100} for c in children],
            }
        ).encode()
        r = await client.put(f"/v2/ns/multi/manifests/{tag}", content=body, headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201
        return r.headers["Docker-Content-Digest"], children

    async def referrer(subject: str) -> str:
        digest, _ = await push_image(
            client,
            "ns/multi",
            extra={
                "subject": {"mediaType": OCI_INDEX, "digest": subject, "size": 100},
                "artifactType": "application/example.sig",
            },
        )
        return digest

    old, old_children = await index("latest")
    old_sig = await referrer(old)
    fake_clock.advance(hours=2)
    new, new_children = await index("latest")
    new_sig = await referrer(new)
    fake_clock.advance(hours=2)
    report = await prune_images(reg, options(keep_tag_revisions=1))
    assert report.manifests == 4
    for digest in (old, *old_children, old_sig):
        assert await status(client, "ns/multi", digest) == 404
    for digest in (new, *new_children, new_sig):
        assert await status(client, "ns/multi", digest) == 200
    r = await client.get(f"/v2/ns/multi/referrers/{new}")
    assert [m["digest"] for m in r.json()["manifests"]] == [new_sig]


async def test_untagged_pushes_and_pending_blobs_wait_for_the_grace_period(client, registry_model, fake_clock):
    reg = registry_model
    by_digest, _ = await push_image(client, "ns/app")  # no tag: an index may be on its way
    pending = await push_blob(client, "ns/app", os.urandom(500))
    fake_clock.advance(minutes=30)
    report = await prune_images(reg, options(keep_younger_than=0, grace_period=HOUR))
    assert report.manifests == 0 and report.blobs == 0
    assert await status(client, "ns/app", by_digest) == 200
    assert (await client.head(f"/v2/ns/app/blobs/{pending}")).status_code == 200
    fake_clock.advance(hours=1)
    report = await prune_images(reg, options(keep_younger_than=0, grace_period=HOUR))
    assert report.manifests == 1 and report.blobs == 3  # the image's config and layer, the pending blob
    assert pending not in await stored_blobs(reg)


async def test_orphaned_storage_files_are_removed_after_the_grace_period(client, registry_model, fake_clock):
    """A crash between storage and database leaves a file no row records."""
    reg = registry_model
    data = os.urandom(4096)
    digest = sha256(data)
    state = await reg.storage.start_upload("orphan-upload-0001")
    writer = await reg.storage.upload_writer("orphan-upload-0001", state, 0)
    await writer.write(data)
    state = await writer.finish()
    await reg.storage.commit_upload("orphan-upload-0001", state, digest, len(data))
    assert digest in await stored_blobs(reg)
    report = await prune_images(reg, options())
    assert report.orphans == 0 and digest in await stored_blobs(reg)
    fake_clock.advance(hours=2)
    dry = await prune_images(reg, options(confirm=False))
    assert dry.orphans == 1 and digest in await stored_blobs(reg)
    report = await prune_images(reg, options())
    assert report.orphans == 1 and report.bytes_freed == len(data)
    assert digest not in await stored_blobs(reg)


async def test_invalid_references_abort_unless_ignored(client, registry_model, fake_clock):
    reg = registry_model
    for _ in range(3):
        await push_image(client, "ns/app", "v")
        fake_clock.advance(hours=2)

    def dangling(conn):
        repo_id = conn.execute(select(tag_events.c.repository_id)).scalars().first()
        conn.execute(
            insert(tag_events).values(
                repository_id=repo_id, tag="gone", digest="sha256:" + "0" * 64, created_at=fake_clock.current
            )
        )

    await reg.db.write(dangling)
    before = await stored_blobs(reg)
    with pytest.raises(PruneFailed, match="no changes made"):
        await prune_images(reg, options(keep_tag_revisions=1, ignore_invalid_refs=False))
    assert len(await history(reg, "ns/app", "v")) == 3 and await stored_blobs(reg) == before
    report = await prune_images(reg, options(keep_tag_revisions=1, ignore_invalid_refs=True))
    assert report.manifests == 2


async def test_an_upload_racing_a_delete_rewrites_the_blob(client, registry_model, fake_clock):
    """The collector claimed a blob and is deleting it; an upload of the same bytes waits
    for the delete to finish, then stores the blob again, and it pulls."""
    from registry.model.blobs import finish_claim

    reg = registry_model
    data = os.urandom(3000)
    digest = await push_blob(client, "ns/app", data)
    claimed_at = fake_clock.current

    def claim(conn):
        conn.execute(delete_links())
        conn.execute(update(blobs).where(blobs.c.digest == digest).values(deleting_since=claimed_at))

    def delete_links():
        from sqlalchemy import delete

        return delete(repository_blobs).where(repository_blobs.c.digest == digest)

    await reg.db.write(claim)
    assert (await client.head(f"/v2/ns/app/blobs/{digest}")).status_code == 404
    upload = asyncio.create_task(push_blob(client, "ns/other", data))
    await asyncio.sleep(0.5)
    assert not upload.done()  # waiting for the collector
    await finish_claim(reg, digest, claimed_at)
    assert await asyncio.wait_for(upload, 10) == digest
    r = await client.get(f"/v2/ns/other/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert digest in await stored_blobs(reg)


async def _collect(reg, digest: str) -> None:
    """What a prune run does to a blob nothing references any more, its grace period over:
    unlink it everywhere, claim the row, delete the file, drop the row (registry/pruning/gc.py)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete

    from registry.pruning.gc import delete_blobs
    from registry.pruning.plan import Blob

    await reg.db.write(lambda conn: conn.execute(delete(repository_blobs).where(repository_blobs.c.digest == digest)))
    grace_over = datetime.now(UTC) + timedelta(hours=1)  # the blob's pending mark is older than the grace
    deleted, _ = await delete_blobs(reg, [Blob(digest, 0, None, False)], grace_over)
    assert [b.digest for b in deleted] == [digest]


async def _rows(reg, digest: str) -> tuple[int, int]:
    from sqlalchemy import func

    def q(conn):
        return (
            conn.execute(select(func.count()).select_from(blobs).where(blobs.c.digest == digest)).scalar(),
            conn.execute(
                select(func.count()).select_from(repository_blobs).where(repository_blobs.c.digest == digest)
            ).scalar(),
        )

    return await reg.db.read(q)


async def test_a_mount_racing_a_delete_uploads_instead(client, registry_model, fake_clock):
    """The mount saw the source link; the collector then took the blob (link, row, file)
    before the mount linked it: the mount must not recreate the row for a file that is gone
    (a manifest would then be accepted and never pull). The client uploads instead."""
    from registry.model.uploads import mount_blob

    reg = registry_model
    data = os.urandom(3000)
    digest = await push_blob(client, "ns/source", data)

    async def may_read(_repo: str) -> bool:  # between the mount's read and its write
        await _collect(reg, digest)
        return True

    assert await mount_blob(reg, "ns/target", digest, "ns/source", may_read) is None
    assert await _rows(reg, digest) == (0, 0)
    assert digest not in await stored_blobs(reg)
    r = await client.post(f"/v2/ns/target/blobs/uploads/?mount={digest}&from=ns/source")
    assert r.status_code == 202  # a session to upload into, not 201
    assert await push_blob(client, "ns/target", data) == digest
    r = await client.get(f"/v2/ns/target/blobs/{digest}")
    assert r.status_code == 200 and r.content == data


async def test_a_commit_slower_than_the_grace_period_does_not_link_a_collected_blob(
    client, registry_model, fake_clock, monkeypatch
):
    """The collector took a blob whose upload was still being stored (the store outlasted
    the grace period): the commit fails, to be retried, instead of linking a deleted file."""
    reg = registry_model
    data = os.urandom(3000)
    digest = sha256(data)
    commit = reg.storage.commit_upload

    async def slow_commit(*args, **kwargs):
        await commit(*args, **kwargs)
        # The grace period ran out while the file was stored: the collector takes it.
        await _collect(reg, digest)

    monkeypatch.setattr(reg.storage, "commit_upload", slow_commit)
    r = await client.post(f"/v2/ns/slow/blobs/uploads/?digest={digest}", content=data)
    assert r.status_code == 503, r.text
    assert await _rows(reg, digest) == (0, 0)
    monkeypatch.setattr(reg.storage, "commit_upload", commit)
    assert await push_blob(client, "ns/slow", data) == digest  # the retry stores it again
    r = await client.get(f"/v2/ns/slow/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
