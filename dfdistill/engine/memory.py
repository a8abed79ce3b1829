"""How many classes (or rows) one network pass may take: from a memory budget or an explicit chunk.

Why: DM and gradient matching push every class's real batch through a network. In one call that is
~107 GB of first-conv output at Tiny-ImageNet (200 classes x 256) and over 500 GB at ImageNet-1K.
Their objectives are sums over classes, so passes over class chunks -- each chunk's backward right
after its forward, gradients accumulating in the images -- give the same update as one pass. The
per-pass budget is a share of the free CUDA memory (`device_memory_fraction`) or a fixed number of
MB on a CPU (`cpu_budget_mb`); `class_chunk` fixes the number of classes per pass instead. The
setting is process-wide, like torch's backend flags: the pipeline sets it once per run
(`configure_memory`), tests use `memory_settings(...)`.

The estimate: one probe forward (2 rows, eval mode, no grad) sums the outputs of every leaf module:
the activation bytes of a row. A pass of `kind` keeps about PASS_FACTOR[kind] times that per row
(autograd saves inputs and builds their gradients; a double backward keeps both graphs), plus, for
per-class or per-sample gradients, one parameter-sized gradient per class or row.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from dfdistill.core.errors import ConfigError


@dataclass
class MemoryConfig:
    """The `memory:` block of the run config (not part of a run's identity: results do not depend on it)."""

    class_chunk: Optional[int] = None  # classes per real-side pass; null: as many as the budget allows
    device_memory_fraction: float = 0.5  # CUDA: share of the free device memory one pass may plan for
    cpu_budget_mb: float = 512.0  # CPU: memory one pass may plan for (smaller passes measured no slower on a CPU)

    def __post_init__(self) -> None:
        if self.class_chunk is not None and self.class_chunk < 1:
            raise ConfigError(f"memory.class_chunk must be >= 1 or null, got {self.class_chunk}")
        if not 0.0 < self.device_memory_fraction <= 1.0:
            raise ConfigError(f"memory.device_memory_fraction must be in (0, 1], got {self.device_memory_fraction}")
        if self.cpu_budget_mb <= 0:
            raise ConfigError(f"memory.cpu_budget_mb must be > 0, got {self.cpu_budget_mb}")


# Bytes kept per row of a pass, in units of the row's forward activations:
# forward = no-grad forward (real embeddings, test pass); backward = forward + backward (saved
# activations and their gradients); double = a create_graph gradient that is itself differentiated.
PASS_FACTOR = {"forward": 1.0, "backward": 3.0, "double": 6.0}

_settings = MemoryConfig()
_activation_cache: dict[tuple, int] = {}


def configure_memory(cfg: Optional[MemoryConfig]) -> MemoryConfig:
    """Set the process-wide memory settings (None: defaults); returns them."""
    global _settings
    _settings = cfg if cfg is not None else MemoryConfig()
    return _settings


def memory_config() -> MemoryConfig:
    return _settings


@contextmanager
def memory_settings(**changes) -> Iterator[MemoryConfig]:
    """Temporarily change the settings (tests, benchmarks)."""
    global _settings
    old = _settings
    _settings = replace(old, **changes)
    try:
        yield _settings
    finally:
        _settings = old


def budget_bytes(device: torch.device) -> int:
    """What one pass may plan for: a share of the free CUDA memory now, or the fixed CPU budget.

    Free CUDA memory counts the blocks torch's caching allocator holds but does not use (the last
    chunk's), so the budget does not shrink from one step to the next."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(_settings.device_memory_fraction * (free + cached))
    return int(_settings.cpu_budget_mb * 2**20)


def _param_bytes(net: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def activation_bytes_per_row(net: nn.Module, row_shape: Sequence[int]) -> int:
    """Bytes of every leaf module's output for one input row (probe forward, cached per architecture)."""
    p = next(net.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None else torch.float32
    key = (type(net).__qualname__, tuple((n, tuple(v.shape)) for n, v in net.named_parameters()),
           tuple(row_shape), device.type, dtype)
    if key in _activation_cache:
        return _activation_cache[key]
    total = [0]

    def count(_m, _inp, out) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was = {m: m.training for m in net.modules()}
    try:
        net.eval()  # a 2-row train-mode BatchNorm1d would still work, but eval never touches running stats
        with torch.no_grad():
            net(torch.zeros((2, *row_shape), device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        for m, t in was.items():
            m.training = t
    _activation_cache[key] = max(total[0] // 2, 1)
    return _activation_cache[key]


def rows_per_pass(net: nn.Module, row_shape: Sequence[int], kind: str = "forward",
                  per_row_grads: bool = False, device: Optional[torch.device] = None) -> int:
    """Rows one pass of `kind` may take under the budget (>= 1). per_row_grads: each row also
    materialises a parameter-sized gradient (vmapped per-sample gradients)."""
    device = device or next(net.parameters()).device
    per_row = PASS_FACTOR[kind] * activation_bytes_per_row(net, row_shape)
    if per_row_grads:
        per_row += _param_bytes(net)
    return max(1, int(budget_bytes(device) // max(per_row, 1)))


def classes_per_pass(net: nn.Module, row_shape: Sequence[int], rows_per_class: int, num_classes: int,
                     kind: str = "backward", grads_per_class: int = 0, device: Optional[torch.device] = None) -> int:
    """Classes one real-side pass takes: `memory.class_chunk` when set, else what the budget allows
    (rows_per_class rows of `kind` plus `grads_per_class` parameter-sized gradients per class)."""
    if _settings.class_chunk is not None:
        return max(1, min(_settings.class_chunk, num_classes))
    device = device or next(net.parameters()).device
    per_class = rows_per_class * PASS_FACTOR[kind] * activation_bytes_per_row(net, row_shape)
    per_class += grads_per_class * _param_bytes(net)
    k = max(1, min(num_classes, int(budget_bytes(device) // max(per_class, 1))))
    return -(-num_classes // -(-num_classes // k))  # as many passes, evened out (10 classes at 9/pass: 5 + 5)


def class_ranges(num_classes: int, chunk: int) -> list[tuple[int, int]]:
    """[lo, hi) class ranges of at most `chunk` classes covering 0..num_classes-1."""
    chunk = max(1, chunk)
    return [(lo, min(lo + chunk, num_classes)) for lo in range(0, num_classes, chunk)]
