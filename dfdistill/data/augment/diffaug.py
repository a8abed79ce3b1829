"""IDC's DiffAug: flip, color, one geometric op drawn per call, cutout.
"""

from __future__ import annotations

from typing import Optional
import torch
from torch import Tensor

from dfdistill.data.augment.class_draw import _ClassAugment
from dfdistill.data.augment.sampler import DSAParams, _choice, _generators, sample_params
from dfdistill.data.augment.transforms import FAMILY_OPS, STANDARD_STRATEGY, _check_input, apply_ops, parse_strategy


_IDC_GEOMETRIC: tuple[str, ...] = ("crop", "scale", "rotate")


class IDCAugment(_ClassAugment):
    """IDC's DiffAug: flip -> color -> one of {crop, scale, rotate} -> cutout.

    flip/color/cutout always run when listed; one geometric op present in the strategy is drawn
    per call. siamese=True is IDC's batch=True (one parameter per call), otherwise per-sample.
    """

    def __init__(self, strategy: str = STANDARD_STRATEGY, params: Optional[DSAParams] = None) -> None:
        self.strategy = strategy
        self.families = parse_strategy(strategy)
        self.params = params or DSAParams()
        self._geometric = [f for f in _IDC_GEOMETRIC if f in self.families]

    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor:
        _check_input(x)
        if not self.families or x.shape[0] == 0:
            return x
        cpu_gen, dev_gen = _generators(seed, x.device)
        families = [f for f in ("flip", "color") if f in self.families]
        if self._geometric:
            families.append(_choice(self._geometric, cpu_gen))
        if "cutout" in self.families:
            families.append("cutout")
        ops = [op for f in families for op in FAMILY_OPS[f]]
        p = sample_params(ops, x, self.params, siamese=siamese, groups=groups, generator=dev_gen)
        return apply_ops(x, ops, p, self.params)

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        head = [f for f in ("flip", "color") if f in self.families]
        tail = ["cutout"] if "cutout" in self.families else []
        if not self._geometric:
            return [tuple(head + tail)], torch.zeros(k, dtype=torch.long)
        return ([tuple(head + [g] + tail) for g in self._geometric],
                torch.randint(0, len(self._geometric), (k,), generator=gen))

    def __repr__(self) -> str:
        return f"IDCAugment(strategy={self.strategy!r}, params={self.params})"
