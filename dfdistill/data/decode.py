"""Decode image files into one preallocated uint8 (N, C, S, S) tensor, in parallel worker processes.

Why: decoding is CPU-bound per file (about 1.5 h for ImageNet-1K on one core), so the file list is
cut into chunks that forked workers decode side by side. The output lives in an anonymous shared
mapping created before the fork, so every worker writes its rows straight into the final tensor:
no per-chunk arrays are pickled back and no second copy is assembled. Row i always holds file i,
whatever order the chunks finish in, so the result is the same for any worker count.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import warnings
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from dfdistill.core.errors import DataError
from dfdistill.core.log import log

CHUNK = 256  # files per task: large enough to amortise IPC, small enough for an even finish

# The job a forked worker reads (set in the parent just before the fork, inherited by the children).
_JOB: Optional[tuple[Tensor, Sequence[str], Optional[int], int]] = None
_DECODER: Optional[Callable[[str], Tensor]] = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tv_decoder(channels: int) -> Optional[Callable[[str], Tensor]]:
    """torchvision's C decoder (about 3x faster than PIL on small JPEGs), or None where it is unavailable."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # decoding is deprecated in torchvision 0.29 and may disappear
        return None
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    return lambda path: decode_image(read_file(path), mode=mode)


def _decode_pil(path: str, channels: int) -> Tensor:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a data problem for the user
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def decode_one(path: str, image_size: Optional[int], channels: int) -> Tensor:
    """(C, S, S) uint8 for one file, resized whole (antialiased bilinear) when image_size is given."""
    global _DECODER
    if _DECODER is None:
        _DECODER = _tv_decoder(channels) or (lambda p: _decode_pil(p, channels))
    try:
        img = _DECODER(path)
    except (RuntimeError, ValueError):
        img = None  # formats/modes libjpeg/libpng cannot handle: PIL below
    if img is None or img.shape[0] != channels:
        img = _decode_pil(path, channels)
    if image_size is not None and tuple(img.shape[-2:]) != (image_size, image_size):
        from torchvision.transforms.v2.functional import resize

        img = resize(img, [image_size, image_size], antialias=True)
    return img


def _decode_range(span: tuple[int, int]) -> int:
    """Decode files[start:end] of the current job into out[start:end]; returns the count."""
    assert _JOB is not None
    out, files, image_size, channels = _JOB
    start, end = span
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 warns on every decode call
        for i in range(start, end):
            img = decode_one(files[i], image_size, channels)
            if img.shape != out.shape[1:]:
                raise DataError(
                    f"{files[i]} is {img.shape[-1]}x{img.shape[-2]} but {files[0]} is {out.shape[-1]}x{out.shape[-2]}: "
                    "set dataset.image_size=<pixels> to resize all images to one size"
                )
            out[i] = img
    return end - start


def _worker_init() -> None:
    global _DECODER
    torch.set_num_threads(1)  # one process per core already; intra-op threads would oversubscribe
    _DECODER = None  # the decoder is built per process (channels may differ from the parent's last job)


def _shared_uint8(shape: tuple[int, ...]) -> Tensor:
    """A uint8 tensor in an anonymous MAP_SHARED mapping: forked children write into the parent's memory."""
    n = 1
    for s in shape:
        n *= s
    buf = mmap.mmap(-1, max(n, 1))  # anonymous + shared; the tensor keeps the mapping alive
    return torch.frombuffer(buf, dtype=torch.uint8, count=n).view(shape)


def _fork_pool(workers: int) -> Optional[Any]:
    """A fork pool, or None (decode in this process) where this process may not have children."""
    try:
        return mp.get_context("fork").Pool(workers, initializer=_worker_init)
    except (AssertionError, OSError) as exc:  # e.g. inside a daemonic launcher process
        log.warning(f"parallel decoding unavailable ({exc}); decoding in this process")
        return None


def decode_files(
    files: Sequence[str],
    image_size: Optional[int],
    channels: int,
    desc: str = "decode",
    workers: Optional[int] = None,
    chunk: int = CHUNK,
) -> Tensor:
    """Decode `files` into one (N, C, S, S) uint8 tensor (row i = files[i]) with `workers` processes.

    workers None = the usable cores; 1 (or no fork on this platform) decodes in this process.
    The first file fixes the native size when image_size is None; every other file must match it.
    """
    global _JOB, _DECODER
    from tqdm import tqdm

    if not files:
        raise DataError("no images to decode")
    _DECODER = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        first = decode_one(files[0], image_size, channels)
    n = len(files)
    workers = max(1, min(usable_cores() if workers is None else int(workers), (n - 1 + chunk - 1) // chunk))
    parallel = workers > 1 and "fork" in mp.get_all_start_methods()
    shape = (n, *first.shape)
    out = _shared_uint8(shape) if parallel else torch.empty(shape, dtype=torch.uint8)
    out[0] = first
    spans = [(s, min(s + chunk, n)) for s in range(1, n, chunk)]
    _JOB = (out, files, image_size, channels)
    pool = _fork_pool(workers) if parallel else None  # forked before the progress bar starts its monitor thread
    try:
        with tqdm(total=n, initial=1, desc=desc, unit="img", disable=None, mininterval=1.0) as bar:
            results = map(_decode_range, spans) if pool is None else pool.imap_unordered(_decode_range, spans)
            for done in results:
                bar.update(done)
    finally:
        _JOB = None
        if pool is not None:
            pool.terminate()
            pool.join()
    return out
