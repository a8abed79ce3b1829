"""The per-class siamese draw of a distillation step (ClassDraw) and the base of the augmentations
that make one (`class_draw(seed, C)`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dfdistill.engine.runtime import reseeded_generator
from typing import Optional

from dfdistill.data.augment.sampler import DSAParams, Params, _Draws, _draw_params, _generators, sample_params
from dfdistill.data.augment.transforms import (FAMILY_OPS, ROWS_PER_DRAW, STANDARD_STRATEGY, _check_input, apply_ops,
                                              parse_strategy)


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


class _StrategyAugment(_ClassAugment):
    """DSA and IDC's DiffAug: a strategy's families and the transforms' magnitudes; one call chooses
    the families of this draw (the one thing the two differ in), samples their parameters and applies them."""

    def __init__(self, strategy: str = STANDARD_STRATEGY, params: Optional[DSAParams] = None) -> None:
        self.strategy = strategy
        self.families = parse_strategy(strategy)
        self.params = params or DSAParams()

    def call_families(self, gen: torch.Generator) -> list[str]:
        """The families one call applies, in order (drawn from the call's CPU generator `gen`)."""
        raise NotImplementedError

    def __call__(
        self, x: Tensor, seed: Optional[int] = None, siamese: bool = False, groups: Optional[Tensor] = None
    ) -> Tensor:
        _check_input(x)
        if not self.families or x.shape[0] == 0:
            return x
        cpu_gen, dev_gen = _generators(seed, x.device)
        ops = [op for f in self.call_families(cpu_gen) for op in FAMILY_OPS[f]]
        p = sample_params(ops, x, self.params, siamese=siamese, groups=groups, generator=dev_gen)
        return apply_ops(x, ops, p, self.params)
