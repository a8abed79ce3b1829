"""Content-addressed cache for expensive artifacts and atomic, verified file writes.

Why: expert trajectories, per-sample scores and decoded image folders take minutes to hours to
compute. They are keyed by a hash of *everything that produced them* so a changed setting never
reuses a stale artifact, and written atomically (temp file + fsync + rename) so a killed process
never leaves a half-written file behind. Loads verify a checksum stored beside the payload; a
corrupt file is reported (and, for caches, deleted so it is rebuilt) instead of crashing later.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch

from dfdistill.core.errors import DfdistillError
from dfdistill.core.log import log

_MAGIC = b"DFDISTILL1"


def config_key(obj: Any, length: int = 16) -> str:
    """Stable hash of a JSON-able description (dict/list of primitives, tensors allowed)."""

    def default(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            return hashlib.sha256(o.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        if isinstance(o, Path):
            return str(o)
        return repr(o)

    text = json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at `path` only when the block ends without error
    (temp file + fsync + rename), so readers see either the old file or the complete new one.

    The temp file is removed on any failure (full disk, Ctrl-C); the result gets the mode a plain
    `open()` would give (0666 minus the umask), not mkstemp's private 0600, so a group can read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_tensor_file(path: str | os.PathLike, obj: Any) -> None:
    """torch.save `obj` atomically with a SHA-256 header that `load_tensor_file` verifies."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).digest()
    atomic_write_bytes(path, _MAGIC + digest + payload)


class CorruptArtifact(DfdistillError):
    """The file exists but is truncated, tampered with, or not a dfdistill artifact."""

def load_tensor_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a file written by `save_tensor_file`; raise CorruptArtifact on any mismatch."""
    path = Path(path)
    raw = path.read_bytes()
    head = len(_MAGIC) + 32
    if len(raw) < head or raw[: len(_MAGIC)] != _MAGIC:
        raise CorruptArtifact(f"{path} is not a valid dfdistill artifact (bad header); delete it to rebuild")
    digest, payload = raw[len(_MAGIC) : head], raw[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptArtifact(f"{path} is corrupt (checksum mismatch); delete it to rebuild")
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


def default_cache_dir() -> Path:
    """$DFDISTILL_CACHE, else ~/.cache/dfdistill."""
    return Path(os.environ.get("DFDISTILL_CACHE", Path.home() / ".cache" / "dfdistill")).expanduser()


class ArtifactCache:
    """A folder of `<kind>/<key>.pt` files; `get_or_create` computes on a miss or a corrupt hit."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        """The cached object, or None on a miss. A corrupt file is deleted (and reported) so it is rebuilt."""
        p = self.path(kind, key)
        if not p.exists():
            return None
        try:
            return load_tensor_file(p)
        except (CorruptArtifact, EOFError, RuntimeError, OSError) as exc:

            log.info(f"cache file {p} unreadable ({exc}); rebuilding it")
            p.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, obj: Any) -> Path:
        p = self.path(kind, key)
        save_tensor_file(p, obj)
        return p

    def get_or_create(self, kind: str, key: str, create: Callable[[], Any]) -> Any:
        hit = self.load(kind, key)
        if hit is not None:
            return hit
        obj = create()
        self.save(kind, key, obj)
        return obj
