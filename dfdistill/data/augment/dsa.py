"""DC/DSA's differentiable siamese augmentation (one family per call, or all in order).
"""

from __future__ import annotations

from typing import Optional
import torch
from torch import Tensor

from dfdistill.data.augment.class_draw import _StrategyAugment
from dfdistill.data.augment.sampler import DSAParams, _choice
from dfdistill.data.augment.transforms import STANDARD_STRATEGY


class DSA(_StrategyAugment):
    """DC/DSA augmentation. Mode 'S': one family per call; mode 'M': every family in order."""

    def __init__(
        self, strategy: str = STANDARD_STRATEGY, params: Optional[DSAParams] = None, mode: str = "S"
    ) -> None:
        if mode not in ("S", "M"):
            raise ValueError(f"DSA mode must be 'S' or 'M', got {mode!r}")
        super().__init__(strategy, params)
        self.mode = mode

    def call_families(self, gen: torch.Generator) -> list[str]:
        return [_choice(self.families, gen)] if self.mode == "S" else self.families

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        if self.mode == "M" or not self.families:
            return [tuple(self.families)], torch.zeros(k, dtype=torch.long)
        return [(f,) for f in self.families], torch.randint(0, len(self.families), (k,), generator=gen)

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, mode={self.mode!r}, params={self.params})"
