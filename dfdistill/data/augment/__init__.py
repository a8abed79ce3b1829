"""Differentiable augmentation: DSA (DC/DSA style) and IDC's DiffAug, sharing one sampler; plus
DC's non-differentiable evaluation augmentation (`DCAugment`, build_augment("dc", ...)).

Why: gradient matching / distribution matching / trajectory matching push gradients through the
augmentation into the synthetic images, and the real and synthetic batch of a class must see the
*same* random transform (siamese augmentation). Sampling is therefore split from the transforms:
`sample_params` draws one value per *draw slot* (1 for siamese, G for groups, N otherwise) and
expands it to per-image tensors; the transforms are pure functions of (x, per-image params).
Same seed + same number of slots -> same draws, regardless of batch size. `ClassDraw` (from
`augment.class_draw(seed, C)`) is the per-class siamese draw of a distillation step: all classes'
choices and parameters in one go, applied to the (C, n, ...) real and synthetic batches alike.
"""

from __future__ import annotations

from typing import Optional, Union
import torch
from torch import Tensor

from dfdistill.data.augment.class_draw import _ClassAugment
from dfdistill.data.augment.diffaug import IDCAugment
from dfdistill.data.augment.dsa import DSA
from dfdistill.data.augment.eval_aug import DCAugParams, DCAugment, _dc_params
from dfdistill.data.augment.sampler import DSAParams, _as_params
from dfdistill.data.augment.transforms import Augment, STANDARD_STRATEGY


class NoAugment(_ClassAugment):
    """Identity with the Augment call signature (for methods/evals run without augmentation)."""

    params = DSAParams()

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        return [()], torch.zeros(k, dtype=torch.long)

    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor:
        return x

    def __repr__(self) -> str:
        return "NoAugment()"


def build_augment(
    kind: str, strategy: Optional[str] = None, params: Union[DSAParams, DCAugParams, dict, None] = None
) -> Augment:
    """Factory used by configs: kind in {'dsa', 'idc', 'dc', 'none'}; strategy None -> standard
    ('crop_scale_rotate' for dc). `params` are DSA magnitudes (dsa/idc) or DCAugParams fields (dc)."""
    k = (kind or "none").lower()
    if k == "dc":
        return DCAugment("crop_scale_rotate" if strategy is None else strategy, _dc_params(params))
    strategy = STANDARD_STRATEGY if strategy is None else strategy
    if k == "none":
        return NoAugment()
    if k == "dsa":
        return DSA(strategy, _as_params(params))
    if k == "idc":
        return IDCAugment(strategy, _as_params(params))
    raise ValueError(f"unknown augmentation kind {kind!r}; valid: dsa, idc, dc, none")
