"""Streaming cache file for a decoded split: raw uint8 rows written and read in chunks.

Why: `torch.save` into a buffer plus the checksum header held the split 2-3 times in RAM (buffer,
bytes, header + payload), which is 30-45 GB for ImageNet-1K at 64 px. Here the file is a JSON
header, the raw image bytes, the raw int64 labels and a SHA-256 trailer; writing streams the
tensor's memory to disk 64 MiB at a time and reading fills ONE preallocated tensor, so the only
copy in RAM is the split itself. The write is atomic (temp file + fsync + rename) and a truncated
or altered file is reported, deleted and rebuilt, like every other cache artifact.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO, Optional

import torch
from torch import Tensor

from dfdistill.core.artifacts import atomic_writer
from dfdistill.core.log import log

MAGIC = b"DFDSPLIT1\n"
SUFFIX = ".split"
_CHUNK = 64 << 20
_DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "int64": torch.int64}


class CorruptSplit(Exception):
    """The file is truncated, altered, or not a split cache file."""


def _bytes_of(t: Tensor) -> memoryview:
    return memoryview(t.contiguous().numpy()).cast("B")


def _write_stream(fh: BinaryIO, view: memoryview, digest: Any) -> None:
    for start in range(0, len(view), _CHUNK):
        part = view[start : start + _CHUNK]
        fh.write(part)
        digest.update(part)


def _read_stream(fh: BinaryIO, view: memoryview, digest: Any) -> None:
    for start in range(0, len(view), _CHUNK):
        part = view[start : start + _CHUNK]
        if fh.readinto(part) != len(part):
            raise CorruptSplit("file is truncated")
        digest.update(part)


def save_split(path: Path, images: Tensor, labels: Tensor, meta: dict[str, Any]) -> None:
    """Write `images` (uint8/float32, any shape) and int64 `labels` with JSON-able `meta`, streaming."""
    images, labels = images.detach().cpu(), labels.detach().cpu().to(torch.int64)
    dtype = next(k for k, v in _DTYPES.items() if v == images.dtype)
    header = json.dumps({"meta": meta, "shape": list(images.shape), "dtype": dtype, "n_labels": labels.numel()}).encode()
    with atomic_writer(path) as fh:
        digest = hashlib.sha256()
        head = MAGIC + struct.pack("<Q", len(header)) + header
        fh.write(head)
        digest.update(head)
        _write_stream(fh, _bytes_of(images), digest)
        _write_stream(fh, _bytes_of(labels), digest)
        fh.write(digest.digest())


def read_split(path: Path) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """(images, labels, meta) from a file written by `save_split`; CorruptSplit on any mismatch."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        digest = hashlib.sha256()
        magic = fh.read(len(MAGIC) + 8)
        if len(magic) < len(MAGIC) + 8 or magic[: len(MAGIC)] != MAGIC:
            raise CorruptSplit("bad header")
        (n_header,) = struct.unpack("<Q", magic[len(MAGIC) :])
        if n_header > size:
            raise CorruptSplit("bad header length")
        raw = fh.read(n_header)
        digest.update(magic + raw)
        try:
            header = json.loads(raw)
            dtype = _DTYPES[header["dtype"]]
            shape = [int(s) for s in header["shape"]]
            n_labels = int(header["n_labels"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSplit(f"unreadable header ({exc})") from None
        images = torch.empty(shape, dtype=dtype)
        labels = torch.empty(n_labels, dtype=torch.int64)
        expected = len(magic) + n_header + images.numel() * images.element_size() + 8 * n_labels + 32
        if size != expected:
            raise CorruptSplit(f"size {size} B, expected {expected} B")
        _read_stream(fh, _bytes_of(images), digest)
        _read_stream(fh, _bytes_of(labels), digest)
        if fh.read(32) != digest.digest():
            raise CorruptSplit("checksum mismatch")
    return images, labels, header["meta"]


def load_cached_split(path: Path) -> Optional[tuple[Tensor, Tensor, dict[str, Any]]]:
    """The cached split, None on a miss; an unreadable file is reported and deleted so it is rebuilt."""
    if not path.exists():
        return None
    try:
        return read_split(path)
    except (CorruptSplit, OSError) as exc:
        log.info(f"cache file {path} unreadable ({exc}); rebuilding it")
        path.unlink(missing_ok=True)
        return None
