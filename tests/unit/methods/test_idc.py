"""IDC multi-formation decode/init and a smoke pipeline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dfdistill.methods.idc import decode


def test_decode_f2_tiles_reproduce_stored_image():
    torch.manual_seed(0)
    # smooth images (like natural ones) so down-sampling the up-sampled tile is near-lossless
    stored = F.interpolate(torch.rand(3, 3, 6, 6), size=(32, 32), mode="bilinear", align_corners=False)
    out = decode(stored, 2)
    assert out.shape == (12, 3, 32, 32)
    for n in range(3):
        for t, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            tile = stored[n, :, 16 * r : 16 * (r + 1), 16 * c : 16 * (c + 1)]
            back = F.avg_pool2d(out[4 * n + t][None], 2)[0]  # 2x area down-sample
            assert (back - tile).abs().max() < 0.05 and (back - tile).abs().mean() < 0.01
            others = [stored[n, :, 16 * a : 16 * (a + 1), 16 * b : 16 * (b + 1)] for a in (0, 1) for b in (0, 1)]
            assert min(range(4), key=lambda i: (back - others[i]).abs().mean()) == t  # right tile, right order
    # wrong tile order / size would break this: the first tile of image 0 upsampled is the decode
    up = F.interpolate(stored[:1, :, :16, :16], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:1], up)


def test_decode_pads_non_divisible_size_and_f1_is_identity():
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(decode(x, 1), x)
    out = decode(x, 3)  # tile side ceil(28/3)=10, padded with 0.5
    assert out.shape == (18, 1, 28, 28)
    last = F.interpolate(F.pad(x[:1], (0, 2, 0, 2), value=0.5)[..., 20:30, 20:30], size=(28, 28), mode="bilinear")
    torch.testing.assert_close(out[8:9], last)


def test_mix_init_is_mosaic_of_real_class_images(compose_cfg, tmp_path):
    from dfdistill.data.datasets import load_dataset
    from dfdistill.methods.idc import mix_init

    cfg = compose_cfg(["profile=smoke", "dataset=digits"])
    train, _ = load_dataset(cfg.dataset, device=torch.device("cpu"), cache_dir=tmp_path)
    x = mix_init(train, 2, 2, torch.Generator().manual_seed(0))
    H, h = train.image_size, train.image_size // 2
    assert x.shape == (20, train.channels, H, H) and x.min() >= 0 and x.max() <= 1
    tile = x[0, :, :h, :h]
    pix = train.denormalize(train.images[train.class_indices[0]])
    small = F.interpolate(pix, size=(h, h))
    assert ((small - tile).abs().flatten(1).max(1).values < 1e-5).any()  # tile 0 is a class-0 image


@pytest.mark.slow
def test_smoke_pipeline_idc(compose_cfg, tmp_path):
    from dfdistill.run.pipeline import run

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=idc", "eval=idc", "ipc=1",
                       "method.match_steps=2", "method.n_data=64"])
    rec = run(cfg)
    assert 0 <= rec["acc_mean"] <= 1
    syn = torch.load(tmp_path / "run" / "synthetic.pt")
    assert syn["images"].shape[0] == 10 * 4 and syn["labels"].shape[0] == 40


def test_network_update_trains_until_n_data_samples_are_seen():
    """IDC's train_epoch stops after the batch at which n_data samples have been seen: 2000 -> 32
    batches of 64 and 500 -> 8 (n_data // 64 would give 31 and 7)."""
    from types import SimpleNamespace

    from dfdistill.methods.idc import IDC

    for n_data, batches in ((2000, 32), (500, 8), (64, 1), (65, 2), (0, 0)):
        assert IDC.net_batches(SimpleNamespace(cfg=SimpleNamespace(n_data=n_data)), 64) == batches, n_data


@pytest.mark.slow
def test_network_update_draws_net_batches_batches(compose_cfg, tmp_path):
    """The update itself draws ceil(n_data / 64) batches of 64 (500 -> 8)."""
    from dfdistill.bench.harness import build_setup, make_distiller

    cfg = compose_cfg(["profile=smoke", "dataset=digits", "method=idc", "eval=idc", "ipc=1", "method.n_data=500"])
    d = make_distiller(build_setup(cfg, tmp_path), False)
    drawn = []
    real_rows = d.net_rows
    d.net_rows = lambda n: (drawn.append(n), real_rows(n))[1]
    net = d.ctx.model_factory(0)
    d.train_net_on_real(net, torch.optim.SGD(net.parameters(), lr=0.01))
    assert drawn == [64] * 8
