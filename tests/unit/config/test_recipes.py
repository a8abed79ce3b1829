"""Per-cell paper recipes: each golden cell resolves to its source's values; typed values win.

The expected values below are copied by hand from the sources (reference/methods.md: the MTT
authors' table via DC-BENCH §6.2, the TESLA README commands §7, IDC reproduce.py §8.2, DC's
get_loops / get_daparam §3 + §1.4, the DM README §5, BiLP §5.4), not read from the recipe files, so a
wrong row fails here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from dfdistill.config.resolve import resolve_config
from dfdistill.core.errors import ConfigError
from dfdistill.recipes import load_recipes
from conftest import ROOT

MTT = ("method.syn_steps", "method.expert_epochs", "method.max_start_epoch", "method.lr_img", "method.lr_lr",
       "method.syn_lr_init", "method.batch_syn", "dataset.zca")

GOLDEN = [
    # (overrides, {dotted key: expected})
    (["method=mtt", "dataset=cifar10", "ipc=1"], dict(zip(MTT, (50, 2, 2, 100, 1e-7, 0.01, None, True)))),
    (["method=mtt", "dataset=cifar10", "ipc=10"], dict(zip(MTT, (30, 2, 20, 100, 1e-5, 0.001, None, True)))),
    (["method=mtt", "dataset=cifar10", "ipc=50"], dict(zip(MTT, (30, 2, 40, 1000, 1e-5, 0.001, None, False)))),
    (["method=mtt", "dataset=cifar100", "ipc=1"], dict(zip(MTT, (20, 3, 20, 1000, 1e-5, 0.01, None, True)))),
    (["method=mtt", "dataset=cifar100", "ipc=50"], dict(zip(MTT, (80, 2, 40, 1000, 1e-5, 0.01, 125, True)))),
    (["method=mtt", "dataset=tinyimagenet", "ipc=10"], dict(zip(MTT, (20, 2, 40, 10000, 1e-4, 0.01, 200, False)))),
    (["method=mtt", "dataset=tinyimagenet", "ipc=50"],
     {**dict(zip(MTT, (20, 2, 40, 10000, 1e-4, 0.01, 300, False))), "backbone.name": "convnet_d4", "backbone.depth": 4}),
    (["method=tesla", "dataset=imagenet1k", "ipc=1"],
     {"method.syn_steps": 10, "method.expert_epochs": 3, "method.max_start_epoch": 10, "method.lr_img": 10000,
      "method.lr_lr": 1e-4, "method.syn_lr_init": 0.01, "method.batch_syn": 100, "method.soft_label": True,
      "method.num_experts": 50, "backbone.name": "convnet_d4", "method.exact": False, "eval.num_eval": 3}),
    (["method=tesla", "dataset=cifar10", "ipc=1"],
     {"method.syn_steps": 50, "method.max_start_epoch": 5, "method.lr_img": 1000, "method.lr_lr": 1e-7,
      "dataset.zca": False, "method.exact": False}),
    (["method=tesla", "dataset=cifar100", "ipc=50"],
     {"method.syn_steps": 80, "method.max_start_epoch": 40, "method.batch_syn": 125, "dataset.zca": True}),
    (["method=idc", "dataset=cifar10", "ipc=10"],
     {"method.factor": 2, "method.dis_metric": "idc_mse", "method.lr_img": 5e-3, "method.n_data": 2000,
      "method.match_steps": 100, "method.iterations": 2000, "method.batch_real": 64, "eval.name": "idc",
      "eval.batch_size": 64, "eval.epochs": 1000, "eval.schedule": "multistep", "eval.cutmix_prob": 0.5}),
    (["method=idc", "dataset=mnist", "ipc=1"],
     {"method.dis_metric": "idc_l1", "method.lr_img": 1e-4, "method.n_data": 500,
      "eval.aug_strategy": "color_crop_scale_rotate", "eval.name": "idc"}),
    (["method=dc", "dataset=mnist", "ipc=10"],
     {"method.outer_loop": 10, "method.inner_loop": 50, "eval.aug": "dc", "eval.aug_strategy": None,  # per eval net
      "eval.epochs": 1000, "method.init": "noise"}),
    (["method=dc", "dataset=cifar10", "ipc=1"],
     {"method.outer_loop": 1, "method.inner_loop": 1, "method.eval_aug": "none", "eval.num_eval": 20,
      "method.lr_img": 0.1, "method.init": "noise"}),
    (["method=dsa", "dataset=cifar100", "ipc=50"],
     {"method.outer_loop": 50, "method.inner_loop": 10, "eval.aug": "dsa", "eval.epochs": 1000, "method.init": "real"}),
    (["method=dm", "dataset=cifar10", "ipc=10"], {"method.lr_img": 1.0, "method.iterations": 20000, "eval.num_eval": 5}),
    (["method=dm", "dataset=cifar10", "ipc=100"], {"method.lr_img": 10.0}),
    (["method=random", "dataset=cifar10", "ipc=10"], {"eval.aug": "none", "eval.epochs": 300}),
    (["method=dc", "dataset=tinyimagenet", "ipc=1"], {"backbone.name": "convnet_d4", "method.outer_loop": 1}),
    (["method=edd", "dataset=mnist", "ipc=10"],  # EDD on IDC takes IDC's per-dataset rows
     {"method.dis_metric": "idc_l1", "method.lr_img": 1e-4, "method.n_data": 500, "eval.name": "idc"}),
    (["method=edd_dsa", "dataset=cifar10", "ipc=10"], {"method.outer_loop": 10, "method.inner_loop": 50,
                                                      "eval.name": "default"}),
    (["method=dm", "dataset=cifar10", "ipc=1", "pruning=bilp"],
     {"pruning.trials": 5, "pruning.epochs": [-1], "pruning.train_epochs": 100}),
]


@pytest.mark.parametrize("overrides,expected", GOLDEN, ids=[" ".join(o) for o, _ in GOLDEN])
def test_golden_cells_resolve_to_their_source(resolved, overrides, expected):
    cfg = resolved([*overrides, "profile=full"])
    for key, want in expected.items():
        got = OmegaConf.select(cfg, key)
        got = list(got) if OmegaConf.is_list(got) else got
        assert got == (pytest.approx(want) if isinstance(want, float) else want), key


def test_cifar10_jpeg_uses_the_cifar10_rows(resolved):
    cfg = resolved(["method=mtt", "dataset=cifar10_jpeg", "ipc=1", "profile=full"])
    assert cfg.method.syn_steps == 50 and cfg.dataset.zca is True


def test_typed_values_win_over_recipe_and_profile(resolved):
    """The issue's example: under profile=smoke these ran as 3/8/1/1 while the run dir showed the typed values."""
    cfg = resolved(["method=mtt", "dataset=cifar10", "ipc=1", "profile=smoke", "method.syn_steps=7",
                    "method.iterations=50", "backbone.width=16", "eval.num_eval=3",
                                      "checkpoint_every=10", "dataset.zca=false"])
    assert (cfg.method.syn_steps, cfg.method.iterations, cfg.backbone.width, cfg.eval.num_eval,
            cfg.checkpoint_every, cfg.dataset.zca) == (7, 50, 16, 3, 10, False)
    assert cfg.method.max_start_epoch == 2  # untyped: the recipe still fills it in
    assert "method.syn_steps" in cfg.provenance.recipe.method.kept_typed


