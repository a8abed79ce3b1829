"""BiLP §4.1 empirical-loss criterion: per-sample CE averaged over T fresh training trials.

§5.4 ("Computation of Empirical Loss Criterion"): "the loss values in very early classification
epochs are also informative enough" and "the number of trials ... has little influence", so the
epochs at which the loss is read (`epochs`, 1-based; 'converged' = after the last training epoch)
and the number of trials are config values. Scores are cached keyed by everything that produced
them and stored with the `source_index` order they index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from dfdistill.core.artifacts import ArtifactCache, config_key
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError
from dfdistill.core.registry import SCORERS
from dfdistill.engine.training import Schedule, train_together


@dataclass
class ScoringConfig:
    """How per-sample scores are produced (all of it but the speed knob `chunk` is the cache key)."""

    criterion: str = "loss"  # a registered scorer (dfdistill.scoring.criteria): loss | grad_norm | hardness
    trials: int = 1  # T fresh networks (BiLP Fig. 3: 1..50, "little influence")
    # read-out epochs (1-based); -1 (or 'converged') = after the last of `train_epochs`;
    # 'a-b' = every epoch a..b (BiLP Fig. 3: "the mean loss value for the first 1, 5, 10, and 100 epochs")
    epochs: list[Any] = field(default_factory=lambda: [1, 2])
    train_epochs: int = 2  # epochs each trial trains ('converged' reads after the last one)
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 256
    alpha: float = 0.5  # hardness = alpha*loss + (1-alpha)*grad_norm
    chunk: Optional[int] = None  # vmap rows per call (values unchanged); None = gradnorm.default_chunk

    def __post_init__(self) -> None:
        if self.criterion not in SCORERS:
            raise ConfigError(f"pruning.criterion must be one of {SCORERS.names()}, got {self.criterion!r}")
        if self.trials < 1 or self.train_epochs < 1:
            raise ConfigError("scoring trials and train_epochs must be >= 1")
        for e in self.epochs:
            if not (e in ("converged", -1) or (isinstance(e, int) and e >= 1) or epoch_range(e)):
                raise ConfigError(f"pruning.epochs entries must be ints >= 1, -1/'converged' or a range 'a-b' "
                                  f"(1 <= a <= b), got {e!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"scoring alpha must be in [0, 1], got {self.alpha}")

    def readout_epochs(self) -> list[int]:
        """1-based epochs to read scores at (training runs to the largest of them)."""
        eps: set[int] = set()
        for e in self.epochs:
            span = epoch_range(e)
            eps |= set(range(span[0], span[1] + 1)) if span else {self.train_epochs if e in ("converged", -1) else int(e)}
        return sorted(eps) or [self.train_epochs]


def epoch_range(e: Any) -> Optional[tuple[int, int]]:
    """(a, b) for an 'a-b' epochs entry (compact, so sweep dir names stay short), else None."""
    parts = str(e).split("-") if isinstance(e, str) else []
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and 1 <= int(parts[0]) <= int(parts[1]):
        return int(parts[0]), int(parts[1])
    return None


def compute_scores(real: RealData, factory: Callable[[int], nn.Module], scfg: ScoringConfig, seed: int) -> Tensor:
    """(N,) score per row of `real`: mean over trials and read-out epochs."""
    score_fn = SCORERS.get(scfg.criterion).obj
    reads = scfg.readout_epochs()
    last = max(reads)
    seeds = [seed * 1000 + t for t in range(scfg.trials)]
    acc: list[list[Tensor]] = [[] for _ in seeds]  # per trial, its read-outs in epoch order

    def on_epoch_end(t: int, ep: int, m: nn.Module) -> None:
        if ep + 1 in reads:
            acc[t].append(score_fn(m, real, scfg))
            m.train()

    # trial t: factory(seed * 1000 + t) and a generator of that seed; together where ensembles are on
    train_together([factory(s) for s in seeds], real.images, real.labels, last,
                   Schedule(lr=scfg.lr, momentum=scfg.momentum), [torch.Generator().manual_seed(s) for s in seeds],
                   scfg.batch_size, on_epoch_end=on_epoch_end)
    total = torch.zeros(len(real), device=real.device)
    for s in (s for trial in acc for s in trial):
        total += s
    return total / max(sum(len(a) for a in acc), 1)


def cached_scores(real: RealData, factory: Callable[[int], nn.Module], scfg: ScoringConfig, seed: int,
                  cache: ArtifactCache, dataset: str, backbone: Any) -> dict[str, Tensor]:
    """{'scores', 'source_index'} from the cache, computed on a miss. Keyed by dataset, the exact
    source rows, backbone, scoring config and seed, so a changed setting never reuses stale scores."""
    key = config_key({"dataset": dataset, "source_index": real.source_index, "backbone": backbone,
                      "scoring": {k: v for k, v in asdict(scfg).items() if k != "chunk"}, "seed": seed})

    def create() -> dict[str, Tensor]:
        s = compute_scores(real, factory, scfg, seed)
        return {"scores": s.cpu(), "source_index": real.source_index.cpu()}

    out = cache.get_or_create("scores", key, create)
    if not torch.equal(out["source_index"], real.source_index.cpu()):  # defensive: order must match
        raise ConfigError("cached scores index a different sample order; delete the scores cache entry")
    return out
