"""The cost and memory model (dfdistill/sweeps/model.py, passes.py): counts, fit, Table 7 cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfdistill.sweeps.model import device, devices, estimate
from dfdistill.sweeps.passes import pass_cost
from dfdistill.sweeps.plan import Job, mark_done


def resolved(overrides: list[str]):
    job = Job(overrides, Path("/tmp/dfdistill-cost-model-test"))
    mark_done(job)
    assert job.error is None, job.error
    return job.resolved


def test_forward_flops_are_the_convolutions_of_convnet3() -> None:
    """ConvNet-3, width 128, 32 px, 3 channels: 2 x Cin x 9 x Cout x H x W per conv (+ the classifier)."""
    c = pass_cost("convnet", (("depth", 3), ("width", 128)), 3, 10, 32)
    convs = 2 * 9 * (3 * 128 * 32 * 32 + 128 * 128 * 16 * 16 + 128 * 128 * 8 * 8)
    fc = 2 * 128 * 4 * 4 * 10
    assert c.flops["forward"] == pytest.approx(convs + fc, rel=1e-6)
    assert c.flops["forward"] < c.flops["backward"] < c.flops["double"]
    assert c.params == 320010


def test_devices_carry_their_source_and_one_efficiency() -> None:
    for name in ("a100-80gb", "a100-40gb", "h100", "rtx4090", "cpu"):
        d = device(name)
        assert d.source and 0 < d.efficiency <= 1 and d.memory_gb > 0
    assert devices()["a100-80gb"].memory_gb == 80


def test_mtt_with_cifar_defaults_on_imagenet_does_not_fit_and_says_why() -> None:
    """The unrolled student graph of all 1,000 images x 30 steps cannot be split by class."""
    cfg = resolved(["+exp=bilp_tab7", "profile=full", "method=mtt", "ipc=1", "pruning=bilp",
                    "method.recipe=none", "method.syn_steps=30", "method.batch_syn=null"])
    est = estimate(cfg, device("a100-80gb"))
    assert not est.fits and "double pass of 30000 rows" in est.why


@pytest.mark.slow
def test_every_table7_cell_fits_an_80gb_gpu() -> None:
    from dfdistill.sweeps.cli import main

    out = main(["bilp_tab7", "--profile", "full", "--plan", "--sweep-dir", "/tmp/dfdistill-tab7-plan"])
    jobs = out["jobs"]
    assert out["totals"]["no_fit"] == 0
    cells = {(j.resolved.method.name, int(j.resolved.ipc), j.resolved.pruning.name) for j in jobs}
    assert ("mtt", 1, "none") not in cells and ("mtt", 1, "bilp") in cells  # the paper's "-": never run
    assert {("dc", 1, "none"), ("dm", 1, "bilp"), ("dm", 10, "none"), ("dm", 50, "bilp")} <= cells
    mtt = next(j.resolved for j in jobs if j.resolved.method.name == "mtt")
    m = mtt.method
    assert (m.syn_steps, m.expert_epochs, m.max_start_epoch, m.lr_img, m.batch_syn, m.num_experts) == (10, 3, 10, 10000, 100, 50)
    assert mtt.backbone.name == "convnet_d4" and mtt.dataset.image_size == 64


def test_split_passes_are_planned_at_the_budget_not_in_full() -> None:
    """DM on ImageNet-1K: 1,000 classes x 256 real rows in one pass would be ~1 TB; DM splits by class."""
    cfg = resolved(["+exp=bilp_tab7", "profile=full", "method=dm", "ipc=1", "pruning=none"])
    est = estimate(cfg, device("a100-80gb"))
    assert est.fits and est.peak_bytes < 80e9
    small = estimate(cfg, device("rtx4090"))
    assert small.peak_bytes < est.peak_bytes  # the budget follows the device


def test_unknown_gpu_is_a_one_line_error(capsys) -> None:
    from dfdistill.sweeps.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bilp_tab4", "--plan", "--gpu", "v100"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown --gpu 'v100'") and "a100-80gb" in err[0]


def test_table7_training_time_leaves_out_the_scoring() -> None:
    from dfdistill.reporting import cells as C

    rec = {"stage_seconds": {"data": 5.0, "pruning": 3600.0, "prepare": 7200.0, "distill": 3600.0, "eval": 99.0}}
    assert C.training_hours([rec], C.LARGE_SCALE_STAGES).mean == pytest.approx(3.0)
    assert C.training_hours([rec]).mean == pytest.approx(4.0)  # Table 6 / speed-ups keep it


def test_a_scores_only_job_costs_its_scoring_alone() -> None:
    """BiLP Fig. 4 runs stage=scores: no distillation and no evaluation is planned for it."""
    cfg = resolved(["method=dm", "dataset=cifar10", "ipc=1", "pruning=loss", "stage=scores", "profile=full"])
    est = estimate(cfg, device("a100-80gb"))
    assert set(est.stages) == {"pruning"} and est.stages["pruning"] > 0


# ------------------------------------------------------------------------------------------------ #
# the model counts what the real code runs (ops of a real run, counted by a dispatch mode)
# ------------------------------------------------------------------------------------------------ #
SMOKE = ["dataset=digits", "profile=smoke", "logger=none", "progress=false", "compile=off", "device=cpu",
         "eval.num_eval=1", "eval.epochs=3"]


def real_stage_ops(overrides: list[str], tmp_path: Path, monkeypatch) -> dict[str, int]:
    """Aten ops each pipeline stage dispatches in a real run of `overrides` (fresh cache)."""
    from contextlib import contextmanager

    from omegaconf import open_dict

    from dfdistill.engine import runtime
    from dfdistill.run.pipeline import run
    from dfdistill.sweeps.passes import _Ops
    from dfdistill.sweeps.plan import job_config

    counter, stage, counts = _Ops(), ["other"], {}
    timer = runtime.StageTimer.__call__

    @contextmanager
    def timed(self, name):
        before, outer = counter.n, stage[0]
        counts[outer] = counts.get(outer, 0) + before
        stage[0] = name
        try:
            with timer(self, name):
                yield
        finally:
            counts[name] = counts.get(name, 0) + counter.n - before
            counter.n, stage[0] = before, outer
            counts[outer] -= before

    monkeypatch.setattr(runtime.StageTimer, "__call__", timed)
    cfg = job_config(Job(overrides, tmp_path / "run"))
    with open_dict(cfg):
        cfg.cache_dir = str(tmp_path / "cache")
    with counter:
        run(cfg)
    return counts


def model_stage_ops(overrides: list[str]) -> dict[str, float]:
    from dfdistill.sweeps.model import job_work

    out: dict[str, float] = {}
    for w in job_work(resolved(overrides)):
        out[w.stage] = out.get(w.stage, 0.0) + w.calls * w.net.ops[w.kind]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["method=dm", "ipc=1", "method.iterations=4", "stage=distill"],  # was 1/4: augmentation and fresh nets uncounted
    ["method=dc", "ipc=1", "method.iterations=2", "stage=distill"],  # was 1.6x: a made-up distance in the double pass
    ["method=dsa", "ipc=1", "method.iterations=2", "stage=distill"],
])
def test_modelled_distillation_ops_are_the_ops_the_real_step_runs(extra, tmp_path, monkeypatch) -> None:
    ov = SMOKE + extra
    real, model = real_stage_ops(ov, tmp_path, monkeypatch)["distill"], model_stage_ops(ov)["distill"]
    assert model == pytest.approx(real, rel=0.15), (model, real)


@pytest.mark.slow
def test_modelled_evaluation_ops_count_its_augmentation_epochs_and_networks(tmp_path, monkeypatch) -> None:
    """The whole split evaluated under DSA: one augmentation call per step, DC's Epoch + 1 epochs, a
    fresh network per model (was: 0.7x of the real ops)."""
    ov = SMOKE + ["method=whole", "ipc=1", "eval.compare_random=false"]
    real, model = real_stage_ops(ov, tmp_path, monkeypatch)["eval"], model_stage_ops(ov)["eval"]
    assert model == pytest.approx(real, rel=0.15), (model, real)


def test_rfad_nn_evaluation_rows_are_its_steps_batches_validation_and_centring() -> None:
    """RFAD-NN trains `eval.epochs` *steps* of one batch (not epochs over the set), runs the frozen init
    net on each batch (centring) and the validation subset through both nets every nn_valid_every steps."""
    from dfdistill.sweeps.model import job_work

    def rows(extra: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in job_work(resolved(SMOKE + ["method=rfad", "ipc=10", "eval.compare_random=false"] + extra)):
            if w.stage == "eval":
                out[w.kind] = out.get(w.kind, 0.0) + w.rows
        return out

    r = resolved(SMOKE + ["method=rfad", "ipc=10", "eval.epochs=250", "eval.batch_size=7"])
    valid, n_models = r.method.valid_per_class * r.dataset.num_classes, r.eval.num_eval
    a = rows(["eval.epochs=250", "eval.batch_size=7"])
    assert a["backward"] == n_models * 250 * 7  # 100 synthetic rows, 7 a step
    checks = 250 // r.method.nn_valid_every + 1
    assert a["forward"] >= n_models * (250 * 7 + checks * 2 * valid)
    b = rows(["eval.epochs=250", "eval.batch_size=7", "method.nn_centering=false"])
    assert b["forward"] < a["forward"] - n_models * 250 * 7 + 1  # no init net: no centring forward


def test_time_counts_the_memory_traffic_of_narrow_networks() -> None:
    """At width 8 on 16 px, normalisation/activation/pooling bytes cost more than the convolutions'
    FLOPs on the calibrated CPU: a model without the bytes term under-predicted such runs ~3x."""
    from dfdistill.sweeps.passes import pass_cost

    cpu, c = device("cpu"), pass_cost("convnet", (("depth", 3), ("width", 8)), 1, 10, 16)
    assert cpu.mem_gbps > 0 and all(device(g).mem_gbps > 0 for g in ("a100-80gb", "a100-40gb", "h100", "rtx4090"))
    rows = 256
    flops_s = rows * c.flops["backward"] / cpu.flops_per_s
    bytes_s = rows * c.bytes["backward"] / cpu.bytes_per_s
    assert bytes_s > flops_s
    assert cpu.seconds(rows * c.flops["backward"], rows * c.bytes["backward"], c.ops["backward"]) == pytest.approx(
        flops_s + bytes_s + c.ops["backward"] * cpu.op_us * 1e-6)


def test_idc_trains_its_network_between_matching_steps_only() -> None:
    """IDC's network trains after every matching step but the last: with one step it never trains."""
    from dfdistill.sweeps.model import job_work

    base = ["method=idc", "ipc=1", "method.iterations=2", "stage=distill"]
    one = [w for w in job_work(resolved(SMOKE + base + ["method.match_steps=1"])) if w.kind == "backward" and w.call_rows == 64]
    three = [w for w in job_work(resolved(SMOKE + base + ["method.match_steps=3"])) if w.kind == "backward" and w.call_rows == 64]
    n_data = resolved(SMOKE + base).method.n_data  # rows drawn with replacement, in batches of 64
    assert not one and sum(w.calls for w in three) == 2 * 2 * -(-n_data // 64)


def test_rfad_distils_with_its_own_random_feature_nets_not_the_backbone() -> None:
    """RFAD's loop runs `n_models` fresh ConvNets of `feature_width` (256 at full scale) per iteration; the
    backbone (RFAD-NN's width-1024 evaluation net) must not price it: that once charged RFAD 14x its FLOPs."""
    from dfdistill.sweeps.model import job_work

    def distill_flops(extra: list[str]) -> float:
        work = job_work(resolved(SMOKE + ["method=rfad", "ipc=1", "method.iterations=40", "stage=distill"] + extra))
        return sum(w.rows * w.net.flops.get(w.kind, 0.0) for w in work if w.stage == "distill")

    base = distill_flops([])
    assert distill_flops(["backbone.width=64"]) == base  # the evaluation net's width changes nothing
    narrower = distill_flops(["method.feature_width=4"])
    assert narrower < base / 1.5  # the feature nets' width is what the loop pays for
    fewer = distill_flops(["method.n_models=1"])
    assert fewer < base  # and their number
