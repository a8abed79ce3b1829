"""DC/DSA's differentiable siamese augmentation (one family per call, or all in order).
"""

from __future__ import annotations

from typing import Optional
import torch
from torch import Tensor

from dfdistill.data.augment.class_draw import _ClassAugment
from dfdistill.data.augment.sampler import DSAParams, _choice, _generators, sample_params
from dfdistill.data.augment.transforms import FAMILY_OPS, STANDARD_STRATEGY, _check_input, apply_ops, parse_strategy


class DSA(_ClassAugment):
    """DC/DSA augmentation. Mode 'S': one family per call; mode 'M': every family in order."""

    def __init__(
        self, strategy: str = STANDARD_STRATEGY, params: Optional[DSAParams] = None, mode: str = "S"
    ) -> None:
        if mode not in ("S", "M"):
            raise ValueError(f"DSA mode must be 'S' or 'M', got {mode!r}")
        self.strategy = strategy
        self.families = parse_strategy(strategy)
        self.params = params or DSAParams()
        self.mode = mode

    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor:
        _check_input(x)
        if not self.families or x.shape[0] == 0:
            return x
        cpu_gen, dev_gen = _generators(seed, x.device)
        families = [_choice(self.families, cpu_gen)] if self.mode == "S" else self.families
        ops = [op for f in families for op in FAMILY_OPS[f]]
        p = sample_params(ops, x, self.params, siamese=siamese, groups=groups, generator=dev_gen)
        return apply_ops(x, ops, p, self.params)

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        if self.mode == "M" or not self.families:
            return [tuple(self.families)], torch.zeros(k, dtype=torch.long)
        return [(f,) for f in self.families], torch.randint(0, len(self.families), (k,), generator=gen)

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, mode={self.mode!r}, params={self.params})"
