"""DSA's cost per step (issue 22, item 7): one ClassDraw.apply over all classes writes no more tensor
data than augmenting class by class (what the reference does) plus one gather and one scatter of the
batch. Counted with a dispatch mode (elements each aten op writes), so the check is exact and
independent of the machine's load; the timing against the original is scripts/bench_dsa_cost.py."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dfdistill.data.augment.dsa import DSA
from dfdistill.data.augment.transforms import STANDARD_STRATEGY


class _Written(TorchDispatchMode):
    """Elements written by every aten op: the outputs of functional ops, the source of in-place ones."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._schema.is_mutable:
            others = [a for a in list(args[1:]) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            self.elements += max((a.numel() for a in others), default=0)
        else:
            outs = out if isinstance(out, (tuple, list)) else [out]
            self.elements += sum(o.numel() for o in outs if isinstance(o, torch.Tensor) and o.dtype.is_floating_point)
        return out


def _written(fn) -> int:
    with _Written() as w:
        fn()
    return w.elements


def test_one_pass_writes_at_most_the_per_class_work_plus_one_gather_and_scatter():
    c, n = 10, 16
    x = torch.randn(c, n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    aug = DSA(STANDARD_STRATEGY)
    draw = aug.class_draw(3, c)
    assert len(torch.unique(draw.choice)) >= 4  # several family combinations: the case that was slow
    draw.params(16, 16, x.device)  # parameters drawn once per step, outside both counts
    one_pass = _written(lambda: draw.apply(x))
    per_class = sum(_written(lambda i=i: draw[i:i + 1].apply(x[i:i + 1])) for i in range(c))
    assert one_pass <= per_class + 2 * x.numel(), (one_pass, per_class, x.numel())


def test_gradient_through_the_one_pass_equals_per_class():
    c, n = 8, 3
    x = torch.randn(c, n, 3, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    draw = DSA(STANDARD_STRATEGY).class_draw(5, c)
    w = torch.randn(c, n, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    (g_one,) = torch.autograd.grad((draw.apply(x) * w).sum(), x)
    per = torch.cat([draw[i:i + 1].apply(x[i:i + 1]) for i in range(c)])
    (g_per,) = torch.autograd.grad((per * w).sum(), x)
    assert torch.equal(g_one, g_per)