def test_profile_scales_recipe_values_that_were_not_typed(resolved):
    cfg = resolved(["method=dm", "dataset=cifar10", "ipc=10", "profile=cpu"])
    assert cfg.method.iterations == 100  # recipe 20000, capped by profile=cpu
    assert cfg.provenance.profile.scaled["method.iterations"] == [20000, 100]


def test_cell_without_row_runs_defaults_and_says_so(compose_cfg, resolved, caplog):
    caplog.set_level("INFO", logger="dfdistill")
    cfg = resolved(["method=tesla", "dataset=svhn", "ipc=10", "profile=full"])  # no TESLA/MTT row
    assert cfg.method.exact is False and cfg.provenance.recipe.method.cell is False  # method-wide rows apply
    cfg = resolve_config(compose_cfg(["method=mtt", "dataset=digits", "ipc=1", "profile=full"]))  # logs its note
    info = cfg.provenance.recipe.method
    assert info.cell is False and info.rows == ["mtt#0", "mtt#1"]  # method-wide rows only
    assert cfg.method.syn_steps == 30  # the YAML default, no cell row
    assert any("no paper row for method=mtt dataset=digits ipc=1" in m for m in caplog.messages)
    cfg = resolved(["method=dm", "dataset=digits", "pruning=random", "profile=full"])
    assert cfg.provenance.recipe.pruning.recipe == "none"


