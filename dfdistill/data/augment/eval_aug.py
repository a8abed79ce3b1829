"""DC's evaluation augmentation (crop, scale, rotate, noise): not differentiable, per image, used
when a set is evaluated the DC way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Union
import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.data.augment.sampler import _generators
from dfdistill.data.augment.transforms import _check_input


@dataclass
class DCAugParams:
    """DC's non-differentiable augmentation magnitudes (reference get_daparam defaults)."""

    crop: int = 4  # pixels of mean padding on each side; offsets drawn in [0, 2*crop)
    scale: float = 0.2  # each axis resized by U(1 - scale, 1 + scale)
    rotate: int = 45  # degrees, randint(-rotate, rotate)
    noise: float = 0.001  # std of added Gaussian noise


DC_OPS: tuple[str, ...] = ("crop", "scale", "rotate", "noise")


def _gather_axis(x: Tensor, src: Tensor, dim: int) -> Tensor:
    """out[n, :, i, :] = x[n, :, src[n, i], :] for dim 2 (rows) or the same along columns for dim 3."""
    n, c, h, w = x.shape
    if dim == 2:
        return x.gather(2, src.view(n, 1, -1, 1).expand(n, c, src.shape[1], w))
    return x.gather(3, src.view(n, 1, 1, -1).expand(n, c, h, src.shape[1]))


def dc_crop(x: Tensor, off_h: Tensor, off_w: Tensor, pad: int, fill: Tensor) -> Tensor:
    """Pad by `pad` px with the per-channel `fill` (C,), then take the H x W window at (off_h, off_w)."""
    n, c, h, w = x.shape
    xp = fill.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    xp[:, :, pad : pad + h, pad : pad + w] = x
    rows = torch.arange(h, device=x.device).unsqueeze(0) + off_h.view(-1, 1)
    cols = torch.arange(w, device=x.device).unsqueeze(0) + off_w.view(-1, 1)
    return _gather_axis(_gather_axis(xp, rows, 2), cols, 3)


def dc_scale(x: Tensor, new_h: Tensor, new_w: Tensor) -> Tensor:
    """Nearest-resize each image to (new_h, new_w), centre it on a zero canvas of side
    M = max(new_h, new_w, H, W) and centre-crop H x W back out (offsets floor((M - size) / 2))."""
    n, _, h, w = x.shape
    side = torch.maximum(torch.maximum(new_h, new_w), torch.tensor(max(h, w), device=x.device))

    def axis(size: int, new: Tensor) -> tuple[Tensor, Tensor]:
        rel = (torch.arange(size, device=x.device).unsqueeze(0) + ((side - size) // 2).view(-1, 1)
               - ((side - new) // 2).view(-1, 1))  # position inside the resized image
        valid = (rel >= 0) & (rel < new.view(-1, 1))
        # nearest interpolation: source = floor(dst * in / out), as F.interpolate(mode="nearest")
        src = torch.floor(rel.clamp_min(0).to(torch.float32) * (size / new.view(-1, 1).to(torch.float32)))
        return src.long().clamp(0, size - 1), valid

    src_h, ok_h = axis(h, new_h)
    src_w, ok_w = axis(w, new_w)
    out = _gather_axis(_gather_axis(x, src_h, 2), src_w, 3)
    return out * (ok_h.view(n, 1, h, 1) & ok_w.view(n, 1, 1, w)).to(x.dtype)


def dc_rotate(x: Tensor, degrees: Tensor, fill: float) -> Tensor:
    """Rotate each image about its centre by `degrees`, same size, outside filled with `fill`.
    Cubic interpolation (the reference uses scipy's order-3 spline: same order, not bit-identical)."""
    a = degrees.to(x.dtype) * (math.pi / 180.0)
    cos, sin, z = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, z], 1), torch.stack([sin, cos, z], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x - fill, grid, mode="bicubic", padding_mode="zeros", align_corners=True) + fill


class DCAugment:
    """DC's non-differentiable augmentation, used only to train evaluation networks (reference
    `augment`/`get_daparam`: MNIST 'crop_scale_rotate', a BatchNorm ConvNet 'crop_noise').

    ONE op per image, drawn uniformly from the strategy's ops: crop (pad `crop` px with the batch's
    per-channel mean, random window), scale (each axis U(0.8, 1.2), nearest, centred on zeros, centre
    crop), rotate (integer degrees in [-45, 45), fill = mean of the channel means), noise (+ N(0, 0.001^2)).
    Vectorised: each op runs once on the images that drew it.
    """

    def __init__(self, strategy: str = "crop_scale_rotate", params: Optional[DCAugParams] = None) -> None:
        s = (strategy or "").strip().lower()
        self.ops = [] if s in ("", "none") else [p for p in s.split("_") if p]
        bad = [p for p in self.ops if p not in DC_OPS]
        if bad:
            raise ValueError(f"unknown DC augmentation op(s) {bad} in strategy {strategy!r}; valid: {', '.join(DC_OPS)}")
        self.strategy = strategy
        self.params = params or DCAugParams()

    @torch.no_grad()
    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor:
        _check_input(x)
        if siamese or groups is not None:
            raise ValueError("DC augmentation draws per image only (no siamese/group mode)")
        if not self.ops or x.shape[0] == 0:
            return x
        _, gen = _generators(seed, x.device)
        n, c, h, w = x.shape
        dev, p = x.device, self.params
        choice = torch.randint(0, len(self.ops), (n,), device=dev, generator=gen)
        mean = x.mean(dim=(0, 2, 3))  # per channel, over the batch before any change (as the reference)
        out = x.clone()
        for k, op in enumerate(self.ops):
            sel = torch.nonzero(choice == k).squeeze(1)
            if sel.numel() == 0:
                continue
            xi = x.index_select(0, sel)
            m = sel.numel()
            if op == "crop":
                off = torch.randint(0, 2 * p.crop, (2, m), device=dev, generator=gen)
                y = dc_crop(xi, off[0], off[1], p.crop, mean)
            elif op == "scale":
                u = torch.rand(2, m, device=dev, generator=gen) * (2 * p.scale) + (1 - p.scale)
                y = dc_scale(xi, (u[0] * h).long(), (u[1] * w).long())
            elif op == "rotate":
                deg = torch.randint(-p.rotate, p.rotate, (m,), device=dev, generator=gen)
                y = dc_rotate(xi, deg, float(mean.mean()))
            else:
                y = xi + p.noise * torch.randn(xi.shape, device=dev, generator=gen, dtype=xi.dtype)
            out.index_copy_(0, sel, y)
        return out

    def __repr__(self) -> str:
        return f"DCAugment(strategy={self.strategy!r}, params={self.params})"


def _dc_params(params: Union[DCAugParams, dict, None]) -> DCAugParams:
    if params is None or isinstance(params, DCAugParams):
        return params or DCAugParams()
    valid = {f.name for f in fields(DCAugParams)}
    bad = sorted(set(params) - valid)
    if bad:
        raise ValueError(f"unknown DC augmentation parameter(s) {bad}; valid: {', '.join(sorted(valid))}")
    return DCAugParams(**params)
