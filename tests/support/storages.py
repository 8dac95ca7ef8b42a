"""Where a registry under test keeps its blobs.

End-to-end registries run once per storage a test module allows (STORAGES): `filesystem` (blobs
under the data dir), `s3-redirect` (S3 driver on the session's SeaweedFS, SQLite metadata, blob
GET/HEAD answered 307 to a presigned SeaweedFS URL that the clients follow) and `s3-proxy` (the
same, storage.s3.redirect=false: blobs streamed through the registry). Each registry gets its own
root prefix in the shared bucket. A test or module narrows the list with
@pytest.mark.storages(...); OKURA_TEST_E2E_STORAGES=filesystem,... narrows the whole run."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.s3 import S3_BUCKET
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS

STORAGES = ("filesystem", "s3-redirect", "s3-proxy")
# OKURA_TEST_E2E_STORAGES: the only storages this run uses (all of STORAGES when empty)
ONLY_STORAGES = [s for s in os.environ.get("OKURA_TEST_E2E_STORAGES", "").replace(" ", "").split(",") if s]


@dataclass
class BlobStore:
    """Where one registry under test keeps its blobs: its data dir, or a root prefix of its own
    in the session's SeaweedFS bucket (so that registries never see each other's blobs)."""

    kind: str  # one of STORAGES
    s3: SeaweedFS | None = None
    bucket: str = S3_BUCKET
    prefix: str = ""
    _client: object = field(default=None, repr=False, compare=False)

    @property
    def is_s3(self) -> bool:
        return self.kind.startswith("s3")

    @property
    def redirect(self) -> bool:
        """Blob GET/HEAD answer 307 to S3."""
        return self.kind == "s3-redirect"

    def env(self) -> dict[str, str]:
        """OKURA_STORAGE_* variables of this storage (none for the filesystem default)."""
        if not self.is_s3:
            return {}
        assert self.s3 is not None
        return {
            "OKURA_STORAGE_DRIVER": "s3",
            "OKURA_STORAGE_S3_BUCKET": self.bucket,
            "OKURA_STORAGE_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
            "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
            "OKURA_STORAGE_S3_ROOT_PREFIX": self.prefix,
            "OKURA_STORAGE_S3_REDIRECT": "true" if self.redirect else "false",
        }

    def client(self):
        """A boto3 client of the SeaweedFS server (to look at what the registry stored)."""
        assert self.s3 is not None
        if self._client is None:
            self._client = self.s3.client()
        return self._client

    def _keys(self, prefix: str) -> Iterator[dict]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def blob_digests(self, data_dir: Path) -> set[str]:
        """Digests of the blobs stored (whatever the metadata says)."""
        if self.is_s3:
            root = f"{self.prefix}blobs/"
            keys = [obj["Key"][len(root) :].split("/") for obj in self._keys(root)]
            return {f"{parts[0]}:{parts[-1]}" for parts in keys if len(parts) == 3}
        root_dir = data_dir / "blobs"
        found = set()
        for path in root_dir.rglob("*") if root_dir.exists() else ():
            if path.is_file() and re.fullmatch(r"[0-9a-f]{64}", path.name):
                found.add(f"sha256:{path.name}")
        return found

    def upload_bytes(self) -> int:
        """Bytes of uploads in progress that reached S3 (multipart parts and tail objects)."""
        client = self.client()
        root = f"{self.prefix}uploads/"
        total = sum(obj["Size"] for obj in self._keys(root))
        for mpu in client.list_multipart_uploads(Bucket=self.bucket, Prefix=root).get("Uploads", []):
            parts = client.list_parts(Bucket=self.bucket, Key=mpu["Key"], UploadId=mpu["UploadId"])
            total += sum(p["Size"] for p in parts.get("Parts", []))
        return total


def make_blob_store(request: pytest.FixtureRequest, kind: str) -> BlobStore:
    if not kind.startswith("s3"):
        return BlobStore(kind)
    server = request.getfixturevalue("seaweedfs")
    module = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removesuffix(".py")).strip("-")
    return BlobStore(kind, s3=server, prefix=f"e2e-{module}-{kind}-{uuid.uuid4().hex[:8]}/")


async def stored_blobs(reg) -> dict[str, int]:
    """Digest -> size of every blob file in an in-process registry's storage."""
    return {info.digest: info.size async for info in reg.storage.list_blobs()}
