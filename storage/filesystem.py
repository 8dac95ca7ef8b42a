"""Filesystem driver: content-addressed blobs under `<root>/blobs/<alg>/<xx>/<hex>`,
uploads under `<root>/uploads/<id>`. A blob becomes visible only through an
atomic rename of a fully written, fsynced upload file, so a crash can never
expose a partial blob."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiofiles
import aiofiles.os

from storage.base import (
    NO_SPACE_ERRNOS,
    READ_CHUNK,
    UPLOAD_ID_RE,
    BlobInfo,
    BlobNotFound,
    StorageError,
    StorageFull,
    StorageMissing,
    check_digest,
    check_upload_id,
)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_ALIGN = 4096
_STAGING_SIZE = 4 << 20


class _StagingPool:
    """Page-aligned buffers for O_DIRECT, reused: a fresh anonymous mapping costs a page
    fault per 4 KiB on first touch, as much as the buffered write it replaces."""

    def __init__(self, keep: int = 16):
        self._free: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, _STAGING_SIZE)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        buf.close()


_staging = _StagingPool()


class FilesystemUploadWriter:
    """Writes an upload at increasing offsets. Page-aligned runs go through O_DIRECT:
    on the virtual disks measured here, buffered writes into new files ran at
    ~350 MB/s (page-cache allocation) against ~1.2 GB/s direct. Unaligned heads
    and tails use the buffered descriptor; the kernel keeps both views coherent."""

    def __init__(self, fd: int, direct_fd: int | None, offset: int):
        self._fd = fd
        self._direct_fd = direct_fd
        self._start = offset
        self._offset = offset
        self._aligned: mmap.mmap | None = None  # page-aligned staging buffer for O_DIRECT
        # A cancelled request stops waiting for its write thread but cannot stop the thread:
        # closing waits for it, so descriptors and buffers are never released under it.
        self._busy = threading.Lock()

    def _write(self, data: bytes) -> None:
        with self._busy:
            if self._fd < 0:
                raise StorageError("upload writer is closed")
            with _no_space_is_full():
                self._write_locked(data)

    def _write_locked(self, data: bytes) -> None:
        view = memoryview(data)
        offset = self._offset
        if self._direct_fd is not None and len(view) >= _ALIGN:
            head = (-offset) % _ALIGN
            if head:
                os.pwrite(self._fd, view[:head], offset)
                view, offset = view[head:], offset + head
            body = len(view) - len(view) % _ALIGN
            if body and self._aligned is None:
                self._aligned = _staging.take()
            while body:
                n = min(body, _STAGING_SIZE)
                self._aligned[:n] = view[:n]  # type: ignore[index]
                _pwrite_all(self._direct_fd, memoryview(self._aligned)[:n], offset)  # type: ignore[arg-type]
                view, offset, body = view[n:], offset + n, body - n
        if len(view):
            _pwrite_all(self._fd, view, offset)
            offset += len(view)
        self._offset = offset

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _close(self) -> None:
        with self._busy:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._aligned is not None:
            _staging.give(self._aligned)
            self._aligned = None
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def finish(self) -> dict[str, Any]:
        await asyncio.to_thread(self._close)
        return {}

    def _discard(self) -> None:
        with self._busy:
            if self._fd >= 0:
                # What this writer added is not part of the upload: give the space back now
                # (a refused chunk on a nearly full disk must not keep it full).
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._start)
            self._close_locked()

    async def abort(self) -> None:
        await asyncio.to_thread(self._discard)


@contextlib.contextmanager
def _no_space_is_full() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE_ERRNOS:
            raise StorageFull(f"no space left for blob storage: {e.strerror}") from None
        raise


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class FilesystemStorage:
    name = "filesystem"

    def __init__(self, root: str, direct_io: bool = True):
        self.root = os.path.abspath(root)
        self._direct_io = direct_io and hasattr(os, "O_DIRECT")
        self._blobs = os.path.join(self.root, "blobs")
        self._uploads = os.path.join(self.root, "uploads")

    async def open(self) -> None:
        for path in (self._blobs, self._uploads):
            await aiofiles.os.makedirs(path, exist_ok=True)

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        """Write, read back and remove a probe file: permission checks alone miss a read-only
        remount, a full disk, or (as root) a directory made unwritable."""
        probe = os.path.join(self._uploads, f".health-{os.getpid()}-{threading.get_ident()}")

        def _probe() -> None:
            if not os.path.isdir(self._blobs):
                raise StorageMissing(f"blob directory {self._blobs} is missing")
            try:
                with open(probe, "wb") as f:
                    f.write(b"ok")
                with open(probe, "rb") as f:
                    if f.read() != b"ok":
                        raise StorageError("storage returned different bytes than written")
            except OSError as e:
                raise StorageError(f"storage root {self.root} is not writable: {e.strerror}") from None
            finally:
                with contextlib.suppress(OSError):
                    os.remove(probe)

        await asyncio.to_thread(_probe)

    def blob_path(self, digest: str) -> str:
        check_digest(digest)
        algorithm, encoded = digest.split(":", 1)
        return os.path.join(self._blobs, algorithm, encoded[:2], encoded)

    def local_path(self, digest: str) -> str:
        """The blob's file, for zero-copy serving (an optional driver capability)."""
        return self.blob_path(digest)

    def _upload_path(self, upload_id: str) -> str:
        check_upload_id(upload_id)
        return os.path.join(self._uploads, upload_id)

    # uploads -------------------------------------------------------------------------------

    async def start_upload(self, upload_id: str) -> dict[str, Any]:
        check_upload_id(upload_id)
        return {}  # the file appears with the first write

    async def upload_writer(self, upload_id: str, state: dict[str, Any], offset: int) -> FilesystemUploadWriter:
        path = self._upload_path(upload_id)

        def _open() -> FilesystemUploadWriter:
            fd = os.open(path, os.O_WRONLY | (os.O_CREAT if offset == 0 else 0), 0o644)
            try:
                # Held while the writer is open (and by the kernel only while its process
                # lives): how upload_in_use() tells a live writer from a dead one.
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            size = os.fstat(fd).st_size
            if size < offset:
                os.close(fd)
                raise StorageError(f"upload {upload_id} holds {size} bytes, expected {offset}")
            if size > offset:  # bytes of a request that failed before it was recorded
                os.ftruncate(fd, offset)
            direct_fd = None
            if self._direct_io:
                try:
                    direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
                except OSError:  # tmpfs and some network filesystems refuse O_DIRECT
                    self._direct_io = False
            return FilesystemUploadWriter(fd, direct_fd, offset)

        try:
            with _no_space_is_full():
                return await asyncio.to_thread(_open)
        except FileNotFoundError as e:
            raise BlobNotFound(upload_id) from e

    async def upload_in_use(self, upload_id: str) -> bool:
        """Whether a writer of a live process on this host has the upload open."""

        def _probe() -> bool:
            try:
                fd = os.open(self._upload_path(upload_id), os.O_RDONLY)
            except FileNotFoundError:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)  # releases the probe's lock, if it got it
            return False

        return await asyncio.to_thread(_probe)

    async def trim_upload(self, upload_id: str, size: int) -> int:
        """Drop an upload's bytes past `size` (left by a writer that died); returns how many."""

        def _trim() -> int:
            path = self._upload_path(upload_id)
            try:
                extra = os.stat(path).st_size - size
                if extra > 0:
                    os.truncate(path, size)
                return max(extra, 0)
            except FileNotFoundError:
                return 0

        return await asyncio.to_thread(_trim)

    async def read_upload(self, upload_id: str, state: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._read_path(self._upload_path(upload_id), 0, None):
                yield chunk
        except BlobNotFound:
            return  # nothing was written yet

    async def commit_upload(self, upload_id: str, state: dict[str, Any], digest: str, size: int) -> None:
        src = self._upload_path(upload_id)
        dst = self.blob_path(digest)

        def _commit() -> None:
            if size == 0 and not os.path.exists(src):
                open(src, "xb").close()  # an empty blob: no write ever created the file
            fd = os.open(src, os.O_RDONLY)
            try:
                if os.fstat(fd).st_size != size:
                    raise StorageError(f"upload {upload_id} size changed during commit")
                os.fsync(fd)
            finally:
                os.close(fd)
            parent = os.path.dirname(dst)
            os.makedirs(parent, exist_ok=True)
            # Replacing an existing blob is harmless: same digest, same bytes.
            os.rename(src, dst)
            _fsync_dir(parent)

        try:
            with _no_space_is_full():
                await asyncio.to_thread(_commit)
        except FileNotFoundError as e:
            raise BlobNotFound(upload_id) from e

    async def cancel_upload(self, upload_id: str, state: dict[str, Any]) -> None:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(self._upload_path(upload_id))

    async def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        entries = await asyncio.to_thread(lambda: list(os.scandir(self._uploads)))
        for entry in entries:
            if not UPLOAD_ID_RE.fullmatch(entry.name):
                continue  # not an upload (a health probe in flight)
            try:
                yield entry.name, entry.stat().st_mtime
            except FileNotFoundError:
                continue

    # blobs ---------------------------------------------------------------------------------

    async def stat(self, digest: str) -> BlobInfo | None:
        try:
            st = await aiofiles.os.stat(self.blob_path(digest))
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size, st.st_mtime)

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._read_path(self.blob_path(digest), offset, length)

    async def _read_path(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        # One thread hop opens and reads the first chunk; pread avoids seek state.
        loop = asyncio.get_running_loop()
        want = READ_CHUNK if length is None else min(READ_CHUNK, length)

        def _first() -> tuple[int, bytes]:
            fd = os.open(path, os.O_RDONLY)
            try:
                return fd, os.pread(fd, want, offset)
            except BaseException:
                os.close(fd)
                raise

        try:
            fd, chunk = await loop.run_in_executor(None, _first)
        except FileNotFoundError as e:
            raise BlobNotFound(path) from e
        try:
            remaining = None if length is None else length - len(chunk)
            pos = offset + len(chunk)
            while chunk:
                yield chunk
                if remaining is not None and remaining <= 0:
                    break
                n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await loop.run_in_executor(None, os.pread, fd, n, pos)
                pos += len(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
        finally:
            os.close(fd)

    async def delete(self, digest: str) -> bool:
        try:
            await aiofiles.os.remove(self.blob_path(digest))
            return True
        except FileNotFoundError:
            return False

    async def list_blobs(self) -> AsyncIterator[BlobInfo]:
        def _walk() -> list[BlobInfo]:
            found = []
            for algorithm in sorted(os.listdir(self._blobs)):
                for dirpath, _dirs, files in os.walk(os.path.join(self._blobs, algorithm)):
                    for f in files:
                        try:
                            st = os.stat(os.path.join(dirpath, f))
                        except FileNotFoundError:
                            continue
                        found.append(BlobInfo(f"{algorithm}:{f}", st.st_size, st.st_mtime))
            return found

        for info in await asyncio.to_thread(_walk):
            yield info

    async def redirect_url(self, digest: str, method: str) -> str | None:
        return None
