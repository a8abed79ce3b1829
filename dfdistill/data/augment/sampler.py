"""The seeded parameter sampler shared by every differentiable augmentation: one value per draw slot
(1 siamese, G groups, N per image) expanded to per-image tensors, so the same seed and slots give
the same draws whatever the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union
import torch
from torch import Tensor

from dfdistill.engine.runtime import reseeded_generator


Params = dict[str, Tensor]


@dataclass
class DSAParams:
    """Magnitudes of the DSA transforms (defaults are the DC/DSA reference values)."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def _round_half_up(v: float) -> int:
    # The reference uses int(size * ratio + 0.5), not Python's banker's rounding.
    return int(v + 0.5)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
class _Draws:
    """Draws `k` values per call on `device` and expands them to the N images of the batch."""

    def __init__(
        self, k: int, n: int, index: Optional[Tensor], device: torch.device, gen: Optional[torch.Generator]
    ) -> None:
        self.k, self.n, self.index, self.device, self.gen = k, n, index, device, gen

    def _expand(self, t: Tensor) -> Tensor:
        if self.index is not None:
            return t.index_select(0, self.index)
        if self.k == 1 and self.n != 1:
            return t.expand(self.n, *t.shape[1:])
        return t

    def rand(self) -> Tensor:
        return self._expand(torch.rand(self.k, device=self.device, generator=self.gen))

    def randint(self, low: int, high: int) -> Tensor:
        """Integers in [low, high)."""
        return self._expand(torch.randint(low, high, (self.k,), device=self.device, generator=self.gen))


def sample_params(
    ops: Sequence[str],
    x: Tensor,
    params: DSAParams,
    *,
    siamese: bool = False,
    groups: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """Per-image parameter tensors (leading dim N) for each op in `ops`, drawn in a fixed order.

    Draw slots: `groups` given -> one per group id (G = max id + 1, takes precedence over
    `siamese`); `siamese` -> one for the whole call; else one per image.
    """
    n, _, h, w = x.shape
    dev = x.device
    index: Optional[Tensor] = None
    if groups is not None:
        index = groups.to(device=dev, dtype=torch.long).reshape(-1)
        if index.numel() != n:
            raise ValueError(f"groups has {index.numel()} entries for a batch of {n}")
        k = int(index.max().item()) + 1 if n > 0 else 0  # one host sync: G sets how many draws
    elif siamese:
        k = 1
    else:
        k = n
    return _draw_params(ops, _Draws(k, n, index, dev, generator), h, w, params)


def _draw_params(ops: Sequence[str], d: _Draws, h: int, w: int, params: DSAParams) -> Params:
    """The draws of `sample_params`, in its fixed order, from the slots of `d` (images h x w)."""
    p: Params = {}
    for op in ops:
        if op == "flip":
            p["flip"] = d.rand() < params.prob_flip
        elif op in ("brightness", "saturation", "contrast"):
            p[op] = d.rand()
        elif op == "crop":
            sh, sw = _round_half_up(params.ratio_crop_pad * h), _round_half_up(params.ratio_crop_pad * w)
            p["crop_h"] = d.randint(-sh, sh + 1)
            p["crop_w"] = d.randint(-sw, sw + 1)
        elif op == "cutout":
            ch, cw = _round_half_up(params.ratio_cutout * h), _round_half_up(params.ratio_cutout * w)
            p["cutout_h"] = d.randint(0, h + (1 - ch % 2))
            p["cutout_w"] = d.randint(0, w + (1 - cw % 2))
        elif op == "scale":
            lo, hi = 1.0 / params.ratio_scale, params.ratio_scale
            p["scale_w"] = d.rand() * (hi - lo) + lo  # sx: horizontal (grid x)
            p["scale_h"] = d.rand() * (hi - lo) + lo  # sy: vertical (grid y)
        elif op == "rotate":
            p["rotate"] = (d.rand() - 0.5) * 2.0 * params.ratio_rotate / 180.0 * math.pi
        else:
            raise ValueError(f"unknown augmentation op {op!r}")
    return p


# ----------------------------------------------------------------------------------------------
# Augmenters
# ----------------------------------------------------------------------------------------------
_Gens = tuple[Optional[torch.Generator], Optional[torch.Generator]]


def _generators(seed: Optional[int], device: torch.device) -> _Gens:
    """(CPU generator for the per-call choice, device generator for parameter values).

    The device generator's seed is drawn from the CPU one so the two streams are not the same
    sequence (which would correlate the family choice with the first parameter value).
    """
    if seed is None:
        return None, None
    cpu = torch.Generator().manual_seed(int(seed))
    dev_seed = int(torch.randint(0, 2**62, (1,), generator=cpu).item())
    dev = reseeded_generator(device, dev_seed)  # one generator per device, reseeded (not one per call)
    return cpu, dev


def _choice(options: Sequence[str], gen: Optional[torch.Generator]) -> str:
    return options[int(torch.randint(0, len(options), (1,), generator=gen).item())]


def _as_params(params: Union[DSAParams, dict, None]) -> DSAParams:
    if params is None:
        return DSAParams()
    if isinstance(params, DSAParams):
        return params
    valid = {f.name for f in fields(DSAParams)}
    bad = sorted(set(params) - valid)
    if bad:
        raise ValueError(f"unknown DSA parameter(s) {bad}; valid: {', '.join(sorted(valid))}")
    return DSAParams(**{k: float(v) for k, v in params.items()})
