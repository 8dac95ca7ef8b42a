"""A 200 MiB incompressible layer goes up and comes back intact, and the server's memory stays
bounded (uploads and downloads are streamed, not buffered)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.clients import make_clients
from tests.support.digests import sha256, sha256_file
from tests.support.media_types import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from tests.support.processes import kill_process_group
from tests.support.rss import RssSampler

pytestmark = pytest.mark.e2e

LAYER_FILE_SIZE = 200 * 1024 * 1024
# Streaming means the server grows by a bounded amount whatever the blob size: at most a few
# S3 parts (16 MiB each: one filling, one or two being sent) over what it held before. A
# buffered 200 MiB layer would grow it by at least 200 MiB. (The start footprint is not what
# this measures: it moves with every library the server loads.)
RSS_GROWTH_LIMIT_MIB = 64


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what goes through it to `target`."""

    def __init__(self, target):
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.hash.update(b)
        self.size += len(b)
        self.target.write(b)
        return len(b)


def write_oci_layout(root: Path, size: int) -> dict:
    """An OCI layout holding one image whose only layer is a tar of `size` random bytes,
    gzip-compressed at level 0 (stored blocks: random data does not compress anyway)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tmp_layer = root / "layer.tmp"
    with open(tmp_layer, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=0, mtime=0) as gz:
            uncompressed = _Hashing(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo("big.bin")
                info.size = size
                info.mode = 0o644

                class RandomReader:
                    left = size

                    def read(self, n: int = -1) -> bytes:
                        n = self.left if n < 0 else min(n, self.left)
                        self.left -= n
                        return os.urandom(n)

                tar.addfile(info, RandomReader())
    layer_digest = "sha256:" + compressed.hash.hexdigest()
    tmp_layer.rename(blobs / layer_digest.split(":")[1])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + uncompressed.hash.hexdigest()]},
        }
    ).encode()
    (blobs / sha256(config).split(":")[1]).write_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": compressed.size}],
    }
    manifest_bytes = json.dumps(manifest).encode()
    (blobs / sha256(manifest_bytes).split(":")[1]).write_bytes(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": "big"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {
        "manifest_digest": sha256(manifest_bytes),
        "layer_digest": layer_digest,
        "layer_size": compressed.size,
    }


@pytest.fixture(scope="module")
def clients(tmp_path_factory, registry):
    """Only skopeo is needed here."""
    return make_clients(tmp_path_factory, registry, "clients", needs=("skopeo",))


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory):
    layout = tmp_path_factory.mktemp("big") / "layout"
    yield layout, write_oci_layout(layout, LAYER_FILE_SIZE)
    shutil.rmtree(layout, ignore_errors=True)  # do not leave 200 MB in pytest's kept temp dirs


def test_200mb_layer_roundtrip_with_bounded_memory(registry, clients, big_layout, tmp_path):
    layout, info = big_layout
    ref = f"{registry.host}/big/layer:v1"
    baseline_mib = registry.rss_kib() / 1024

    mark = registry.mark()
    with RssSampler(registry.pid) as push_rss:
        clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:big", f"docker://{ref}")
    uploaded = sum(int(e["bytes_in"]) for e in registry.access(mark) if e["method"] in ("PATCH", "PUT", "POST"))
    assert uploaded >= info["layer_size"], "the layer was not uploaded through the API"

    served, _, _ = registry.manifest_json("big/layer", "v1")
    assert served == info["manifest_digest"]
    head = registry.head_blob("big/layer", info["layer_digest"])
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == info["layer_size"]

    pulled = tmp_path / "pulled"
    with RssSampler(registry.pid) as pull_rss:
        clients.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{pulled}")
    layer_file = pulled / info["layer_digest"].split(":")[1]
    assert layer_file.stat().st_size == info["layer_size"]
    assert sha256_file(layer_file) == info["layer_digest"]
    assert sha256((pulled / "manifest.json").read_bytes()) == info["manifest_digest"]
    shutil.rmtree(pulled)

    print(
        f"okura RSS: baseline {baseline_mib:.1f} MiB, peak during push {push_rss.peak_mib:.1f} MiB "
        f"({len(push_rss.samples)} samples), peak during pull {pull_rss.peak_mib:.1f} MiB ({len(pull_rss.samples)})"
    )
    assert push_rss.samples and pull_rss.samples
    for phase, sampled in (("push", push_rss), ("pull", pull_rss)):
        growth = sampled.peak_mib - baseline_mib
        assert growth < RSS_GROWTH_LIMIT_MIB, f"server RSS grew by {growth:.1f} MiB during the {phase}"


def test_interrupted_push_then_retry(registry, clients, tmp_path):
    """A client killed in the middle of a layer upload leaves the registry healthy; pushing again works."""
    layout = tmp_path / "layout"
    info = write_oci_layout(layout, 100 * 1024 * 1024)  # a new layer: the registry must not have it yet
    ref = f"{registry.host}/big/interrupted:v1"
    argv = ["copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:big", f"docker://{ref}"]
    full = clients.command("skopeo", "--registries-conf", str(clients.registries_conf), *argv)
    mark = registry.mark()
    existing = set(registry.data_dir.rglob("*"))
    proc = subprocess.Popen(full, env=clients.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received = 0
    try:
        # wait until the server has stored 10 MiB of the layer (the upload in progress: a file
        # under its data dir, or multipart parts in S3), then kill the client mid-PATCH
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and received < 10 << 20:
            if registry.store.is_s3:
                received = registry.store.upload_bytes()  # whole parts (16 MiB by default)
            else:
                with contextlib.suppress(OSError):
                    new_files = [f for f in registry.data_dir.rglob("*") if f not in existing and f.is_file()]
                    received = max((f.stat().st_size for f in new_files), default=0)
            time.sleep(0.005)
    finally:
        kill_process_group(proc, grace=0)
    assert 0 < received < info["layer_size"], f"could not catch the upload in flight ({received} bytes seen)"
    patches = [e for e in registry.access(mark) if e["method"] == "PATCH"]
    print("interrupted PATCH as logged:", [(e["status"], e["bytes_in"]) for e in patches])
    assert registry.get_manifest("big/interrupted", "v1").status_code == 404, "the push finished before the kill"
    assert registry.head_blob("big/interrupted", info["layer_digest"]).status_code == 404

    clients.skopeo(*argv)
    served, _, _ = registry.manifest_json("big/interrupted", "v1")
    assert served == info["manifest_digest"]
    with registry.http() as c, c.stream("GET", f"/v2/big/interrupted/blobs/{info['layer_digest']}") as r:
        assert r.status_code == 200
        h = hashlib.sha256()
        for chunk in r.iter_bytes(1 << 20):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == info["layer_digest"]
    shutil.rmtree(layout)
