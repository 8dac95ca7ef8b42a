from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.cache import BlobContentCache, MetadataCache
from registry.config import Config
from registry.metadata.db import Database
from storage.base import BlobStorage


@dataclass
class Registry:
    """Everything the model functions need, built once per process."""

    config: Config
    db: Database
    storage: BlobStorage
    cache: MetadataCache
    content: BlobContentCache | None = None  # small blobs in memory, for remote storage
    waiter: Any = None  # a changes.ChangeWaiter: wakes this process's watchers
    secret_keys: Any = None  # an imports.sealing.SecretKeys: seals and opens pull secrets
    settings: Any = None  # a registry_config.LiveSettings: the Config resource in effect here
    instance: Any = None  # an instances.Instance: this server process, when it serves
