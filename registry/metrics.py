"""Prometheus metrics, named after OpenShift's image registry (imageregistry_*) where
it has an equivalent. With several workers, prometheus-client's multiprocess mode
aggregates all of them (PROMETHEUS_MULTIPROC_DIR is set by `okura serve`)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZES = (0, 1024, 16384, 262144, 1 << 20, 8 << 20, 64 << 20, 256 << 20, 1 << 30)

in_flight = Gauge("imageregistry_http_in_flight_requests", "Requests being served", multiprocess_mode="livesum")
requests_total = Counter(
    "imageregistry_http_requests_total", "HTTP requests by method, route and status code", ["method", "route", "code"]
)
request_duration = Histogram(
    "imageregistry_http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_LATENCY
)
request_size = Histogram(
    "imageregistry_http_request_size_bytes", "Bytes received per request", ["method"], buckets=_SIZES
)
response_size = Histogram(
    "imageregistry_http_response_size_bytes", "Bytes sent per response", ["method"], buckets=_SIZES
)
storage_duration = Histogram(
    "imageregistry_storage_duration_seconds", "Storage driver operation latency", ["operation"], buckets=_LATENCY
)
storage_errors = Counter("imageregistry_storage_errors_total", "Storage driver errors", ["operation", "code"])
uploads_purged = Counter("okura_uploads_purged_total", "Abandoned upload sessions removed")
blob_cache_requests = Counter(
    "okura_blob_cache_requests_total", "Reads of small blobs from remote storage, by cache result", ["result"]
)
zero_copy_bytes = Counter("okura_http_zero_copy_bytes_total", "Blob bytes sent with sendfile(2), bypassing Python")
# Request limits on /v2/ (registry/api/limits.py), OpenShift's spec.requests.read and .write:
# per kind, the requests refused with 429 and those waiting for a slot in this process.
requests_throttled = Counter(
    "okura_requests_throttled_total", "Registry API requests refused with 429 by the request limits", ["kind"]
)
requests_queued = Gauge(
    "okura_requests_queued",
    "Registry API requests waiting for a slot under the request limits",
    ["kind"],
    multiprocess_mode="livesum",
)

# The image pruner (registry/pruning). The install status is a state, not a count: every worker
# sets it when it reads the resource, and the most recent value of a live worker is reported.
pruner_install_status = Gauge(
    "image_registry_operator_image_pruner_install_status",
    "Image pruner state: 0 not installed, 1 suspended, 2 enabled",
    multiprocess_mode="livemostrecent",
)
pruner_runs = Counter("okura_image_pruner_runs_total", "Image pruner runs (not dry runs) by outcome", ["outcome"])
pruner_run_duration = Histogram(
    "okura_image_pruner_run_duration_seconds",
    "Image pruner run duration",
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200),
)
pruner_deleted = Counter(
    "okura_image_pruner_deleted_total",
    "Objects deleted by the image pruner: tag_revisions, manifests, repository_blobs, blobs, orphans",
    ["kind"],
)
pruner_freed_bytes = Counter("okura_image_pruner_freed_bytes_total", "Storage bytes freed by the image pruner")

# Imports and pull-through (registry/model/imports.py, pullthrough.py), with OpenShift's names
# for what its registry also measures.
imports_total = Counter(
    "okura_image_imports_total",
    "Images imported from other registries, by outcome (success or the failure reason)",
    ["outcome"],
)
pullthrough_cache_requests = Counter(
    "imageregistry_pullthrough_blobstore_cache_requests_total",
    "Pull-through blob requests: Hit (stored here by an earlier pull) or Miss (fetched upstream)",
    ["type"],
)
pullthrough_errors = Counter(
    "imageregistry_pullthrough_repository_errors_total",
    "Pull-through requests to upstream registries that failed",
    ["registry", "operation", "code"],
)
pullthrough_duration = Histogram(
    "imageregistry_pullthrough_repository_duration_seconds",
    "Pull-through requests to upstream registries",
    ["registry", "operation"],
    buckets=_LATENCY,
)
pullthrough_bytes = Counter(
    "okura_pullthrough_bytes_total", "Blob bytes fetched from upstream registries by pull-through", ["registry"]
)


def render() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _error_code(exc: BaseException) -> str:
    from storage.base import BlobNotFound

    if isinstance(exc, BlobNotFound):
        return "PATH_NOT_FOUND"
    errno = getattr(exc, "errno", None)
    return {28: "DEVICE_OUT_OF_SPACE", 30: "READ_ONLY_FILESYSTEM", 27: "FILE_TOO_LARGE"}.get(errno or 0, "UNKNOWN")


class InstrumentedStorage:
    """Wraps any driver to time its operations; drivers stay free of metrics code."""

    _TIMED = ("start_upload", "upload_writer", "commit_upload", "cancel_upload", "stat", "delete", "check")

    def __init__(self, inner: Any):
        self._inner = inner
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr in self._TIMED:
            return self._timed(attr, value)
        if attr in ("read", "read_upload"):
            return self._timed_stream(attr, value)
        return value

    @staticmethod
    def _timed(operation: str, fn: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            except Exception as e:
                storage_errors.labels(operation, _error_code(e)).inc()
                raise
            finally:
                storage_duration.labels(operation).observe(time.perf_counter() - start)

        return call

    @staticmethod
    def _timed_stream(operation: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            async def gen() -> AsyncIterator[bytes]:
                start = time.perf_counter()
                first = True
                inner = fn(*args, **kwargs)
                try:
                    async for chunk in inner:
                        if first:  # time to first byte: what a client waits for
                            storage_duration.labels(operation).observe(time.perf_counter() - start)
                            first = False
                        yield chunk
                except Exception as e:
                    storage_errors.labels(operation, _error_code(e)).inc()
                    raise
                finally:
                    await inner.aclose()

            return gen()

        return call


# Notifications (registry/notifications), per endpoint.
notification_events = Counter(
    "imageregistry_notifications_events_total", "Events handed to an endpoint's deliverer", ["endpoint"]
)
notification_sent = Counter("imageregistry_notifications_sent_total", "Events delivered (2xx answers)", ["endpoint"])
notification_failures = Counter(
    "imageregistry_notifications_failed_total", "Delivery requests that failed (retried later)", ["endpoint"]
)
notification_dropped = Counter(
    "imageregistry_notifications_dropped_total",
    "Events an endpoint will never get: it stayed down past notifications.max_backlog",
    ["endpoint"],
)
notification_pending = Gauge(
    "imageregistry_notifications_pending",
    "Events in the log after an endpoint's cursor",
    ["endpoint"],
    multiprocess_mode="livemostrecent",
)
notification_last_success = Gauge(
    "imageregistry_notifications_last_success_timestamp_seconds",
    "When an endpoint last answered 2xx (Unix time)",
    ["endpoint"],
    multiprocess_mode="livemax",
)
