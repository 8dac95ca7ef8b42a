"""The shared driver suite on the filesystem driver, plus checks of its on-disk layout."""

from __future__ import annotations

import os
import shutil

import pytest
import pytest_asyncio

from storage.base import StorageError
from storage.filesystem import FilesystemStorage
from tests.storage.driver_suite import (
    INVALID_DIGESTS,
    INVALID_UPLOAD_IDS,
    VALID_FAKE_DIGEST,
    DriverSuite,
    consume,
    digest_of,
    new_upload_id,
    store,
    upload,
    write_session,
)

TRAVERSAL_DIGESTS = [d for d in INVALID_DIGESTS if "/" in d or ".." in d]
TRAVERSAL_UPLOAD_IDS = [u for u in INVALID_UPLOAD_IDS if "/" in u or ".." in u]


def tree(path) -> dict[str, int]:
    """Every file and directory below `path` with its size (directories: -1)."""
    found = {}
    for dirpath, dirs, files in os.walk(path):
        for d in dirs:
            found[os.path.relpath(os.path.join(dirpath, d), path)] = -1
        for f in files:
            full = os.path.join(dirpath, f)
            found[os.path.relpath(full, path)] = os.path.getsize(full)
    return found


class TestFilesystemDriver(DriverSuite):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        d = FilesystemStorage(str(tmp_path / "root"))
        await d.open()
        yield d
        await d.close()

    # -- filesystem specifics --------------------------------------------------------------

    async def test_blob_layout(self, driver, tmp_path):
        data = b"layout"
        digest = await store(driver, data)
        hex_ = digest.split(":", 1)[1]
        path = tmp_path / "root" / "blobs" / "sha256" / hex_[:2] / hex_
        assert path.read_bytes() == data
        assert os.listdir(tmp_path / "root" / "uploads") == []

    async def test_an_aborted_writer_gives_its_bytes_back(self, driver, tmp_path):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"a" * 10])
        writer = await driver.upload_writer(upload_id, state, 10)
        await writer.write(b"b" * 50)
        await writer.abort()
        path = tmp_path / "root" / "uploads" / upload_id
        assert path.stat().st_size == 10

    async def test_truncates_bytes_a_dead_writer_left(self, driver, tmp_path):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"a" * 10])
        path = tmp_path / "root" / "uploads" / upload_id
        with open(path, "ab") as f:  # what a process killed mid-write leaves
            f.write(b"b" * 50)
        assert not await driver.upload_in_use(upload_id)
        assert await driver.trim_upload(upload_id, 10) == 50
        assert path.stat().st_size == 10
        with open(path, "ab") as f:
            f.write(b"c" * 5)
        writer = await driver.upload_writer(upload_id, state, 10)  # the next writer drops them too
        assert path.stat().st_size == 10
        assert await driver.upload_in_use(upload_id)  # a live writer holds its upload
        await writer.finish()
        assert not await driver.upload_in_use(upload_id)
        assert not await driver.upload_in_use(new_upload_id())  # no such upload

    async def test_hostile_names_touch_nothing(self, driver, tmp_path):
        # Targets a traversal would reach from the blob and upload directories.
        victim = tmp_path / "etc"
        victim.mkdir()
        (victim / "passwd").write_text("secret")
        (tmp_path / "x").write_text("x")
        data_id, data_state = await upload(driver, b"payload")
        before = tree(tmp_path)
        for digest in TRAVERSAL_DIGESTS:
            for call in (
                lambda d=digest: driver.stat(d),
                lambda d=digest: driver.delete(d),
                lambda d=digest: consume(lambda: driver.read(d)),
                lambda d=digest: driver.commit_upload(data_id, data_state, d, 7),
            ):
                with pytest.raises(ValueError):
                    await call()
        for upload_id in TRAVERSAL_UPLOAD_IDS:
            for call in (
                lambda u=upload_id: driver.start_upload(u),
                lambda u=upload_id: driver.upload_writer(u, {}, 0),
                lambda u=upload_id: consume(lambda: driver.read_upload(u, {})),
                lambda u=upload_id: driver.commit_upload(u, {}, VALID_FAKE_DIGEST, 0),
                lambda u=upload_id: driver.cancel_upload(u, {}),
            ):
                with pytest.raises(ValueError):
                    await call()
        assert tree(tmp_path) == before
        assert (victim / "passwd").read_text() == "secret"

    async def test_check_fails_without_blob_directory(self, driver, tmp_path):
        await driver.check()
        blobs = tmp_path / "root" / "blobs"
        shutil.move(blobs, tmp_path / "moved")
        with pytest.raises(StorageError):
            await driver.check()
        shutil.move(tmp_path / "moved", blobs)
        await driver.check()

    async def test_check_fails_without_upload_directory(self, driver, tmp_path):
        uploads = tmp_path / "root" / "uploads"
        shutil.move(uploads, tmp_path / "moved")
        with pytest.raises(StorageError):
            await driver.check()
        shutil.move(tmp_path / "moved", uploads)
        await driver.check()

    async def test_commit_with_wrong_size_is_refused(self, driver):
        upload_id, state = await upload(driver, b"12345")
        with pytest.raises(StorageError):
            await driver.commit_upload(upload_id, state, digest_of(b"12345"), 6)
        assert await driver.stat(digest_of(b"12345")) is None

    async def test_reopen_keeps_blobs(self, driver, tmp_path):
        digest = await store(driver, b"persistent")
        again = FilesystemStorage(str(tmp_path / "root"))
        await again.open()
        assert await consume(lambda: again.read(digest)) == b"persistent"
        await again.close()


class TestFilesystemDriverBuffered(DriverSuite):
    """The same driver where O_DIRECT is unavailable (tmpfs, some network filesystems)."""

    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        d = FilesystemStorage(str(tmp_path / "root"), direct_io=False)
        await d.open()
        yield d
        await d.close()