@pytest.mark.parametrize("dataset,ipc", [("cifar10", 10), ("cifar100", 1), ("cifar100", 10), ("tinyimagenet", 50)])
def test_tesla_cell_without_its_row_takes_mtts_row(resolved, dataset, ipc):
    """TESLA trains on MTT's experts with MTT's objective: a cell TESLA's README has no command for runs
    MTT's row for that cell (not TESLA's CIFAR-10 IPC 1 command), on top of TESLA's method-wide rows,
    and the provenance names the borrowed row and says why."""
    tesla = resolved(["method=tesla", f"dataset={dataset}", f"ipc={ipc}", "profile=full"])
    mtt = resolved(["method=mtt", f"dataset={dataset}", f"ipc={ipc}", "profile=full"])
    for key in ("syn_steps", "expert_epochs", "max_start_epoch", "lr_img", "lr_lr", "syn_lr_init", "batch_syn"):
        assert tesla.method[key] == mtt.method[key], key
    assert tesla.dataset.zca == mtt.dataset.zca and tesla.backbone.name == mtt.backbone.name
    info = tesla.provenance.recipe.method
    assert info.cell is True and any(r.startswith("mtt#") for r in info.rows) and "mtt's row" in info.note
    assert tesla.method.exact is False and tesla.method.iterations == 10000  # TESLA's own method-wide rows
    own = resolved(["method=tesla", "dataset=cifar10", "ipc=1", "profile=full"])
    assert own.method.max_start_epoch == 5 and not any(r.startswith("mtt#") for r in own.provenance.recipe.method.rows)


def test_recipe_none_keeps_method_defaults(resolved):
    cfg = resolved(["method=mtt", "dataset=cifar10", "ipc=1", "method.recipe=none", "profile=full"])
    assert cfg.method.syn_steps == 30 and cfg.provenance.recipe.method.recipe == "none"
    with pytest.raises(ConfigError, match="outer_loop and method.inner_loop are unset"):
        resolved(["method=dc", "method.recipe=none", "profile=full"])


def test_ipc_outside_the_loop_table_takes_the_nearest_row(resolved):
    cfg = resolved(["method=dc", "ipc=12", "profile=full"])
    assert (cfg.method.outer_loop, cfg.method.inner_loop) == (10, 50)
    assert "nearest (ipc=10)" in cfg.provenance.recipe.method.note


def test_typed_eval_choice_wins_over_the_method_protocol(resolved):
    assert resolved(["method=idc", "profile=full"]).eval.name == "idc"
    cfg = resolved(["method=idc", "eval=default", "profile=full"])
    assert cfg.eval.name == "default"
    cfg = resolved(["method=idc", "eval.num_eval=2", "profile=full"])
    assert cfg.eval.name == "idc" and cfg.eval.num_eval == 2  # a typed key survives the protocol swap


def test_every_recipe_row_has_a_source_and_known_keys():
    files = load_recipes()
    assert {"mtt", "tesla", "idc", "dc", "dsa", "dm", "loops", "coreset", "pruning_loss"} <= {f.name for f in files}
    for f in files:
        for row in f.rows:
            assert len(row.source) > 20, f"{f.name}#{row.index} cites no source"


def test_print_config_prints_the_effective_config():
    out = subprocess.run([sys.executable, "run.py", "method=mtt", "dataset=cifar10", "ipc=1", "profile=smoke",
                          "method.syn_steps=9", "print_config=true", "logger=none"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.method.syn_steps == 9 and cfg.method.max_start_epoch == 2 and cfg.method.iterations == 3
    assert cfg.provenance.profile.name == "smoke"


def test_a_swapped_group_keeps_its_schema_defaults(resolved):
    """conf/eval/idc.yaml lists no test_batch_size: the swapped-in node still has the schema's default."""
    from dfdistill.schema.groups import EvalConfig

    cfg = resolved(["method=idc", "profile=full"])
    assert cfg.eval.name == "idc" and cfg.eval.test_batch_size == EvalConfig().test_batch_size
    cfg = resolved(["method=mtt", "dataset=tinyimagenet", "ipc=50", "profile=full"])
    assert cfg.backbone.name == "convnet_d4" and cfg.backbone.pool == "avgpooling" and "_target_" in cfg.backbone
