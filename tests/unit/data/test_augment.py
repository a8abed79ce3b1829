"""Properties of the differentiable augmentations and ZCA that the distillation methods rely on."""

from __future__ import annotations

import math

import pytest
import torch

from dfdistill.data.augment.transforms import DIGITS_STRATEGY, FAMILIES, STANDARD_STRATEGY, crop
from dfdistill.data.augment.dsa import DSA
from dfdistill.data.augment.sampler import DSAParams, sample_params
from dfdistill.data.augment.diffaug import IDCAugment
from dfdistill.data.augment import NoAugment, build_augment
from dfdistill.data.zca import ZCA

H = 16  # small images keep the suite fast on 2 cores


def _img(n: int = 1, c: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, H, H, generator=g)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-6)


# Families whose parameters are continuous, so two independent draws practically never coincide.
CONTINUOUS = ["color", "scale", "rotate"]


@pytest.mark.parametrize("aug_cls", [DSA, IDCAugment])
def test_siamese_same_seed_same_transform_across_batch_sizes(aug_cls):
    aug = aug_cls(STANDARD_STRATEGY)
    probe = _img(1, seed=1)
    real = torch.cat([_img(7, seed=2), probe])  # probe last in a batch of 8
    syn = torch.cat([probe, _img(2, seed=3)])  # probe first in a batch of 3
    for seed in range(6):
        out_r = aug(real, seed=seed, siamese=True)
        out_s = aug(syn, seed=seed, siamese=True)
        assert _same(out_r[-1], out_s[0]), f"seed {seed}: real/syn got different transforms"


@pytest.mark.parametrize("aug_cls", [DSA, IDCAugment])
def test_different_seeds_give_different_outputs(aug_cls):
    aug = aug_cls(STANDARD_STRATEGY)
    x = _img(4)
    outs = [aug(x, seed=s, siamese=True) for s in range(8)]
    distinct = {tuple(o.flatten()[:50].tolist()) for o in outs}
    assert len(distinct) > 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_siamese_call_shares_one_parameter(family):
    aug = DSA(family, DSAParams(prob_flip=0.5))
    x = _img(1).expand(6, -1, -1, -1).contiguous()
    for seed in range(4):
        out = aug(x, seed=seed, siamese=True)
        for i in range(1, 6):
            assert _same(out[0], out[i])


@pytest.mark.parametrize("family", CONTINUOUS + ["crop", "cutout"])
def test_non_siamese_draws_per_image(family):
    aug = DSA(family)
    x = _img(1).expand(8, -1, -1, -1).contiguous()
    out = aug(x, seed=0)
    assert not all(_same(out[0], out[i]) for i in range(1, 8))


def test_non_siamese_idc_draws_per_image():
    aug = IDCAugment("color_scale")
    x = _img(1).expand(4, -1, -1, -1).contiguous()
    out = aug(x, seed=0)
    assert not _same(out[0], out[1])


@pytest.mark.parametrize("family", CONTINUOUS)
def test_groups_share_within_and_differ_across(family):
    aug = DSA(family)
    x = _img(1).expand(7, -1, -1, -1).contiguous()
    groups = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    out = aug(x, seed=5, groups=groups)
    for g in range(3):
        members = (groups == g).nonzero().flatten().tolist()
        for i in members[1:]:
            assert _same(out[members[0]], out[i])
    assert not _same(out[0], out[1]) and not _same(out[1], out[2])


def test_groups_params_independent_of_group_sizes():
    aug = DSA(STANDARD_STRATEGY)
    probe = _img(1)
    # Same G=2, different group sizes: a probe in group 1 must get the same transform.
    a = torch.cat([_img(5, seed=4), probe])
    ga = torch.tensor([0, 0, 0, 1, 1, 1])
    b = torch.cat([probe, _img(1, seed=5)])
    gb = torch.tensor([1, 0])
    for seed in range(5):
        assert _same(aug(a, seed=seed, groups=ga)[-1], aug(b, seed=seed, groups=gb)[0])


