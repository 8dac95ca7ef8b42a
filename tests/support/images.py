"""Test images: random layers, images built FROM scratch with one layer per COPY (buildah, or
docker: write_build_context), and OCI layouts written by hand (gzip level 0: fast) that skopeo
copies as they are."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.digests import sha256
from tests.support.media_types import DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST

if TYPE_CHECKING:
    from tests.support.clients import Clients


def merged_files(layers: list[dict[str, bytes]]) -> dict[str, bytes]:
    """The files of an image made of `layers` (a later layer's file replaces an earlier one's)."""
    merged: dict[str, bytes] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def write_build_context(ctx: Path, layers: list[dict[str, bytes]], build_file: str, *extra_lines: str) -> Path:
    """A build context for FROM scratch plus one COPY per layer (then `extra_lines`): the layers'
    files under ctx/layer<i>/, and the build file (Containerfile, Dockerfile) itself; its path."""
    lines = ["FROM scratch"]
    for i, files in enumerate(layers):
        for path, data in files.items():
            target = ctx / f"layer{i}" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        lines.append(f"COPY layer{i}/ /")
    lines.extend(extra_lines)
    (ctx / build_file).write_text("\n".join(lines) + "\n")
    return ctx / build_file


@dataclass
class BuiltImage:
    name: str  # local name in the builder's storage
    layers: list[dict[str, bytes]]
    fmt: str  # "docker" or "oci"
    arch: str = "amd64"
    image_id: str = ""

    @property
    def files(self) -> dict[str, bytes]:
        return merged_files(self.layers)

    @property
    def manifest_type(self) -> str:
        return DOCKER_MANIFEST if self.fmt == "docker" else OCI_MANIFEST


def random_layers(sizes: list[list[int]], tag: str) -> list[dict[str, bytes]]:
    """Layers of random files; sizes[i] lists the file sizes of layer i."""
    layers = []
    for i, file_sizes in enumerate(sizes):
        files = {f"/data/{tag}/layer{i}/file{j}.bin": os.urandom(n) for j, n in enumerate(file_sizes)}
        files[f"/etc/{tag}-layer{i}.txt"] = f"layer {i} of {tag}\n".encode()
        layers.append(files)
    return layers


def build_image(
    clients: Clients, name: str, layers: list[dict[str, bytes]], fmt: str = "docker", arch: str | None = None
) -> BuiltImage:
    ctx = clients.workdir("build-" + re.sub(r"[^a-zA-Z0-9]+", "-", name))
    containerfile = write_build_context(ctx, layers, "Containerfile", f'LABEL org.example.e2e="{name}"')
    args = ["build", "--layers", "--format", fmt, "-t", name, "-f", str(containerfile)]
    if arch:
        args += ["--arch", arch]
    clients.buildah(*args, str(ctx))
    image = BuiltImage(name=name, layers=layers, fmt=fmt, arch=arch or "amd64")
    image.image_id = clients.image_inspect(name)["Id"]
    return image


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class LayoutImage:
    ref: str  # the name in the layout's index.json
    layers: list[dict[str, bytes]]
    layer_digests: list[str]
    manifest_digest: str

    @property
    def files(self) -> dict[str, bytes]:
        return merged_files(self.layers)


class OCILayout:
    """An `oci:` layout directory holding several tagged images."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs = path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: dict = {"schemaVersion": 2, "manifests": []}
        self._write_index()

    def _write_index(self) -> None:
        (self.path / "index.json").write_text(json.dumps(self.index))

    def _put(self, data: bytes) -> str:
        digest = sha256(data)
        target = self.blobs / digest.split(":", 1)[1]
        if not target.exists():
            target.write_bytes(data)
        return digest

    def add(self, ref: str, layers: list[dict[str, bytes]]) -> LayoutImage:
        tars = [layer_tar(files) for files in layers]
        diff_ids = [sha256(t) for t in tars]
        blobs = [gzip.compress(t, compresslevel=0, mtime=0) for t in tars]
        layer_digests = [self._put(b) for b in blobs]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"org.example.replicas": ref}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": self._put(config), "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": d, "size": len(b)}
                    for d, b in zip(layer_digests, blobs, strict=True)
                ],
            }
        ).encode()
        digest = self._put(manifest)
        self.index["manifests"].append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        )
        self._write_index()
        return LayoutImage(ref=ref, layers=layers, layer_digests=layer_digests, manifest_digest=digest)

    def source(self, image: LayoutImage) -> str:
        return f"oci:{self.path}:{image.ref}"
