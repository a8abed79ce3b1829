"""The augmentation families (color, crop, cutout, flip, scale, rotate) and their transforms: pure,
differentiable functions of (images, per-image parameters), shared by DSA, IDC's DiffAug and
the per-class draw.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Sequence
import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.data.augment.sampler import DSAParams, Params, _round_half_up


STANDARD_STRATEGY = "color_crop_cutout_flip_scale_rotate"


DIGITS_STRATEGY = "color_crop_cutout_scale_rotate"


# A family names what the strategy string lists; an op is one elementary transform.
FAMILY_OPS: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("crop",),
    "cutout": ("cutout",),
    "flip": ("flip",),
    "scale": ("scale",),
    "rotate": ("rotate",),
}


FAMILIES: tuple[str, ...] = tuple(FAMILY_OPS)


class Augment(Protocol):
    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor: ...


def parse_strategy(strategy: str) -> list[str]:
    """'color_crop_flip' -> ['color', 'crop', 'flip']; '' / 'none' -> []; unknown names raise."""
    s = (strategy or "").strip().lower()
    if s in ("", "none"):
        return []
    names = [p for p in s.split("_") if p]
    bad = [p for p in names if p not in FAMILY_OPS]
    if bad:
        raise ValueError(
            f"unknown augmentation famil{'y' if len(bad) == 1 else 'ies'} {bad} in strategy {strategy!r}; "
            f"valid families: {', '.join(FAMILIES)}"
        )
    return names


# ----------------------------------------------------------------------------------------------
# Transforms: pure, differentiable functions of (x, per-image params)
# ----------------------------------------------------------------------------------------------
def _col(t: Tensor, x: Tensor) -> Tensor:
    return t.to(x.dtype).view(-1, 1, 1, 1)


def flip(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    return torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(3), x)


def brightness(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    return x + (_col(p["brightness"], x) - 0.5) * params.brightness


def saturation(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * (_col(p["saturation"], x) * params.saturation) + m


def contrast(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (_col(p["contrast"], x) + params.contrast) + m


def _shift(x: Tensor, shift: Tensor, dim: int) -> Tensor:
    """out[..., i, ...] = x[..., i + shift, ...] along `dim` (2 or 3), 0 where out of range."""
    n, c, h, w = x.shape
    length = x.shape[dim]
    src = torch.arange(length, device=x.device).unsqueeze(0) + shift.view(-1, 1)  # (N, L)
    valid = ((src >= 0) & (src < length)).to(x.dtype)
    src = src.clamp(0, length - 1)
    if dim == 2:
        out = x.gather(2, src.view(n, 1, h, 1).expand(n, c, h, w))
        return out * valid.view(n, 1, h, 1)
    out = x.gather(3, src.view(n, 1, 1, w).expand(n, c, h, w))
    return out * valid.view(n, 1, 1, w)


def crop(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    """Translation by an integer shift per axis, vacated pixels set to 0 (DSA's 'crop')."""
    return _shift(_shift(x, p["crop_h"], 2), p["crop_w"], 3)


def cutout(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    """Zero a square centered at (cutout_h, cutout_w); the part outside the image is dropped."""
    _, _, h, w = x.shape
    ch, cw = _round_half_up(params.ratio_cutout * h), _round_half_up(params.ratio_cutout * w)
    lo_h = p["cutout_h"].view(-1, 1) - ch // 2
    lo_w = p["cutout_w"].view(-1, 1) - cw // 2
    rows = torch.arange(h, device=x.device).unsqueeze(0)
    cols = torch.arange(w, device=x.device).unsqueeze(0)
    in_h = (rows >= lo_h) & (rows < lo_h + ch)  # (N, H)
    in_w = (cols >= lo_w) & (cols < lo_w + cw)  # (N, W)
    keep = ~(in_h.unsqueeze(2) & in_w.unsqueeze(1))  # (N, H, W)
    return x * keep.unsqueeze(1).to(x.dtype)


# Params key (0-d tensor): consecutive images that share one draw (ClassDraw: the n images of a class).
ROWS_PER_DRAW = "rows_per_draw"


def _affine(x: Tensor, theta: Tensor, p: Params) -> Tensor:
    """Why one grid per draw when images share it (ROWS_PER_DRAW): an image's sampling grid depends
    only on its theta, and building it per image was a fifth of DSA's cost on a CPU; the repeated
    grid has the same values."""
    rows = int(p[ROWS_PER_DRAW]) if ROWS_PER_DRAW in p else 1
    if rows > 1:
        grid = F.affine_grid(theta[::rows].to(x.dtype), [x.shape[0] // rows, *x.shape[1:]], align_corners=True)
        grid = grid.repeat_interleave(rows, 0)
    else:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def scale(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    sx, sy = p["scale_w"], p["scale_h"]
    z = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, z, z], 1), torch.stack([z, sy, z], 1)], 1)
    return _affine(x, theta, p)


def rotate(x: Tensor, p: Params, params: DSAParams) -> Tensor:
    a = p["rotate"]
    cos, sin, z = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, z], 1), torch.stack([sin, cos, z], 1)], 1)
    return _affine(x, theta, p)


OPS: dict[str, Callable[[Tensor, Params, DSAParams], Tensor]] = {
    "flip": flip,
    "brightness": brightness,
    "saturation": saturation,
    "contrast": contrast,
    "crop": crop,
    "cutout": cutout,
    "scale": scale,
    "rotate": rotate,
}


def apply_ops(x: Tensor, ops: Sequence[str], p: Params, params: DSAParams) -> Tensor:
    for op in ops:
        x = OPS[op](x, p, params)
    return x


def _check_input(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"augmentation expects NCHW images, got shape {tuple(x.shape)}")