@pytest.mark.parametrize("aug_cls", [DSA, IDCAugment])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("siamese", [True, False])
def test_gradient_reaches_input(aug_cls, family, siamese):
    aug = aug_cls(family)
    x = _img(3).requires_grad_(True)
    w = _img(3, seed=9)
    (aug(x, seed=1, siamese=siamese) * w).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_gradient_in_mode_m():
    aug = DSA(STANDARD_STRATEGY, mode="M")
    x = _img(2).requires_grad_(True)
    aug(x, seed=0).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _find_shift(out: torch.Tensor, x: torch.Tensor, bound: int) -> tuple[int, int] | None:
    for dh in range(-bound, bound + 1):
        for dw in range(-bound, bound + 1):
            ref = torch.zeros_like(x)
            hs, he = max(0, -dh), min(H, H - dh)
            ws, we = max(0, -dw), min(H, H - dw)
            ref[:, hs:he, ws:we] = x[:, hs + dh : he + dh, ws + dw : we + dw]
            if torch.equal(out, ref):
                return dh, dw
    return None


def test_crop_shift_bounded_and_zero_filled():
    bound = round(0.125 * H)  # 2 px at 16 px
    x = torch.arange(1, 3 * H * H + 1, dtype=torch.float32).view(1, 3, H, H)
    x = x.expand(24, -1, -1, -1).contiguous()
    out = DSA("crop")(x, seed=3)
    shifts = set()
    for i in range(24):
        s = _find_shift(out[i], x[i], bound)
        assert s is not None, f"image {i} is not a zero-filled shift within {bound}px"
        shifts.add(s)
    assert len(shifts) > 1
    # Draw range is exactly [-s, s] (4 px at 32 px).
    p = sample_params(["crop"], torch.zeros(4000, 1, 32, 32), DSAParams())
    assert p["crop_h"].min() == -4 and p["crop_h"].max() == 4
    assert p["crop_w"].min() == -4 and p["crop_w"].max() == 4


