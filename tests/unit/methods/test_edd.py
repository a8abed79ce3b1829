"""EDD: segments, the pool/segment pairing under one augmentation draw on both bases, the filtered
pool reaching the in-loop selector as rows of ctx.real, one matching code path (fast/loop/BN),
resume, and the smoke pipelines of the pruning/filtering methods."""

import pytest
import torch

from dfdistill.core.errors import ConfigError
from dfdistill.methods.edd import EDDConfig, segment_bounds
from dfdistill.methods.matching import batched_gradient_distance, class_gradients, detached_params


def test_segment_bounds_cover_ipc_exclusively():
    for ipc, K in [(10, 2), (10, 3), (1, 4), (50, 5)]:
        b = segment_bounds(ipc, K)
        assert b[0][0] == 0 and b[-1][1] == ipc and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
        assert all(hi > lo for lo, hi in b)


def test_config_bases():
    assert EDDConfig(name="edd", _target_="x").base == "idc"
    EDDConfig(name="edd", _target_="x", base="dsa", dis_metric="ours", outer_loop=1, inner_loop=1)
    with pytest.raises(ConfigError, match="outer_loop and method.inner_loop are unset"):
        EDDConfig(name="edd", _target_="x", base="dsa", dis_metric="ours")
    with pytest.raises(ConfigError, match="dis_metric"):
        EDDConfig(name="edd", _target_="x", base="idc", dis_metric="ours")
    with pytest.raises(ConfigError, match="method.base"):
        EDDConfig(name="edd", _target_="x", base="dm")
    for bad in ({"segments": 0}, {"discard": 1.5}, {"reg": -1.0}, {"filter_epochs": 0}, {"net_data": "half"}):
        with pytest.raises(ConfigError):
            EDDConfig(name="edd", _target_="x", **bad)


SMOKE = ["profile=smoke", "dataset=digits", "ipc=2", "method.filter_epochs=2", "method.iterations=4", "profile.iterations=4"]
BASES = {"idc": ["method=edd", "eval=idc", "method.n_data=16", "method.match_steps=1"],
         "dsa": ["method=edd_dsa", "method.outer_loop=2", "method.inner_loop=1"]}


def _edd(compose_cfg, tmp_path, base, extra=(), adaptive=None):
    import dataclasses

    from dfdistill.bench.harness import build_setup, make_distiller

    setup = build_setup(compose_cfg([*SMOKE, *BASES[base], *extra]), tmp_path)
    if adaptive is not None:
        setup = dataclasses.replace(setup, ctx=dataclasses.replace(setup.ctx, adaptive=adaptive))
    return make_distiller(setup, False)


def _to_segment_1(d):
    """Run iterations 0-1 (segment 0); iteration 2 starts segment 1 with its filter pass."""
    for it in range(2):
        d.step(it)


def test_idc_base_is_the_default_and_pairs_all_batches_under_one_draw(compose_cfg, tmp_path):
    """Per class and matching step, ONE siamese IDC-DiffAug call covers the pool batch, segment k's
    decoded tiles, the unfiltered batch and the union's tiles; the loss is D(pool, segment) + reg *
    D(full, union) computed from exactly those augmented batches."""
    d = _edd(compose_cfg, tmp_path, "idc")
    assert type(d).__name__ == "EDDOnIDC"
    _to_segment_1(d)
    d.filter_real(1); d.filtered = 1
    calls = []
    aug = d.match_aug

    def recording(x, seed=None, siamese=False, groups=None):
        out = aug(x, seed=seed, siamese=siamese, groups=groups)
        calls.append((siamese, x.shape[0], out))
        return out

    d.match_aug = recording
    net = d.ctx.model_factory(3)
    B, f2 = d.cfg.batch_real, d.cfg.factor ** 2
    loss = d.class_loss(net, 4, 2)  # iteration 2 = segment 1 (slot 1 of 2)
    assert len(calls) == 1 and calls[0][0]
    n_pool = min(B, int(d.active[d.ctx.real.class_indices[4]].sum()))
    n_full = min(B, d.ctx.real.class_counts()[4])
    sizes = [n_pool, 1 * f2, n_full, 2 * f2]
    assert calls[0][1] == sum(sizes)
    xp, xs, xf, xu = calls[0][2].split(sizes)
    params = detached_params(net)

    def dist(xr, xsyn):
        yr = torch.full((1, xr.shape[0]), 4)
        ys = torch.full((1, xsyn.shape[0]), 4)
        return batched_gradient_distance(class_gradients(net, params, xr[None], yr),
                                         class_gradients(net, params, xsyn[None], ys), d.cfg.dis_metric)

    torch.testing.assert_close(loss, dist(xp, xs) + d.cfg.reg * dist(xf, xu))


def test_dsa_base_pairs_pool_full_batch_and_segments_with_the_same_seeds(compose_cfg, tmp_path, monkeypatch):
    from dfdistill.data.augment.class_draw import ClassDraw

    d = _edd(compose_cfg, tmp_path, "dsa")
    assert type(d).__name__ == "EDDOnDSA"
    _to_segment_1(d)
    draws = []
    apply = ClassDraw.apply

    def recording(draw, x):
        draws.append((draw.seed, len(draw), x.shape[1]))
        return apply(draw, x)

    monkeypatch.setattr(ClassDraw, "apply", recording)
    net = d.ctx.model_factory(3)
    d.filter_real(1); d.filtered = 1
    d.match_step(net, d.labels.view(10, 2), 2)
    C = d.num_classes
    assert len(draws) == 3 and all(n == C for _, n, _ in draws)  # pool, synthetic, full batch: one call each
    pool, syn, full = draws
    assert syn[2] == 2  # the whole class set: segment and union slices
    assert pool[0] == syn[0] == full[0]


