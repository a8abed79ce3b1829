"""IDC's DiffAug: flip, color, one geometric op drawn per call, cutout.
"""

from __future__ import annotations

from typing import Optional
import torch
from torch import Tensor

from dfdistill.data.augment.class_draw import _StrategyAugment
from dfdistill.data.augment.sampler import DSAParams, _choice
from dfdistill.data.augment.transforms import STANDARD_STRATEGY


_IDC_GEOMETRIC: tuple[str, ...] = ("crop", "scale", "rotate")


class IDCAugment(_StrategyAugment):
    """IDC's DiffAug: flip -> color -> one of {crop, scale, rotate} -> cutout.

    flip/color/cutout always run when listed; one geometric op present in the strategy is drawn
    per call. siamese=True is IDC's batch=True (one parameter per call), otherwise per-sample.
    """

    def __init__(self, strategy: str = STANDARD_STRATEGY, params: Optional[DSAParams] = None) -> None:
        super().__init__(strategy, params)
        self._geometric = [f for f in _IDC_GEOMETRIC if f in self.families]

    def call_families(self, gen: torch.Generator) -> list[str]:
        families = [f for f in ("flip", "color") if f in self.families]
        if self._geometric:
            families.append(_choice(self._geometric, gen))
        if "cutout" in self.families:
            families.append("cutout")
        return families

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        head = [f for f in ("flip", "color") if f in self.families]
        tail = ["cutout"] if "cutout" in self.families else []
        if not self._geometric:
            return [tuple(head + tail)], torch.zeros(k, dtype=torch.long)
        return ([tuple(head + [g] + tail) for g in self._geometric],
                torch.randint(0, len(self._geometric), (k,), generator=gen))

    def __repr__(self) -> str:
        return f"IDCAugment(strategy={self.strategy!r}, params={self.params})"
