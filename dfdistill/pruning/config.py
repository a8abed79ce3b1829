"""The `pruning` group's one schema: static selection (ratio, keep, strata), the scores it ranks by
(inherited from ScoringConfig, so the scoring keys are declared once) and the in-loop selector.

Hydra checks it at compose time (conf/pruning/*.yaml extend `base_pruning`); resolve instantiates it
once so the range checks below run before any data is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from dfdistill.core.errors import ConfigError
from dfdistill.pruning.ite import ITEConfig
from dfdistill.core.registry import pruner_class
from dfdistill.scoring.empirical import ScoringConfig


@dataclass
class PruningConfig(ScoringConfig):
    name: str = "none"
    _target_: Optional[str] = None  # the static pruner (RandomPruning | ScorePruning) or null
    ratio: float = 0.0  # fraction dropped per class (BiLP's drop_ratio)
    keep: str = "low"  # low: keep low scores (BiLP) | high: keep high scores (ablation)
    stratum: Optional[int] = None  # BiLP Fig. 3: keep only stratum k (1 = largest scores) of n_strata
    n_strata: int = 10
    seed_offset: int = 0  # random pruning draws with seed + seed_offset (removal trials)
    recipe: str = "paper"  # paper: the paper's scoring setting for the run's dataset (dfdistill/recipes) | none
    adaptive: Optional[ITEConfig] = None  # BiLP's in-loop ITE selector (pruning=ite|bilp) or null

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"pruning.ratio must be in [0, 1), got {self.ratio}")
        if self.keep not in ("low", "high"):
            raise ConfigError(f"pruning.keep must be low|high, got {self.keep!r}")
        if self.stratum is not None and not 1 <= self.stratum <= self.n_strata:
            raise ConfigError(f"pruning.stratum must be in [1, {self.n_strata}] or null, got {self.stratum}")
        if self.recipe not in ("paper", "none"):
            raise ConfigError(f"pruning.recipe must be paper|none, got {self.recipe!r}")
        if self._target_ is not None:
            pruner_class(self._target_, adaptive=False)  # the YAML's class path names a registered pruner
        if self._target_ is None and (self.ratio or self.stratum):
            raise ConfigError(f"pruning={self.name} keeps every sample, so pruning.ratio={self.ratio} would not "
                              "apply; use pruning=random or pruning=loss to drop samples")

    def scoring(self) -> ScoringConfig:
        """The scoring part alone (it alone keys the scores cache)."""
        names = {f.name for f in fields(ScoringConfig)}
        return ScoringConfig(**{k: v for k, v in asdict(self).items() if k in names})