class _RecordingSelector:
    def __init__(self):
        self.rows = []

    def draw(self, fresh):  # no lazy hold: the method's own draw
        return fresh()

    def begin_step(self, step):
        pass

    def forget(self):
        pass

    def weights(self, xr, yr, rows, w, objective):
        self.rows.append((rows.clone(), yr.clone()))
        return torch.ones(rows.shape) if w is None else w


@pytest.mark.parametrize("base,extra", [("idc", []), ("dsa", []), ("dsa", ["backbone=convnet_bn"])])
def test_selector_gets_pool_rows_of_ctx_real(compose_cfg, tmp_path, base, extra):
    """After a filter pass the selector receives rows of ctx.real that are active and of the batch's class
    (before, pool-local positions went into the selector's full-size per-row state)."""
    sel = _RecordingSelector()
    d = _edd(compose_cfg, tmp_path, base, [*extra, "method.filter_epochs=30", "method.discard=1.0"], adaptive=sel)
    _to_segment_1(d)
    sel.rows.clear()
    d.step(2)
    assert d.filtered == 1 and not bool(d.active.all()) and sel.rows
    labels = d.ctx.real.labels
    for rows, yr in sel.rows:
        assert torch.equal(labels[rows], yr) and bool(d.active[rows].all())


@pytest.mark.slow  # four EDD setups (~6 CPU-s); DC's vmapped = loop equality stays fast (tests/unit/methods/test_chunking.py)
def test_fast_loop_and_batchnorm_keep_pool_and_regulariser(compose_cfg, tmp_path):
    """DSA base: the vmapped and the loop formulation give the same loss (pool + regulariser, one path);
    with a BatchNorm backbone the regulariser still counts."""
    losses = {}
    for name, extra in {"vmap": ["method.fast=true", "method.vmap_on_cpu=true"], "loop": ["method.fast=false"],
                        "bn": ["backbone=convnet_bn"], "bn_noreg": ["backbone=convnet_bn", "method.reg=0"]}.items():
        d = _edd(compose_cfg, tmp_path / name, "dsa", extra)
        _to_segment_1(d)
        d.filter_real(1); d.filtered = 1
        net = d.ctx.model_factory(7)
        losses[name] = float(d.match_step(net, d.labels.view(10, 2), 2)[0])
    assert abs(losses["vmap"] - losses["loop"]) < 1e-4 * abs(losses["loop"])
    assert losses["bn"] > losses["bn_noreg"] * 1.01


@pytest.mark.slow  # three IDC-based runs (~9 CPU-s); exact resume stays fast (test_pipeline.py, IDM, RFAD)
def test_resume_after_kill_is_exact_across_a_filter_pass(compose_cfg, tmp_path, monkeypatch):
    from dfdistill.methods.idc import IDC
    from dfdistill.run.pipeline import run

    over = [*SMOKE, *BASES["idc"], "stage=distill"]
    run(compose_cfg(over, tmp_path / "straight"))
    step = IDC.step

    def dies_at_3(self, it):
        if it == 3:
            raise KeyboardInterrupt
        return step(self, it)

    monkeypatch.setattr(IDC, "step", dies_at_3)
    with pytest.raises(KeyboardInterrupt):  # force: distil here, not reuse the straight run's finished set
        run(compose_cfg([*over, "force=true"], tmp_path / "killed"))
    monkeypatch.setattr(IDC, "step", step)
    run(compose_cfg(over, tmp_path / "killed"))
    a = torch.load(tmp_path / "straight" / "synthetic.pt")["images"]
    b = torch.load(tmp_path / "killed" / "synthetic.pt")["images"]
    assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("over", [
    ["method=edd", "eval=idc", "ipc=2", "method.filter_epochs=2"],
    ["method=edd_dsa", "ipc=2", "method.filter_epochs=2"],
    ["method=dfcolearn", "ipc=1"],
    ["method=dc", "ipc=1", "pruning=loss"],
    ["method=dm", "ipc=1", "pruning=loss"],
    ["method=dc", "ipc=1", "pruning=ite"],
    ["method=dm", "ipc=1", "pruning=ite"],
    ["method=dc", "ipc=1", "pruning=bilp"],
    ["method=dm", "ipc=1", "pruning=bilp"],
    ["method=edd", "eval=idc", "ipc=2", "method.filter_epochs=2", "pruning=bilp"],
])
def test_smoke_pipelines(compose_cfg, over):
    from dfdistill.run import pipeline

    rec = pipeline.run(compose_cfg(["profile=smoke", "dataset=digits", "eval.compare_random=false", *over]))
    assert 0.0 <= rec["acc_mean"] <= 1.0


@pytest.mark.slow
def test_edd_resume_keeps_segment_state(compose_cfg, tmp_path):
    """Run 2 of 3 iterations, then resume: the filter pass is not repeated and state is restored."""
    from dfdistill.run import pipeline
    from dfdistill.core.artifacts import load_tensor_file

    over = ["profile=smoke", "method=edd", "ipc=2", "method.filter_epochs=30", "method.discard=1.0",
            "eval.compare_random=false", "stage=distill"]
    out = tmp_path / "edd"
    pipeline.run(compose_cfg(over + ["method.iterations=3"], out))
    ck = load_tensor_file(out / "checkpoint.pt")
    assert ck["distiller"]["edd_filtered"] == 1 and not bool(ck["distiller"]["edd_active"].all())
