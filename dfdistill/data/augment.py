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

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional, Protocol, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dfdistill.runtime import reseeded_generator

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
_IDC_GEOMETRIC: tuple[str, ...] = ("crop", "scale", "rotate")

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


def _check_input(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"augmentation expects NCHW images, got shape {tuple(x.shape)}")


class ClassDraw:
    """One siamese draw for the C classes of a step: per class, the families it applies and one
    parameter set, shared by every image of that class in every tensor it is applied to.

    Why: the reference augments each class's real and synthetic batch under that class's seed, one
    call per class (C calls, each drawing its own parameters). Here the C family choices are one
    tensor op on the CPU generator and each parameter is one (C,) draw on the device, made once per
    step; `apply` transforms a whole (c, n, ...) batch with at most one pass per family combination.
    The maths per class is the reference's (one family, one parameter set for all its images); the
    random stream differs. `draw[lo:hi]` is the same draw restricted to classes lo..hi-1, so class
    chunks see exactly the transforms of the one-pass batch. Parameters are drawn at the first
    `apply` (their ranges depend on the image size) and reused for every later tensor."""

    def __init__(self, aug: "_ClassAugment", seed: int, num_classes: int) -> None:
        self.aug, self.seed, self.num_classes = aug, int(seed), int(num_classes)
        self.lo, self.hi = 0, self.num_classes
        cpu_gen = torch.Generator().manual_seed(self.seed)
        self._dev_seed = int(torch.randint(0, 2**62, (1,), generator=cpu_gen).item())
        self.combos, self.choice = aug.choose_families(self.num_classes, cpu_gen)  # choice: (C,) combo per class
        self._params: dict[tuple, Params] = {}  # (h, w, device) -> per-class (C,) parameter tensors

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, key: slice) -> "ClassDraw":
        if not isinstance(key, slice):
            raise TypeError("a ClassDraw is sliced by a class range, e.g. draw[lo:hi]")
        lo, hi, step = key.indices(len(self))
        if step != 1:
            raise IndexError("a ClassDraw supports contiguous class ranges only")
        sub = object.__new__(ClassDraw)
        sub.__dict__.update(self.__dict__)  # shares combos, choice and the parameter cache
        sub.lo, sub.hi = self.lo + lo, self.lo + hi
        return sub

    def params(self, h: int, w: int, device: torch.device) -> Params:
        key = (h, w, str(device))
        if key not in self._params:
            ops = [op for combo in self.combos for f in combo for op in FAMILY_OPS[f]]
            ops = list(dict.fromkeys(ops))  # every op any class uses, drawn for all C classes
            gen = reseeded_generator(device, self._dev_seed)  # used right away: one generator per device
            self._params[key] = _draw_params(ops, _Draws(self.num_classes, self.num_classes, None, device, gen),
                                             h, w, self.aug.params)
        return self._params[key]

    def apply(self, x: Tensor) -> Tensor:
        """x (c, n, ...) with c = len(self): class i under the draw of class lo + i."""
        if x.shape[0] != len(self):
            raise ValueError(f"a draw for {len(self)} classes got a batch of {x.shape[0]} classes")
        c, n = x.shape[0], x.shape[1]
        if c == 0 or n == 0:
            return x
        _check_input(x[0])
        h, w = x.shape[-2], x.shape[-1]
        p_all = self.params(h, w, x.device)
        choice = self.choice[self.lo : self.hi]
        combos = torch.unique(choice).tolist()
        if len(combos) == 1:  # every class in one combination: no gather/scatter at all
            return self._apply_combo(x, combos[0], torch.arange(self.lo, self.hi), p_all)
        # Why gather per combination into a fresh output (not `out = out.index_copy(...)` per
        # combination): an out-of-place index_copy copies the whole batch once per combination, which
        # was half of DSA's cost on a CPU; here each image is read once and written once.
        out = torch.empty_like(x)
        for j in combos:
            classes = torch.nonzero(choice == j).squeeze(1)
            idx = classes.to(x.device)
            out.index_copy_(0, idx, self._apply_combo(x.index_select(0, idx), j, classes + self.lo, p_all))
        return out

    def _apply_combo(self, x: Tensor, j: int, classes: Tensor, p_all: Params) -> Tensor:
        """x (k, n, ...) of the k draw classes `classes` (absolute ids) under combination j."""
        ops = [op for f in self.combos[j] for op in FAMILY_OPS[f]]
        if not ops:
            return x
        k, n = x.shape[0], x.shape[1]
        per_image = classes.repeat_interleave(n).to(x.device)  # class of each row
        p = {key: v.index_select(0, per_image) for key, v in p_all.items()}
        p[ROWS_PER_DRAW] = torch.tensor(n)  # rows are class by class, n per class
        return apply_ops(x.reshape(k * n, *x.shape[2:]), ops, p, self.aug.params).view_as(x)


class _ClassAugment:
    """What DSA and IDC share for per-class siamese draws (`class_draw`)."""

    params: DSAParams

    def choose_families(self, k: int, gen: torch.Generator) -> tuple[list[tuple[str, ...]], Tensor]:
        """(family combinations, (k,) index of each class's combination), drawn from `gen`."""
        raise NotImplementedError

    def class_draw(self, seed: int, num_classes: int) -> ClassDraw:
        """One siamese draw for `num_classes` classes (see ClassDraw)."""
        return ClassDraw(self, seed, num_classes)


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


def _dc_params(params: Union[DCAugParams, dict, None]) -> DCAugParams:
    if params is None or isinstance(params, DCAugParams):
        return params or DCAugParams()
    valid = {f.name for f in fields(DCAugParams)}
    bad = sorted(set(params) - valid)
    if bad:
        raise ValueError(f"unknown DC augmentation parameter(s) {bad}; valid: {', '.join(sorted(valid))}")
    return DCAugParams(**params)


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
