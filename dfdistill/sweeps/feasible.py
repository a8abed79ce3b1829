"""Which jobs of a sweep cannot run at this data size, known from the resolved config alone.

Why: a table's grid is the paper's (IPC 50 cells), while `PROFILE=smoke` (or the embedded digits
data) keeps only a few real images per class. A run that draws `ipc` real images per class (real
initialisation, a coreset, the random-real baseline) from fewer fails after its data loads; a sweep
skips such a job before launch instead, names it once, and the table lists it as skipped.

The count is an upper bound read from the config (`dataset.max_train_per_class` after the profile,
then the static pruning's per-class rule); with no cap the dataset's own size is unknown here and
the job is assumed to fit (the run itself still checks, dfdistill/run/preflight.py).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from omegaconf import DictConfig
from dfdistill.config.resolve import method_class
from dfdistill.methods.coreset import Coreset
from dfdistill.pruning.static import kept_count


def needs_real_rows(cfg: DictConfig) -> bool:
    """The run draws `ipc` real images of every class (mirrors pipeline.prune and init_synthetic)."""

    if cfg.eval.get("compare_random") and cfg.stage in ("all", "eval"):
        return True
    if cfg.method.get("name") == "whole":
        return False
    if issubclass(method_class(cfg), Coreset):
        return True
    return cfg.method.get("init") in ("real", "mix")


def rows_before_pruning(cfg: DictConfig) -> Optional[int]:
    cap = cfg.dataset.get("max_train_per_class")
    return None if cap is None else int(cap)


def rows_after_pruning(cfg: DictConfig, n: int) -> int:
    """Real rows per class the static pruning keeps of `n` (pruning/static.py's per-class rule)."""

    p = cfg.pruning
    if not p.get("_target_"):
        return n
    if p.get("stratum"):
        return n // int(p.get("n_strata") or 1)
    return kept_count(n, float(p.get("ratio") or 0.0))


def why_not(cfg: DictConfig) -> Optional[str]:
    """Why this resolved job cannot run at its data size, or None."""
    n = rows_before_pruning(cfg)
    if n is None or not needs_real_rows(cfg):
        return None
    kept = rows_after_pruning(cfg, n)
    if kept >= int(cfg.ipc):
        return None
    pruned = f" ({kept} after pruning)" if kept != n else ""
    return f"ipc={cfg.ipc} needs {cfg.ipc} real images per class, the split has {n}{pruned}"


def feasible_ratios(cfg: DictConfig, ladder: Iterable[float]) -> tuple[float, ...]:
    """The class-balanced pruning ratios of `ladder` that leave this job `ipc` rows per class."""

    ladder = tuple(ladder)
    n = rows_before_pruning(cfg)
    if n is None or not needs_real_rows(cfg):
        return ladder
    return tuple(r for r in ladder if kept_count(n, r) >= int(cfg.ipc))


def skipped_line(names: list[Any]) -> str:
    return (f"[run_table] skipped before launch, {len(names)} job(s) that cannot run at this data size: "
            + "; ".join(map(str, names)))


def short_name(job_dir: str) -> str:
    """A job dir name without the parts every job of the sweep shares (+exp=..., profile=...)."""
    return ",".join(p for p in job_dir.split(",") if not p.startswith(("+exp=", "profile=")))
