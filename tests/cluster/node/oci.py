"""OCI image archives written directly (no image builder): one layer holding static programs, for the
real node's pause image and its test toolbox. ``ctr images import`` reads the result."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
EPOCH = 0  # fixed timestamps: the same programs give the same image digest


def _tar_bytes(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """A tar of ``path -> (content, mode)`` with the parent folders, owned by root, timestamps zeroed."""
    buf = io.BytesIO()
    dirs = sorted({str(Path(p).parent) for p in files} - {"."})
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        for path in sorted(files):
            content, mode = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), mode, EPOCH
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


def image_archive(
    name: str, files: Mapping[str, tuple[bytes, int]], entrypoint: list[str], user: str = "65534:65534"
) -> bytes:
    """An OCI image layout as a tar (pure): one uncompressed layer with ``files``, linux/amd64, named
    ``name`` (``io.containerd.image.name``) so ``ctr images import`` tags it."""
    layer = _tar_bytes({p.lstrip("/"): v for p, v in files.items()})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config),
            "layers": [_descriptor(MEDIA_LAYER, layer)],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                _descriptor(
                    MEDIA_MANIFEST,
                    manifest,
                    platform={"architecture": "amd64", "os": "linux"},
                    annotations={"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
                )
            ],
        },
        sort_keys=True,
    ).encode()
    blobs = {
        f"blobs/sha256/{_digest(b).removeprefix('sha256:')}": (b, 0o644) for b in (layer, config, manifest)
    }
    return _tar_bytes(
        {"oci-layout": (b'{"imageLayoutVersion":"1.0.0"}', 0o644), "index.json": (index, 0o644), **blobs}
    )
