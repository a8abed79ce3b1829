"""Where the uint8 split lives: on the compute device when it fits, else host memory with per-batch transfer.

Why: at ImageNet-1K 64 px the train split is 15.7 GB as uint8 but 63 GB as float32; storing pixels
and normalising each batch on the fly (`RealData.batch`) keeps the device for the model. When even
the uint8 split would crowd the device, it stays in host memory and each batch is gathered into a
pinned staging buffer and copied asynchronously. The choice is made once, from free memory, and
printed as one line so a run's log says which it was.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dfdistill.core.errors import DataError

# The split may take at most this share of the device's free memory under storage=auto; the rest
# is for the networks, activations and synthetic set.
DEVICE_SHARE = 0.5
STORAGE_MODES = ("auto", "device", "host")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def canonical_device(device: torch.device | str) -> torch.device:
    """'cuda' -> 'cuda:<current>' so a store's device compares equal to the device batches go to."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def free_device_memory(device: torch.device) -> Optional[int]:
    """Free bytes on a CUDA device (None elsewhere: CPU storage is host memory either way)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def choose_storage(mode: str, device: torch.device, nbytes: int, free: Optional[int] = None) -> tuple[torch.device, str]:
    """(storage device, one-line statement) for a split of `nbytes` that batches go to `device` from.

    `free` defaults to the device's free memory now (tests pass it). On a CPU device the store is
    host memory whatever the mode: there is no second memory to choose.
    """
    if mode not in STORAGE_MODES:
        raise DataError(f"dataset.storage must be one of {', '.join(STORAGE_MODES)}, got {mode!r}")
    if device.type == "cpu":
        return device, f"dataset storage: host memory ({_gib(nbytes)}; device=cpu, so host and device are one memory)"
    free = free_device_memory(device) if free is None else free
    if free is None:  # e.g. mps: no free-memory query, keep the split where the batches go
        return device, f"dataset storage: {device} ({_gib(nbytes)}, storage={mode})"
    need = f"{_gib(nbytes)} of {_gib(free)} free on {device}"
    if mode == "host":
        return torch.device("cpu"), f"dataset storage: pinned host memory with per-batch transfer (storage=host; {need})"
    if mode == "device":
        if nbytes > free:
            raise DataError(f"the uint8 split needs {need}: set dataset.storage=host (or auto)")
        return device, f"dataset storage: {device} (storage=device; {need})"
    if nbytes <= DEVICE_SHARE * free:
        return device, f"dataset storage: {device} (storage=auto; {need}, fits in the {DEVICE_SHARE:.0%} share)"
    return torch.device("cpu"), (f"dataset storage: pinned host memory with per-batch transfer (storage=auto; {need} "
                                 f"exceeds the {DEVICE_SHARE:.0%} share)")


def gather(store: Tensor, idx: Tensor, device: torch.device) -> Tensor:
    """store[idx] on `device`: a direct gather when the store is there, else pinned staging + async copy."""
    if store.device == device:
        return store.index_select(0, idx.to(device))
    idx = idx.to(store.device)
    if device.type == "cuda" and store.device.type == "cpu":
        return staged_gather(store, idx, device, pin=True)
    return store.index_select(0, idx).to(device)


def staged_gather(store: Tensor, idx: Tensor, device: torch.device, pin: bool) -> Tensor:
    """store[idx] through a staging buffer (pinned when `pin`) and an asynchronous copy to `device`:
    host storage's CUDA path, callable with pin=False on a CPU (tests run it there)."""
    staging = torch.empty((idx.numel(), *store.shape[1:]), dtype=store.dtype, pin_memory=pin)
    torch.index_select(store, 0, idx.to(store.device), out=staging)
    return staging.to(device, non_blocking=True)  # the caching host allocator keeps `staging` until the copy ends
