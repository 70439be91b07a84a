"""Tiny container images for the end-to-end tests, built without network or tools.

An image is an OCI image layout on disk (``oci-layout``, ``index.json``, ``blobs/sha256/``) with
one gzip layer holding ``/hello.txt``. Everything that could vary between runs (timestamps,
owners, gzip header) is fixed, so the same text always gives the same digests. skopeo reads the
layout as ``oci:DIR:TAG`` and converts it to whatever a client needs (see clients.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2024-01-01T00:00:00Z"
FILE_NAME = "hello.txt"


@dataclass(frozen=True)
class Image:
    """One tag of an OCI layout, with the digests a test can compare against."""

    layout: Path
    tag: str
    text: str
    manifest_digest: str
    config_digest: str
    layer_digest: str

    @property
    def reference(self) -> str:
        """The image as skopeo and podman name it."""
        return f"oci:{self.layout}:{self.tag}"


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(layout: Path, data: bytes) -> str:
    """Store ``data`` under its digest and return the digest."""
    hex_digest = hashlib.sha256(data).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / hex_digest).write_bytes(data)
    return f"sha256:{hex_digest}"


def blob_path(layout: Path, digest: str) -> Path:
    """Where a layout keeps the blob with ``digest``."""
    algorithm, hex_digest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hex_digest


def layer_tar(text: str) -> bytes:
    """An uncompressed tar with ``hello.txt`` holding ``text``, the same bytes every time."""
    content = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(FILE_NAME)
        info.size = len(content)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_image(layout: Path, tag: str, text: str) -> Image:
    """Write (or add ``tag`` to) an OCI layout at ``layout``: one layer with ``text``."""
    layout.mkdir(parents=True, exist_ok=True)
    tar = layer_tar(text)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    # mtime=0: gzip would otherwise stamp the current time into its header.
    layer = gzip.compress(tar, mtime=0)
    layer_digest = _put_blob(layout, layer)
    config = _canonical_json(
        {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"], "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": CREATED, "created_by": "tests/e2e/images.py"}],
        }
    )
    config_digest = _put_blob(layout, config)
    manifest = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
        }
    )
    manifest_digest = _put_blob(layout, manifest)
    _add_to_index(layout, tag, manifest_digest, len(manifest))
    (layout / "oci-layout").write_bytes(_canonical_json({"imageLayoutVersion": "1.0.0"}))
    return Image(layout, tag, text, manifest_digest, config_digest, layer_digest)


def _add_to_index(layout: Path, tag: str, digest: str, size: int) -> None:
    """Point ``tag`` in index.json at the manifest, replacing an older entry for that tag."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2}
    manifests = [
        entry
        for entry in index.get("manifests", [])
        if entry.get("annotations", {}).get(REF_NAME) != tag
    ]
    manifests.append(
        {"mediaType": MANIFEST_TYPE, "digest": digest, "size": size, "annotations": {REF_NAME: tag}}
    )
    index["manifests"] = manifests
    index_path.write_bytes(_canonical_json(index))


def manifest_digest(layout: Path, tag: str) -> str:
    """The digest that index.json of ``layout`` gives for ``tag``."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            return entry["digest"]
    raise KeyError(f"{layout}: no tag {tag!r}")


def read_text(layout: Path, tag: str) -> str:
    """``hello.txt`` of image ``tag`` in ``layout``: shows that a pulled image is the pushed one."""
    manifest = json.loads(blob_path(layout, manifest_digest(layout, tag)).read_bytes())
    layers = manifest["layers"]
    assert len(layers) == 1, layers
    data = blob_path(layout, layers[0]["digest"]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        member = tar.extractfile(FILE_NAME)
        assert member is not None, f"{FILE_NAME} is not a regular file"
        return member.read().decode()
