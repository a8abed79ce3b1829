"""IDM: partition-and-expand, tile init, the per-class loss against an explicit reference, the model
queue rules, composition with every pruning option, checkpoint round trip and resume."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dfdistill.core.artifacts import load_tensor_file
from dfdistill.bench.harness import build_setup, make_distiller
from dfdistill.data.real import RealData
from dfdistill.methods.idm import IDM, tile_init
from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.run.pipeline import run
from conftest import interrupted_then_resumed

SMOKE = ["profile=smoke", "dataset=digits", "method=idm", "ipc=1"]


def _idm(compose_cfg, out: Path, *overrides: str, adaptive=None, **changes) -> IDM:
    setup = build_setup(compose_cfg([*SMOKE, *overrides], out), out)
    if adaptive is not None:
        setup = dataclasses.replace(setup, ctx=dataclasses.replace(setup.ctx, adaptive=adaptive))
    return make_distiller(setup, False, **changes)


def number_sign_reference(x: torch.Tensor) -> torch.Tensor:
    """IDM's partition and expand as its code describes it: the four quadrants (top-left, bottom-left,
    top-right, bottom-right), each upsampled x2 bilinearly, concatenated quadrant-major."""
    h = x.shape[2] // 2
    quads = [x[:, :, :h, :h], x[:, :, h:, :h], x[:, :, :h, h:], x[:, :, h:, h:]]
    return torch.cat([F.interpolate(q, scale_factor=2, mode="bilinear", align_corners=False) for q in quads])


def test_decode_is_idm_partition_and_expand_up_to_order():
    from dfdistill.methods.idc import decode

    x = torch.randn(3, 2, 8, 8)
    ours, ref = decode(x, 2), number_sign_reference(x)
    assert ours.shape == ref.shape == (12, 2, 8, 8)
    # ours: per image (TL, TR, BL, BR); reference: quadrant-major (TL, BL, TR, BR) over images
    for n in range(3):
        for t, q in enumerate([0, 2, 1, 3]):
            torch.testing.assert_close(ours[4 * n + t], ref[3 * q + n])


def test_tile_init_puts_a_downscaled_class_image_in_every_tile(compose_cfg, tmp_path):
    from dfdistill.data.datasets import load_dataset

    cfg = compose_cfg(["profile=smoke", "dataset=digits"])
    train, _ = load_dataset(cfg.dataset, device=torch.device("cpu"), cache_dir=tmp_path)
    x = tile_init(train, 2, 2, torch.Generator().manual_seed(0))
    H, h = train.image_size, train.image_size // 2
    assert x.shape == (20, 1, H, H)
    for c in (0, 7):
        small = F.avg_pool2d(train.images[train.class_indices[c]], 2)  # bilinear x0.5 = 2x2 average
        for n in (2 * c, 2 * c + 1):
            for i in (0, 1):
                for j in (0, 1):
                    tile = x[n, :, i * h : (i + 1) * h, j * h : (j + 1) * h]
                    assert (small - tile).abs().flatten(1).max(1).values.min() < 1e-5, (c, n, i, j)


def _reference_class_loss(net, xr, syn_c, c, acc, ce_weight):
    """Per-sample loops: mean embeddings of the real batch and of the 4 decoded tiles; CE by hand."""
    tiles = number_sign_reference(syn_c)
    mean_r = sum(net.embed(xr[i : i + 1])[0] for i in range(xr.shape[0])) / xr.shape[0]
    emb_s = [net.embed(tiles[i : i + 1])[0] for i in range(tiles.shape[0])]
    mean_s = sum(emb_s) / len(emb_s)
    match = sum((mean_r[d] - mean_s[d]) ** 2 for d in range(mean_r.shape[0]))
    ce = 0.0
    for e in emb_s:
        logits = net.classifier(e)
        ce = ce + torch.logsumexp(logits, 0) - logits[c]
    return match + ce_weight * acc * ce / len(emb_s)


def test_class_loss_and_gradient_match_an_explicit_reference(compose_cfg, tmp_path):
    d = _idm(compose_cfg, tmp_path, "method.dsa=false", "method.batch_real=6")
    net = d.queue[0].net.eval().requires_grad_(False)
    c, acc = 3, 37.5  # acc in percent, as IDM's meter reports it
    state = d.gen.get_state()
    loss = d.class_loss(net, c, acc)
    (g,) = torch.autograd.grad(loss, d.images)
    gen = torch.Generator()
    gen.set_state(state)
    rows = d.ctx.real.class_sample_indices(c, 6, gen)  # the same draw the method made
    images = d.images.detach().clone().requires_grad_(True)
    ref = _reference_class_loss(net, d.ctx.real.images[rows], images[c : c + 1], c, acc, d.cfg.ce_weight)
    (g_ref,) = torch.autograd.grad(ref, images)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-7)
    assert g[:c].abs().sum() == 0 and g[c + 1 :].abs().sum() == 0 and g[c].abs().sum() > 0
    # an untrained net (acc 0) contributes no CE: the loss is the mean-feature term alone
    gen.set_state(state)
    d.gen.set_state(state)
    no_ce = _reference_class_loss(net, d.ctx.real.images[d.ctx.real.class_sample_indices(c, 6, gen)],
                                  d.images[c : c + 1].detach(), c, 0.0, d.cfg.ce_weight)
    torch.testing.assert_close(d.class_loss(net, c, 0.0).detach(), no_ce.detach(), rtol=1e-5, atol=1e-6)


def test_class_loss_gradient_matches_finite_differences(compose_cfg, tmp_path):
    d = _idm(compose_cfg, tmp_path, "method.dsa=false", "method.batch_real=4")
    net = d.queue[0].net.double().eval().requires_grad_(False)
    r = d.ctx.real  # the same split stored in float64 model space
    d.ctx = dataclasses.replace(d.ctx, real=RealData(r.images.materialize().double(), r.labels, r.num_classes,
                                                     r.class_names, r.mean, r.std))
    d.images = d.images.detach().double().requires_grad_(True)
    state = d.gen.get_state()

    def f() -> torch.Tensor:
        d.gen.set_state(state)  # same real rows every evaluation
        return d.class_loss(net, 2, 50.0)

    (g,) = torch.autograd.grad(f(), d.images)
    eps = 1e-6
    for idx in [(2, 0, 3, 4), (2, 0, 12, 9), (2, 0, 7, 8)]:
        with torch.no_grad():
            d.images[idx] += eps
            up = float(f())
            d.images[idx] -= 2 * eps
            down = float(f())
            d.images[idx] += eps
        assert abs((up - down) / (2 * eps) - float(g[idx])) <= 1e-5 * max(1.0, abs(float(g[idx])))


def test_step_is_one_image_step_per_class_and_the_queue_follows_its_rules(compose_cfg, tmp_path):
    d = _idm(compose_cfg, tmp_path, net_generate_interval=2, net_num=5, model_train_steps=3, trained_bs=16,
             acc_reset_every=4, fetch_net_num=2)
    assert len(d.queue) == 3 and isinstance(d.opt_img, torch.optim.SGD)
    assert d.opt_img.param_groups[0]["momentum"] == 0.5 and d.opt_img.param_groups[0]["params"][0] is d.images
    steps = []
    orig = d.opt_img.step
    d.opt_img.step = lambda *a, **k: (steps.append(1), orig(*a, **k))[1]
    first = d.queue[0]
    d.step(0)  # pushes the 4th net, then 10 class steps, then trains 2 nets x 3 steps
    assert len(steps) == d.num_classes and len(d.queue) == 4
    assert sum(q.seen for q in d.queue) == 2 * 3 * 16 and all(q.seen in (0, 48) for q in d.queue)
    for it in range(1, 5):
        d.step(it)
    assert len(d.queue) == 5 and first not in d.queue  # pushes at 0, 2, 4: 6 nets, FIFO keeps 5
    # meters were reset at iteration 4 before its training: only that iteration's 2 x 3 x 16 counts remain
    assert sum(q.seen for q in d.queue) == 96
    assert all(0.0 <= q.accuracy_percent() <= 100.0 for q in d.queue)
    assert any(q.accuracy_percent() > 1.0 for q in d.queue if q.seen)  # percent, not a fraction


def test_train_set_is_the_decoded_set(compose_cfg, tmp_path):
    from dfdistill.methods.idc import decode

    d = _idm(compose_cfg, tmp_path)
    x, y = d.train_set()
    assert x.shape[0] == 4 * d.images.shape[0] and torch.equal(y, d.labels.repeat_interleave(4))
    torch.testing.assert_close(x, decode(d.images.detach(), 2))


class _Recorder:
    def __init__(self):
        self.calls = []

    def draw(self, fresh):  # no lazy hold: the method's own draw
        return fresh()

    def begin_step(self, step):
        pass

    def weights(self, xr, yr, rows, w, objective):
        self.calls.append((tuple(xr.shape[:2]), tuple(objective.syn.shape[:2]), int(yr[0, 0]),
                           set(objective.features(xr[0], yr[0], 8))))
        out = torch.ones(rows.shape)
        out[:, 2:] = 0
        return out


def test_ite_selector_sees_each_class_batch_and_its_weights_weight_the_real_mean(compose_cfg, tmp_path):
    rec = _Recorder()
    d = _idm(compose_cfg, tmp_path / "a", "method.dsa=false", "method.batch_real=6", adaptive=rec)
    plain = _idm(compose_cfg, tmp_path / "b", "method.dsa=false", "method.batch_real=6")
    net = d.queue[0].net.eval().requires_grad_(False)
    state = d.gen.get_state()
    weighted = d.class_loss(net, 4, 0.0)
    assert rec.calls == [((1, 6), (1, 4), 4, {"e"})]  # 6 real rows; ipc 1 x 4 tiles; DM's embedding feature
    gen = torch.Generator()
    gen.set_state(state)
    rows = d.ctx.real.class_sample_indices(4, 6, gen)[:2]  # the selector kept the first two rows
    ref = _reference_class_loss(net, d.ctx.real.images[rows], d.images[4:5].detach(), 4, 0.0, 0.5)
    torch.testing.assert_close(weighted.detach(), ref, rtol=1e-5, atol=1e-6)
    plain.gen.set_state(state)
    assert abs(float(plain.class_loss(net, 4, 0.0).detach()) - float(weighted.detach())) > 1e-6


def test_checkpoint_round_trip_restores_queue_and_continues_identically(compose_cfg, tmp_path):
    kw = dict(net_generate_interval=1, model_train_steps=2, trained_bs=16)
    a = _idm(compose_cfg, tmp_path / "a", **kw)
    for it in range(3):
        a.step(it)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # as the pipeline's checkpoint: no tensor shared with `a`
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    b = _idm(compose_cfg, tmp_path / "b", **kw)
    b.load_state_dict(state)
    assert len(b.queue) == len(a.queue) == 6
    for qa, qb in zip(a.queue, b.queue):
        assert (qa.correct, qa.seen) == (qb.correct, qb.seen)
        for pa, pb in zip(qa.net.parameters(), qb.net.parameters()):
            assert torch.equal(pa, pb)
        mom_a = [qa.opt.state[p]["momentum_buffer"] for p in qa.net.parameters() if p in qa.opt.state]
        mom_b = [qb.opt.state[p]["momentum_buffer"] for p in qb.net.parameters() if p in qb.opt.state]
        assert len(mom_a) == len(mom_b) and all(torch.equal(x, y) for x, y in zip(mom_a, mom_b))
    a.step(3)
    b.step(3)
    assert torch.equal(a.images, b.images)


@pytest.mark.parametrize("pruning", ["ite", *[pytest.param(p, marks=pytest.mark.slow) for p in ("none", "random", "loss", "bilp")]])
def test_every_pruning_option_composes(compose_cfg, pruning):
    cfg = compose_cfg([*SMOKE, f"pruning={pruning}", "eval.compare_random=false"])
    rec = run(cfg)
    assert 0.0 <= rec["acc_mean"] <= 1.0 and rec["pruning"] == pruning
    if pruning in ("random", "loss", "bilp"):
        assert rec["n_real_used"] < rec["n_real_total"]
    assert "adaptive" not in rec["pruning_info"]  # IDM runs the in-loop half itself (never 'not applied')
    if pruning in ("ite", "bilp"):  # the selector ran once per class and iteration
        ck = load_tensor_file(Path(cfg.output_dir) / CHECKPOINT_FILE)["adaptive"]
        assert ck["calls"] == 10 * rec["iterations"]


def test_interrupted_run_resumes_to_the_same_synthetic_set(compose_cfg, tmp_path, monkeypatch):
    args = [*SMOKE, "profile.iterations=4", "checkpoint_every=1", "stage=distill", "method.net_generate_interval=1"]
    a, b, info = interrupted_then_resumed(compose_cfg, tmp_path, monkeypatch, IDM, args, crash_at=2)
    assert info["resumed_from"] == 2
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])


def test_recipe_gives_each_cell_the_official_command(resolved):
    def cell(dataset, ipc):
        return resolved([f"dataset={dataset}", "dataset.root=/x", "method=idm", f"ipc={ipc}",
                         "profile=full"])

    c100 = cell("cifar100", 10)
    assert (c100.method.model_train_steps, c100.method.ce_weight, c100.method.batch_real) == (50, 0.1, 256)
    c10 = cell("cifar10", 1)
    assert (c10.method.batch_real, c10.method.net_generate_interval) == (5000, 5)
    assert c10.eval.name == "default" and c10.eval.epochs == 1000 and c10.eval.aug == "dsa"
    tiny = cell("tinyimagenet", 50)
    assert tiny.backbone.name == "convnet" and tiny.method.acc_reset_every == 1000  # IDM_tiny.py: depth 3
    for ipc in (1, 10, 50):  # every Tiny cell: IDM's --model ConvNet (depth 3), not the dataset-wide ConvNet-4
        assert cell("tinyimagenet", ipc).backbone.depth == 3, ipc
