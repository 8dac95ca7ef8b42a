"""Blob storage drivers. They store content-addressed blobs and in-flight uploads
and know nothing of repositories, manifests or auth."""

from storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobStorage,
    StorageError,
    StorageUnavailable,
    UploadWriter,
)
from storage.factory import create_storage

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStorage",
    "StorageError",
    "StorageUnavailable",
    "UploadWriter",
    "create_storage",
]