def test_crop_function_direction():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = crop(x, {"crop_h": torch.tensor([1]), "crop_w": torch.tensor([-1])}, DSAParams())
    # out[i, j] = x[i + 1, j - 1], zero where out of range
    expected = torch.tensor([[0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(out[0, 0], expected)


def test_cutout_square_size_and_zero():
    x = torch.ones(64, 3, 32, 32)
    out = DSA("cutout")(x, seed=0)
    zeros = (out == 0).all(dim=1)  # (N, H, W), same across channels
    assert torch.equal((out == 0), zeros.unsqueeze(1).expand_as(out))
    counts = zeros.flatten(1).sum(1)
    assert counts.max() == 16 * 16  # an interior square of side round(0.5 * 32)
    assert (counts > 0).all() and (counts < 16 * 16).any()  # some clamped at a border
    for i in range(64):  # the zeroed set is a rectangle
        r, c = zeros[i].any(1).nonzero(), zeros[i].any(0).nonzero()
        assert counts[i] == len(r) * len(c)


@pytest.mark.parametrize("aug_cls", [DSA, IDCAugment])
def test_flip_probability(aug_cls):
    x = _img(32)
    always = aug_cls("flip", DSAParams(prob_flip=1.0))
    never = aug_cls("flip", DSAParams(prob_flip=0.0))
    assert torch.equal(always(x, seed=0), x.flip(3))
    assert torch.equal(never(x, seed=0), x)
    half = aug_cls("flip")(x, seed=0)
    flipped = torch.tensor([torch.equal(half[i], x[i].flip(2)) for i in range(32)])
    kept = torch.tensor([torch.equal(half[i], x[i]) for i in range(32)])
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_scale_rotate_ranges():
    x = torch.zeros(2000, 1, 8, 8)
    p = sample_params(["scale", "rotate"], x, DSAParams())
    for k in ("scale_h", "scale_w"):
        assert p[k].min() >= 1 / 1.2 and p[k].max() <= 1.2
    assert p["rotate"].abs().max() <= math.radians(15.0) + 1e-6
    assert p["rotate"].abs().max() > math.radians(13.0)


def test_mode_s_one_family_per_call_mode_m_all():
    x = _img(4).abs() + 1.0  # strictly positive, so cutout zeros are recognisable
    params = DSAParams(prob_flip=1.0)
    seen = set()
    for seed in range(16):
        out = DSA("flip_cutout", params)(x, seed=seed)
        if torch.equal(out, x.flip(3)):
            seen.add("flip")
        else:
            zero = out == 0
            assert zero.any() and torch.equal(out[~zero], x[~zero]), "S mode applied both families"
            seen.add("cutout")
    assert seen == {"flip", "cutout"}
    out = DSA("flip_cutout", params, mode="M")(x, seed=0)
    zero = out == 0
    assert zero.any() and torch.equal(out[~zero], x.flip(3)[~zero])


def test_no_augment_identity():
    x = _img(2)
    assert build_augment("none")(x, seed=1, siamese=True) is x
    assert isinstance(build_augment("none"), NoAugment)


def test_build_augment():
    assert isinstance(build_augment("dsa"), DSA)
    assert build_augment("dsa").families == STANDARD_STRATEGY.split("_")
    assert "flip" not in build_augment("dsa", DIGITS_STRATEGY).families
    idc = build_augment("IDC", params={"ratio_scale": 1.5})
    assert isinstance(idc, IDCAugment) and idc.params.ratio_scale == 1.5
    with pytest.raises(ValueError, match="valid families"):
        build_augment("dsa", "color_blur_flip")
    with pytest.raises(ValueError):
        build_augment("idc", "crop_warp")
    with pytest.raises(ValueError):
        build_augment("bogus")
    with pytest.raises(ValueError):
        build_augment("dsa", params={"nope": 1.0})


# ----------------------------------------------------------------------------------------------
# ZCA
# ----------------------------------------------------------------------------------------------
def _zca_data(n: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(48, 48, generator=g)
    return (torch.randn(n, 48, generator=g) @ mix + 0.3).view(n, 3, 4, 4)


def test_zca_inverse_roundtrip():
    x = _zca_data()
    z = ZCA(chunk_size=64).fit(x, eps=0.1)
    y = z.transform(x)
    assert y.shape == x.shape
    assert torch.allclose(z.inverse(y), x, atol=1e-4, rtol=1e-4)


def test_zca_whitens():
    x = _zca_data()
    z = ZCA(chunk_size=128).fit(x, eps=1e-5)
    y = z.transform(x).reshape(len(x), -1).double()
    y = y - y.mean(0)
    cov = y.T @ y / (len(x) - 1)
    assert torch.allclose(cov, torch.eye(48, dtype=torch.float64), atol=1e-2)
    # With eps=0.1 (the default used for distillation) variance is shrunk, not amplified past 1.
    z2 = ZCA().fit(x)
    y2 = z2.transform(x).reshape(len(x), -1)
    assert y2.var(0).max() < 1.0


def test_zca_state_dict_roundtrip():
    x = _zca_data(100)
    z = ZCA().fit(x)
    z2 = ZCA.from_state_dict(z.state_dict())
    assert torch.equal(z.transform(x), z2.transform(x))
    assert torch.equal(z.inverse(x), z2.inverse(x))
    assert z2.eps == z.eps and z2.shape == z.shape
    with pytest.raises(ValueError):
        ZCA.from_state_dict({"mean": torch.zeros(3)})
    with pytest.raises(ValueError):
        z2.transform(torch.zeros(2, 3, 5, 5))


def test_zca_transform_is_differentiable():
    x = _zca_data(50)
    z = ZCA().fit(x)
    v = x[:3].clone().requires_grad_(True)
    z.inverse(z.transform(v)).sum().backward()
    assert torch.allclose(v.grad, torch.ones_like(v), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# DC's non-differentiable evaluation augmentation (build_augment("dc", strategy))
# ----------------------------------------------------------------------------------------------
from dfdistill.data.augment.eval_aug import DCAugment, dc_crop, dc_rotate, dc_scale  # noqa: E402


def _reference_scale(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The reference's per-image scale: nearest resize, centre on a zero canvas, centre-crop back."""
    import torch.nn.functional as F

    c, H, W = img.shape
    tmp = F.interpolate(img[None], [h, w])[0]
    side = max(h, w, H, W)
    canvas = torch.zeros(c, side, side)
    r, q = int((side - h) / 2), int((side - w) / 2)
    canvas[:, r:r + h, q:q + w] = tmp
    r, q = int((side - H) / 2), int((side - W) / 2)
    return canvas[:, r:r + H, q:q + W]


def _windows(img: torch.Tensor, pad: int, fill: torch.Tensor) -> list[torch.Tensor]:
    c, H, W = img.shape
    canvas = fill.view(-1, 1, 1).expand(c, H + 2 * pad, W + 2 * pad).clone()
    canvas[:, pad:pad + H, pad:pad + W] = img
    return [canvas[:, r:r + H, q:q + W] for r in range(2 * pad) for q in range(2 * pad)]


def test_dc_crop_pads_with_batch_channel_mean_and_takes_a_window():
    x = _img(3)
    mean = x.mean(dim=(0, 2, 3))
    out = dc_crop(x, torch.tensor([0, 7, 4]), torch.tensor([7, 0, 4]), 4, mean)
    for n, (r, q) in enumerate([(0, 7), (7, 0), (4, 4)]):
        assert torch.equal(out[n], _windows(x[n], 4, mean)[r * 8 + q])
    assert torch.equal(out[2], x[2])  # offset (pad, pad) is the identity
    assert torch.allclose(out[0, :, :4, :], mean.view(-1, 1, 1).expand(3, 4, H))  # top rows = channel mean


@pytest.mark.parametrize("size", [(13, 19), (16, 16), (19, 13), (12, 12), (19, 19), (17, 14)])
def test_dc_scale_equals_reference_resize_centre_crop(size):
    x = _img(1)
    out = dc_scale(x, torch.tensor([size[0]]), torch.tensor([size[1]]))
    assert torch.equal(out[0], _reference_scale(x[0], *size))


def test_dc_rotate_keeps_size_fills_outside_and_is_exact_at_right_angles():
    x = _img(2)
    assert torch.allclose(dc_rotate(x, torch.tensor([0, 0]), 0.3), x, atol=1e-5)
    r90 = dc_rotate(x[:1].expand(2, -1, -1, -1), torch.tensor([90, -90]), 0.3)
    assert torch.allclose(r90[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-4) or \
        torch.allclose(r90[0], torch.rot90(x[0], -1, (1, 2)), atol=1e-4)
    assert torch.allclose(r90[0], torch.rot90(r90[1], 2, (1, 2)), atol=1e-4)  # +90 and -90 differ by 180
    z = dc_rotate(torch.zeros(1, 1, H, H), torch.tensor([45]), 5.0)
    assert torch.allclose(z[0, 0, 0, 0], torch.tensor(5.0)) and abs(float(z[0, 0, H // 2, H // 2])) < 1e-5


def test_dc_augment_one_op_per_image_from_the_strategy():
    """crop_noise over many images: each output is either a mean-padded crop window of its input or the
    input plus N(0, 0.001^2) noise, never both, and both ops are drawn about half the time."""
    x = _img(200, c=1)
    out = build_augment("dc", "crop_noise")(x, seed=3)
    mean = x.mean(dim=(0, 2, 3))
    kinds = []
    for n in range(200):
        d = out[n] - x[n]
        if any(torch.equal(out[n], w) for w in _windows(x[n], 4, mean)):
            kinds.append("crop")
        else:  # noise: small everywhere, std 0.001
            kinds.append("noise")
            assert d.abs().max() < 0.01 and 0.0005 < float(d.std()) < 0.002, n
    assert 70 < kinds.count("crop") < 130
    # every crop_scale_rotate op shows up, the result is deterministic per seed and differs across seeds
    aug = build_augment("dc", "crop_scale_rotate")
    assert torch.equal(aug(x, seed=1), aug(x, seed=1)) and not torch.equal(aug(x, seed=1), aug(x, seed=2))


def test_dc_rotate_angles_and_scale_sizes_are_the_reference_ranges(monkeypatch):
    import dfdistill.data.augment.eval_aug as A

    seen = {}
    monkeypatch.setattr(A, "dc_rotate", lambda x, deg, fill: (seen.setdefault("deg", deg), x)[1])
    monkeypatch.setattr(A, "dc_scale", lambda x, h, w: (seen.setdefault("hw", torch.cat([h, w])), x)[1])
    x = _img(2000, c=1)
    A.DCAugment("rotate")(x, seed=0)
    A.DCAugment("scale")(x, seed=0)
    deg, hw = seen["deg"], seen["hw"]
    assert deg.dtype == torch.long and int(deg.min()) == -45 and int(deg.max()) == 44
    assert int(hw.min()) == int(0.8 * H) and int(hw.max()) == int(1.2 * H) - (1 if 1.2 * H == int(1.2 * H) else 0)


def test_dc_augment_rejects_unknown_ops_and_siamese_calls():
    assert isinstance(build_augment("dc"), DCAugment) and build_augment("dc").ops == ["crop", "scale", "rotate"]
    with pytest.raises(ValueError, match="valid: crop, scale, rotate, noise"):
        build_augment("dc", "crop_flip")
    with pytest.raises(ValueError):
        build_augment("dc")(_img(2), seed=0, siamese=True)
    assert build_augment("dc", "none")(_img(2), seed=0).shape == (2, 3, H, H)
