"""Process-level facts a run needs and records: device, seeding, GPU options, code version, memory,
stage times.

Why separate: the pipeline, the speed harness and analysis scripts all need the same device rule,
seeding and GPU switches, and results must record the same code version that identity checks compare.

GPU options (`gpu:` block, all off by default until a GPU measurement shows accuracy holds) are
applied here in one place: `configure_gpu` sets the process-wide backend flags (cudnn.benchmark,
TF32) and remembers the rest; the model factory calls `prepare_model` (channels_last) and the
first-order training loops enter `autocast(device)` (bf16). cudnn.benchmark and TF32 mean nothing
on a CPU and are ignored there (one log line says so); channels_last and bf16 autocast also exist on
a CPU and apply there too when switched on (measured slower on this project's CPU: docs/performance.md).
"""

from __future__ import annotations

import functools
import random
import resource
import subprocess
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional

import numpy as np
import torch

from dfdistill.core.errors import ConfigError
from dfdistill.core.log import log
from dfdistill.engine.memory import MemoryConfig, configure_memory


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when visible, else cpu; an explicit cuda request without CUDA is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)


@dataclass
class GPUConfig:
    """The `gpu:` block of the run config: speed switches, each off until a GPU run shows accuracy holds."""

    cudnn_benchmark: bool = False  # cuDNN autotunes convolution algorithms per input shape (CUDA only)
    tf32: bool = False  # TF32 tensor-core matmuls/convolutions (float32 inputs, 10-bit mantissa products; CUDA only)
    channels_last: bool = False  # networks in NHWC memory format (built by the model factory)
    # bf16 autocast for the first-order parts: evaluation training, expert training, DM embeddings
    # (never a double backward: gradient matching's synthetic side stays float32)
    bf16: bool = False


_gpu = GPUConfig()


def configure_gpu(cfg: Optional[GPUConfig], device: torch.device) -> list[str]:
    """Apply the GPU options for a run on `device` (process-wide); returns what was ignored, if anything."""
    global _gpu
    _gpu = cfg if cfg is not None else GPUConfig()
    ignored = []
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = _gpu.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = _gpu.tf32
        torch.backends.cudnn.allow_tf32 = _gpu.tf32
    else:
        ignored = [k for k in ("cudnn_benchmark", "tf32") if getattr(_gpu, k)]
    return ignored


def gpu_options() -> GPUConfig:
    return _gpu


@contextmanager
def gpu_settings(**changes) -> Iterator[GPUConfig]:
    """Temporarily change the remembered GPU options (tests); backend flags are not touched."""
    global _gpu
    old = _gpu
    _gpu = replace(old, **changes)
    try:
        yield _gpu
    finally:
        _gpu = old


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """A freshly built network in the configured memory format (channels_last when gpu.channels_last)."""
    if _gpu.channels_last:
        return model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on `device` when gpu.bf16 is on (first-order paths only), else a no-op context."""
    if _gpu.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


_generators: dict[torch.device, torch.Generator] = {}


def reseeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """This process's one generator on `device`, reseeded: for a draw made right away (a CUDA generator
    is created once per device instead of once per call). Do not keep it across calls."""
    g = _generators.get(device)
    if g is None:
        g = _generators[device] = torch.Generator(device=device)
    return g.manual_seed(int(seed))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`<short sha>[+dirty]` of the checkout this code runs from, or `unknown` outside git. Changes
    under results/ are outputs, not code: regenerating a committed table does not make it dirty."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except Exception:
        return "unknown"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass
class StageTimer:
    """Wall seconds per named stage (summed when a stage name repeats)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def configure_runtime(cfg, device: torch.device) -> None:
    """Apply a run config's `memory:` and `gpu:` blocks (once per run: pipeline session, bench harness).
    `cfg`: the typed top level (ResolvedRun.top, whose blocks are MemoryConfig/GPUConfig) or a mapping."""
    from omegaconf import OmegaConf


    def block(name: str, schema: type) -> Any:
        node = cfg.get(name) if hasattr(cfg, "get") else getattr(cfg, name, None)
        if isinstance(node, schema) or node is None:
            return node or schema()
        return schema(**(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)))

    configure_memory(block("memory", MemoryConfig))
    ignored = configure_gpu(block("gpu", GPUConfig), device)
    if ignored:
        log.info(f"{', '.join('gpu.' + k for k in ignored)} ignored on {device.type}: cuDNN autotuning and TF32 exist on CUDA only")
