"""One GPU per job: which devices are visible, and a machine-wide slot per physical device.

- run_table's local launcher hands each subprocess one device through CUDA_VISIBLE_DEVICES from a
  pool (a device returns to the pool when its job ends), so concurrent jobs never share a GPU.
- Hydra launchers that run jobs in long-lived worker processes (joblib/loky) cannot use
  CUDA_VISIBLE_DEVICES (a worker that already initialised CUDA ignores it), and Hydra assigns no
  device itself. `GpuSlotCallback` (registered by the table exps under `hydra.callbacks.gpu`) takes
  a free device at `on_job_start` with an exclusive file lock (`<lock dir>/gpu-<id>.lock`, id = the
  physical index or UUID from CUDA_VISIBLE_DEVICES) and makes it the current CUDA device, which
  `device=auto` then uses; `on_job_end` releases it. Jobs beyond the number of devices wait.
- SLURM (submitit_slurm): one GPU per task through `hydra.launcher.gpus_per_node: 1`; each task
  sees exactly one device, so the callback's choice is trivially that one.
- How many at once: `--jobs auto` (`JOBS=auto`, the default) is one job per visible device
  (`parallel_jobs`), one at a time without a GPU.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, TextIO, Union

LOCK_DIR_ENV = "DFDISTILL_GPU_LOCK_DIR"


def visible_devices() -> list[str]:
    """Physical ids of the devices this process may use ([] without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:
        return []


def jobs_arg(text: str) -> Union[str, int]:
    """argparse type of --jobs: `auto` or a positive integer."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job count; use --jobs auto (one per GPU) or --jobs N (N >= 1)")
    return n


def parallel_jobs(spec: Union[str, int], devices: Optional[list[str]] = None) -> int:
    """Jobs to run at once: `auto` -> one per visible device (1 without devices); N -> N."""
    if spec == "auto":
        return max(1, len(visible_devices() if devices is None else devices))
    return int(spec)


def lock_dir() -> Path:
    d = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"dfdistill-gpus-{os.getuid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


class GpuSlot:
    """An exclusive claim on one visible device (index into `visible_devices()`)."""

    def __init__(self, devices: Optional[list[str]] = None, directory: Optional[Path] = None) -> None:
        self.devices = visible_devices() if devices is None else devices
        self.directory = directory or lock_dir()
        self.index: Optional[int] = None
        self._fh: Optional[TextIO] = None

    def try_acquire(self) -> Optional[int]:
        for i, dev in enumerate(self.devices):
            fh = open(self.directory / f"gpu-{dev}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self.index, self._fh = i, fh
            return i
        return None

    def acquire(self, timeout: Optional[float] = None, poll: float = 2.0) -> Optional[int]:
        """Block until a device is free (None at once when there are no devices)."""
        if not self.devices:
            return None
        t0 = time.monotonic()
        while (i := self.try_acquire()) is None:
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TimeoutError(f"no free GPU among {self.devices} after {timeout:.0f}s")
            time.sleep(poll)
        return i

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
        self._fh, self.index = None, None


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a dependency
    Callback = object  # type: ignore[assignment,misc]


class GpuSlotCallback(Callback):
    """Hydra job callback: each job runs on a device no other running job holds (see module doc)."""

    def __init__(self, timeout: Optional[float] = None, poll: float = 2.0) -> None:
        self.timeout, self.poll = timeout, poll
        self.slot: Optional[GpuSlot] = None

    def on_job_start(self, config: Any = None, **kwargs: Any) -> None:
        if str((config or {}).get("device", "auto")).startswith(("cpu", "cuda:")):
            return  # the job chose its device itself
        self.slot = GpuSlot()
        i = self.slot.acquire(self.timeout, self.poll)
        if i is not None:
            import torch

            torch.cuda.set_device(i)
            print(f"[dfdistill] job on GPU {self.slot.devices[i]} (cuda:{i})", flush=True)

    def on_job_end(self, config: Any = None, job_return: Any = None, **kwargs: Any) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None
