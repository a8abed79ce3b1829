"""Compiled first-order paths: `torch.compile` for work without double backward, for fresh networks.

Why: on a 2-core CPU a width-32 ConvNet spends more time in its memory-bound layers (norm,
activation, pooling and their backwards) than in the convolutions; inductor fuses them and makes a
forward 2.8x and a forward+backward 2.3x faster (docs/performance.md). The first-order work of a run
is most of it: evaluation training and test passes, DC's inner loop on the synthetic set, DM's
embeddings, the real-side gradients of gradient matching, expert and scoring training.

What must not happen is a recompile per fresh network (DC/DM draw one every iteration). So no
network is compiled itself: per architecture one *template* copy is traced, and the parameters and
buffers of whichever network is running are passed in as inputs (`torch.func.functional_call`).
Double backward (the synthetic side of gradient matching, MTT's unrolled student) is not supported
by AOTAutograd and stays eager; so do BatchNorm networks in training mode (running statistics are
updated in place).

Modes (top-level `compile`, set once per process by `configure`):
* `off`: eager everywhere (results equal `on` up to float rounding, not bit for bit).
* `on`: every path compiles at its first call.
* `auto` (default): compiled on CUDA, eager on CPU -- a function of the config and the device alone.
  Whether a path compiles changes its rounding and so the whole training trajectory; a rule that
  looked at the clock, the machine's load or what the compile cache holds (an earlier version
  compiled a path after 8 CPU seconds) made the same command give different numbers. On this
  project's 2-core CPU `off` also measured faster for the runs people make there (a cold compile is
  ~20 s per graph; docs/reproducibility.md), so `auto` never compiles on CPU.
On CUDA, inductor's own benchmarking choices (pointwise/reduction autotuning by timing) are turned
off (`torch._inductor.config.deterministic`), so the compiled kernels do not depend on load either.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dfdistill.core.errors import ConfigError
from dfdistill.engine.losses import weighted_ce

log = logging.getLogger("dfdistill")

MODES = ("auto", "on", "off")


@dataclass
class Settings:
    mode: str = "off"
    backend: Union[str, Callable] = "inductor"


_settings = Settings()


def configure(mode: Any = "auto", backend: Union[str, Callable, None] = None) -> Settings:
    """Set the process-wide mode (`compile` in the config); returns the previous settings."""
    m = {True: "on", False: "off"}.get(mode, str(mode).lower())
    m = {"true": "on", "false": "off"}.get(m, m)
    if m not in MODES:
        raise ConfigError(f"compile must be auto|on|off, got {mode!r}")
    global _settings
    old = _settings
    _settings = Settings(m, old.backend if backend is None else backend)
    if m != "off":
        _deterministic_inductor()
    return old


def compiles_on(device: Union[str, torch.device]) -> bool:
    """Whether first-order paths run compiled on `device` under the current mode (what a run records)."""
    return _settings.mode == "on" or (_settings.mode == "auto" and torch.device(device).type == "cuda")


def _deterministic_inductor() -> None:
    """No kernel choice by timing (autotuning benchmarks depend on load): same graph, same kernels."""
    try:
        import torch._inductor.config as ic

        if hasattr(ic, "deterministic"):
            ic.deterministic = True
    except Exception:  # no inductor: nothing to pin
        pass


def reset() -> None:
    """Forget every compiled graph (with torch._dynamo.reset(); tests)."""
    torch._dynamo.reset()
    for path in PATHS:
        path.failed.clear()
        path._compiled = None


def settings() -> Settings:
    return _settings


def restore(s: Settings) -> None:
    global _settings
    _settings = s


# ---------------------------------------------------------------------------------------------- #
# templates: one traced copy per architecture, run at any network's parameters
# ---------------------------------------------------------------------------------------------- #
_TEMPLATES: dict[str, nn.Module] = {}


def _arch_key(model: nn.Module) -> str:
    """What fixes the traced graph: module structure (repr), input geometry, device and dtype."""
    p = next(model.parameters(), None)
    where = (p.device, p.dtype) if p is not None else ("cpu", None)
    return (f"{type(model).__module__}.{type(model).__qualname__}|{getattr(model, 'channels', None)}|"
            f"{getattr(model, 'image_size', None)}|{where}|{model!r}")


def template(model: nn.Module) -> nn.Module:
    """The architecture's template, in `model`'s train/eval state (per submodule)."""
    key = model.__dict__.get("_dfdistill_arch")
    if key is None:
        key = model.__dict__["_dfdistill_arch"] = _arch_key(model)
    t = _TEMPLATES.get(key)
    if t is None:
        t = copy.deepcopy(model)
        t.requires_grad_(False)  # its own values are never read: every call passes a network's state
        t.__dict__["_dfdistill_arch"] = key
        _TEMPLATES[key] = t
    for mt, m in zip(t.modules(), model.modules()):
        mt.training = m.training
    return t


def state(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name: what a template call runs the network at."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class _Embedder(nn.Module):
    """`net.embed` as a module's forward (functional_call calls forward); state keys get 'net.'."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embed(x)


