"""The per-class siamese draw (data.augment.ClassDraw): one call augments every class, with the
reference's maths per class (one family and one parameter set shared by all images of a class, in
the real and the synthetic batch alike)."""

from __future__ import annotations

import pytest
import torch

from dfdistill.data.augment.dsa import DSA
from dfdistill.data.augment.transforms import FAMILY_OPS, STANDARD_STRATEGY, apply_ops
from dfdistill.data.augment.diffaug import IDCAugment
from dfdistill.data.augment import NoAugment

H = 16


def _batch(c: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(c, n, 3, H, H, generator=torch.Generator().manual_seed(seed))


def _reference_per_class(aug, draw, x: torch.Tensor) -> torch.Tensor:
    """Class by class: that class's family combination and its one parameter set on all its images."""
    p_all = draw.params(H, H, x.device)
    out = []
    for c in range(x.shape[0]):
        ops = [op for f in draw.combos[int(draw.choice[draw.lo + c])] for op in FAMILY_OPS[f]]
        p = {k: v[draw.lo + c].expand(x.shape[1]) for k, v in p_all.items()}
        out.append(apply_ops(x[c], ops, p, aug.params))
    return torch.stack(out)


@pytest.mark.parametrize("aug", [DSA(STANDARD_STRATEGY), DSA(STANDARD_STRATEGY, mode="M"), IDCAugment(STANDARD_STRATEGY)])
def test_one_call_equals_each_class_under_its_own_draw(aug):
    x = _batch(12, 5, 0)
    for seed in range(4):
        draw = aug.class_draw(seed, 12)
        assert torch.equal(draw.apply(x), _reference_per_class(aug, draw, x))


def test_real_and_synthetic_of_a_class_share_its_transform():
    aug = DSA(STANDARD_STRATEGY)
    probe = _batch(6, 1, 1)
    real = torch.cat([_batch(6, 7, 2), probe], 1)  # probe last of 8 images per class
    syn = torch.cat([probe, _batch(6, 2, 3)], 1)  # probe first of 3
    for seed in range(6):
        draw = aug.class_draw(seed, 6)
        assert torch.allclose(draw.apply(real)[:, -1], draw.apply(syn)[:, 0], atol=1e-6)


def test_classes_draw_their_own_families_and_parameters():
    """Not one transform for all classes: with 40 classes several families occur, and the continuous
    parameters of two classes differ."""
    draw = DSA(STANDARD_STRATEGY).class_draw(7, 40)
    assert len(torch.unique(draw.choice)) > 2
    p = draw.params(H, H, torch.device("cpu"))
    assert len(torch.unique(p["rotate"])) == 40


def test_slices_are_the_same_draw_for_a_class_range():
    """Class chunks: draw[lo:hi] on classes lo..hi-1 gives exactly those rows of the one-call result."""
    aug = DSA(STANDARD_STRATEGY)
    x = _batch(10, 4, 5)
    draw = aug.class_draw(3, 10)
    whole = draw.apply(x)
    parts = torch.cat([draw[lo:lo + 3].apply(x[lo:lo + 3]) for lo in range(0, 10, 3)])
    assert torch.equal(parts, whole)
    assert torch.equal(draw[2:8][1:3].apply(x[3:5]), whole[3:5])


def test_same_seed_same_draw_and_gradient_reaches_every_class():
    aug = DSA(STANDARD_STRATEGY)
    x = _batch(5, 3, 9).requires_grad_(True)
    a, b = aug.class_draw(11, 5).apply(x), aug.class_draw(11, 5).apply(x)
    assert torch.equal(a, b)
    a.square().sum().backward()
    assert all(x.grad[c].abs().sum() > 0 for c in range(5))


def test_wrong_class_count_and_identity_draw():
    with pytest.raises(ValueError, match="classes"):
        DSA(STANDARD_STRATEGY).class_draw(0, 4).apply(_batch(3, 2, 0))
    x = _batch(3, 2, 0)
    assert torch.equal(NoAugment().class_draw(0, 3).apply(x), x)
