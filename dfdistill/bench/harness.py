"""Timing harness: W warm-up + M measured distillation iterations through the real pipeline pieces.

Why a harness and not `run.py`: per-iteration speed must be measured without evaluation, with the
exact same data, network factory, augmentation and method config the pipeline builds, and with an
honesty check (fast and baseline give the same synthetic-image gradient) before any timing.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.bench.baseline import baseline_class
from dfdistill.config.resolve import resolve_run
from dfdistill.methods.base import DistillContext, Distiller, build_context
from dfdistill.methods.dc import GradientMatching
from dfdistill.data.datasets import load_dataset
from dfdistill.models.factory import make_model_factory
from dfdistill.engine.runtime import configure_runtime, resolve_device, seed_everything
from dfdistill.engine.training import configure_speed
from dfdistill.pruning import apply_static_pruning, build_adaptive

# max|g_fast - g_base| <= GRAD_RTOL * max|g_base|. float32 with a different summation order: DC's
# per-row cosine distance amplifies rounding on noise-initialised images (8.8e-4 seen on digits
# smoke); in float64 the two agree to 1e-9 (tests/unit/bench/test_bench.py).
GRAD_RTOL = 5e-3


@dataclass
class Setup:
    """Everything the pipeline builds before the loop, shared by the fast and baseline distillers."""

    cfg: DictConfig
    ctx: DistillContext
    method_cls: type
    mcfg: Any


@dataclass
class Timing:
    mode: str
    seconds: list[float] = field(default_factory=list)
    real_per_iter: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mean(self) -> float:
        """What a lazy selector costs on average (its median hides the one slow call in k)."""
        return statistics.fmean(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.real_per_iter / self.median


def build_setup(cfg: DictConfig, out_dir: Path) -> Setup:
    """resolve -> load_dataset -> make_model_factory -> static pruning -> adaptive -> context."""

    r = resolve_run(cfg)
    device = resolve_device(r.top.device)
    configure_runtime(r.top, device)
    configure_speed(r.top)
    seed_everything(r.seed)
    cache = ArtifactCache(r.top.cache_dir)
    train, _ = load_dataset(r.dataset, device=device, cache_dir=cache.root)
    factory = make_model_factory(r.cfg.backbone, train, device)
    train, _ = apply_static_pruning(r.pruning, train, factory, cache, r.seed, r.inputs)
    ctx = build_context(train, factory, ipc=r.ipc, seed=r.seed, device=device, cache=cache, out_dir=out_dir,
                        augment=True, dsa_strategy=r.dataset.dsa_strategy, progress=False,
                        adaptive=build_adaptive(r.pruning, train), describe=r.inputs)
    return Setup(r.cfg, ctx, r.method_cls, r.method)


def make_distiller(setup: Setup, baseline: bool, **cfg_changes: Any) -> Distiller:
    cls = setup.method_cls
    if baseline:
        cls = baseline_class(cls)
        if cls is None:
            raise ValueError(f"no baseline formulation for {setup.method_cls.__name__}")
    mcfg = dataclasses.replace(setup.mcfg, **cfg_changes) if cfg_changes else setup.mcfg
    d = cls(mcfg, setup.ctx)
    d.prepare()
    d.init_state()
    return d


def first_image_gradient(setup: Setup, baseline: bool) -> torch.Tensor:
    """Synthetic-image gradient of iteration 0's first matching step (DC/DSA: outer_loop=1)."""
    changes = {"outer_loop": 1} if issubclass(setup.method_cls, GradientMatching) else {}
    d = make_distiller(setup, baseline, **changes)
    d.step(0)
    return d.images.grad.detach().clone()


def check_same_gradient(setup: Setup, rtol: float = GRAD_RTOL) -> float:
    """Relative max deviation of the fast vs baseline image gradient; raises when above rtol."""
    g_fast = first_image_gradient(setup, baseline=False)
    g_base = first_image_gradient(setup, baseline=True)
    rel = float((g_fast - g_base).abs().max() / g_base.abs().max().clamp_min(1e-12))
    if not rel <= rtol:
        raise AssertionError(f"fast and baseline image gradients differ: rel max diff {rel:.3g} > {rtol:g}")
    return rel


def real_images_per_iteration(d: Distiller) -> int:
    counts = d.ctx.real.class_counts()
    per_step = sum(min(d.cfg.batch_real, n) for n in counts)
    if isinstance(d, GradientMatching):
        return per_step * d.loops()[0]
    return per_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_modes(setup: Setup, modes: list[str], warmup: int, measure: int) -> dict[str, Timing]:
    """Interleave the modes iteration by iteration so background load hits each equally."""
    dev = setup.ctx.device
    ds = {m: make_distiller(setup, baseline=(m == "baseline")) for m in modes}
    out = {m: Timing(m, real_per_iter=real_images_per_iteration(ds[m])) for m in modes}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for it in range(warmup + measure):
        for m in modes:
            _sync(dev)
            t0 = time.perf_counter()
            loss = ds[m].step(it)["loss"]
            float(loss)  # the pipeline reads the loss each iteration too
            _sync(dev)
            if it >= warmup:
                out[m].seconds.append(time.perf_counter() - t0)
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except Exception:
        return "unknown"


HEADER = ("| date | commit | device | dataset | backbone (width) | method | pruning | ipc | settings | mode | W/M "
          "| s/iter median | s/iter min–max (mean) | real img/s | peak MB | speed-up vs baseline | grad check (rel) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()} threads"


def format_row(setup: Setup, t: Timing, warmup: int, settings: str, speedup: Optional[float],
               grad_rel: Optional[float], peak_mb: float) -> str:
    c = setup.cfg
    lo, hi = t.spread
    width = c.backbone.get("width", "-")
    cells = [time.strftime("%Y-%m-%d %H:%M"), commit(), device_label(setup.ctx.device), c.dataset.name,
             f"{c.backbone.name} ({width})", c.method.name, c.pruning.name, str(c.ipc), f"`{settings}`", t.mode,
             f"{warmup}/{len(t.seconds)}", f"{t.median:.3f}", f"{lo:.3f}–{hi:.3f} ({t.mean:.3f})", f"{t.images_per_s:.0f}",
             f"{peak_mb:.0f}", "-" if speedup is None else f"{speedup:.2f}×",
             "-" if grad_rel is None else f"{grad_rel:.1e}"]
    return "| " + " | ".join(cells) + " |\n"


def append_rows(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as f:
        if new:
            f.write("# Per-iteration distillation speed (scripts/bench.py)\n\n" + HEADER)
        f.writelines(rows)


def run_bench(cfg: DictConfig, out_dir: Path, results_dir: Path, warmup: int, measure: int, baseline: bool,
              settings: str) -> tuple[Path, list[str], dict[str, Timing]]:
    """Gradient check (with --baseline), interleaved timing, one markdown row per mode."""
    setup = build_setup(cfg, out_dir)
    grad_rel = check_same_gradient(setup) if baseline else None
    modes = ["baseline", "fast"] if baseline else ["fast"]
    timings = time_modes(setup, modes, warmup, measure)
    peak = peak_memory_mb(setup.ctx.device)
    dev = setup.ctx.device
    path = results_dir / f"bench_{'cuda' if dev.type == 'cuda' else 'cpu'}.md"
    rows = []
    for m in modes:
        speed = timings["baseline"].median / timings[m].median if baseline else None
        rows.append(format_row(setup, timings[m], warmup, settings, speed, grad_rel, peak))
    append_rows(path, rows)
    return path, rows, timings