# ---------------------------------------------------------------------------------------------- #
# paths: eager until compiled (mode), compiled once per input signature
# ---------------------------------------------------------------------------------------------- #
def _raise_recompile_limit(n: int = 64) -> None:
    """Each path is one code object for every architecture and input shape it sees (eval, inner loop,
    experts, ...): allow that many graphs before dynamo would fall back to eager."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < n:
            setattr(cfg, name, n)
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4 * n)


PATHS: list["Path"] = []


class Path:
    """A function of (template, state, *tensors) run eagerly or compiled, per `settings()`."""

    def __init__(self, fn: Callable[..., Tensor], name: str, devices: tuple[str, ...] = ("cpu", "cuda")) -> None:
        self.fn, self.name, self.devices = fn, name, devices  # compiled only for inputs on these device types
        PATHS.append(self)
        self._compiled: Optional[Callable] = None
        self._backend: Any = None
        self.failed: set[tuple] = set()

    def signature(self, tmpl: nn.Module, st: dict[str, Tensor], args: tuple) -> tuple:
        """What selects one graph: the architecture (its key, stable across processes), grad mode,
        whether the parameters are trained, and the inputs' shapes/dtypes/requires_grad."""
        return (tmpl.__dict__["_dfdistill_arch"], torch.is_grad_enabled(), any(v.requires_grad for v in st.values()),
                tuple((tuple(a.shape), str(a.dtype), a.requires_grad) if isinstance(a, Tensor) else a for a in args))

    def compiled(self) -> Callable:
        s = _settings
        if self._compiled is None or self._backend is not s.backend:
            _raise_recompile_limit()
            self._compiled = torch.compile(self.fn, backend=s.backend, dynamic=False)
            self._backend = s.backend
        return self._compiled

    def __call__(self, tmpl: nn.Module, st: dict[str, Tensor], *args: Any) -> Tensor:
        device = args[0].device
        if device.type not in self.devices or not compiles_on(device):
            return self.fn(tmpl, st, *args)
        key = self.signature(tmpl, st, args)
        if key in self.failed:
            return self.fn(tmpl, st, *args)
        try:
            return self.compiled()(tmpl, st, *args)
        except Exception as e:  # a backend that cannot take this graph: this signature runs eagerly
            self.failed.add(key)
            log.warning(f"compile: {self.name} runs eagerly for this input ({type(e).__name__}: {str(e)[:200]})")
            return self.fn(tmpl, st, *args)


def _logits(t: nn.Module, st: dict[str, Tensor], x: Tensor) -> Tensor:
    return functional_call(t, st, (x,))


def _ce(t: nn.Module, st: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    return weighted_ce(functional_call(t, st, (x,)), y, None)


def _weighted_ce(t: nn.Module, st: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return weighted_ce(functional_call(t, st, (x,)), y, w)


def _mixed_ce(t: nn.Module, st: dict[str, Tensor], x: Tensor, ya: Tensor, yb: Tensor, lam: Tensor) -> Tensor:
    out = functional_call(t, st, (x,))
    return lam * weighted_ce(out, ya, None) + (1 - lam) * weighted_ce(out, yb, None)


LOGITS, CE, WEIGHTED_CE, MIXED_CE, EMBED = (Path(_logits, "logits"), Path(_ce, "cross-entropy"),
                                            Path(_weighted_ce, "weighted cross-entropy"),
                                            Path(_mixed_ce, "CutMix cross-entropy"), Path(_logits, "embedding"))


def _eager(model: nn.Module) -> bool:
    """Eager where compiling is not chosen or not safe: the mode says eager for the model's device, or
    BatchNorm in training mode."""
    if _settings.mode == "off":
        return True
    p = next(model.parameters(), None)
    return not compiles_on(p.device if p is not None else "cpu") or (model.training and _has_batchnorm(model))


# ---------------------------------------------------------------------------------------------- #
# what the training loops, evaluation and methods call
# ---------------------------------------------------------------------------------------------- #
def logits(model: nn.Module, x: Tensor) -> Tensor:
    """model(x)."""
    if _eager(model):
        return model(x)
    return LOGITS(template(model), state(model), x)


def ce_loss(model: nn.Module, x: Tensor, y: Tensor, w: Optional[Tensor] = None) -> Tensor:
    """weighted_ce(model(x), y, w): gradients reach the model's parameters (and x) as usual."""
    if _eager(model):
        return weighted_ce(model(x), y, w)
    if w is None:
        return CE(template(model), state(model), x, y)
    return WEIGHTED_CE(template(model), state(model), x, y, w)


def mixed_ce_loss(model: nn.Module, x: Tensor, ya: Tensor, yb: Tensor, lam: float) -> Tensor:
    """CutMix's loss lam * CE(model(x), ya) + (1 - lam) * CE(model(x), yb)."""
    if _eager(model):
        out = model(x)
        return lam * weighted_ce(out, ya, None) + (1 - lam) * weighted_ce(out, yb, None)
    return MIXED_CE(template(model), state(model), x, ya, yb, torch.tensor(lam, dtype=x.dtype, device=x.device))


def embed(model: nn.Module, x: Tensor) -> Tensor:
    """model.embed(x) (DM's features)."""
    if _eager(model):
        return model.embed(x)
    t = template(model)
    emb = t.__dict__.get("_dfdistill_embedder")
    if emb is None:
        emb = t.__dict__["_dfdistill_embedder"] = _Embedder(t)
        emb.__dict__["_dfdistill_arch"] = "embed|" + t.__dict__["_dfdistill_arch"]
    return EMBED(emb, {f"net.{k}": v for k, v in state(model).items()}, x)
