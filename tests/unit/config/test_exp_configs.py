"""Every conf/exp/*.yaml composes and validates with every value of every sweep axis; table exps pin
no evaluation protocol; Tiny-ImageNet runs the 4-block ConvNet; the tables' extra job sets exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.config.resolve import resolve_config
from dfdistill.sweeps import jobsets
from dfdistill.sweeps.plan import plan
from dfdistill.reporting.layouts import SPECS

from conftest import ROOT
CONF = ROOT / "conf"
EXPS = sorted(p.stem for p in (CONF / "exp").glob("*.yaml"))
TABLE_EXPS = [e for e in EXPS if e in SPECS]
ARRIVING: dict[str, list[str]] = {}  # options another track is adding (none now)


def _compose(overrides: list[str], hydra_cfg: bool = False):
    return compose_run_config(overrides, return_hydra_config=hydra_cfg)


def _axis_values(key: str, value: str) -> list[str]:
    ov = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
    return list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]


def _missing(group: str, option: str) -> bool:
    return (CONF / group).is_dir() and not (CONF / group / f"{option}.yaml").exists()


def _exp_axes(exp: str) -> tuple[list[str], list[list[str]]]:
    """(the exp's base overrides, its sweep axes as override lists), checking the exp's header, hydra
    callbacks and that every option it selects or sweeps exists."""
    text = (CONF / "exp" / f"{exp}.yaml").read_text()
    assert text.startswith("# @package _global_"), f"{exp}.yaml must start with '# @package _global_'"
    bad = [f"{g}={o}" for g, o in re.findall(r"override /(\w+): (\w+)", text) if _missing(g, o)]
    assert not bad, f"{exp} selects options that do not exist: {bad}"
    base = [f"+exp={exp}", "profile=full", "logger=none"]  # the exp as written (profiles only scale)
    hcfg = _compose(base, hydra_cfg=True)
    params = {str(k): str(v) for k, v in (hcfg.hydra.sweeper.params or {}).items()}
    if exp in SPECS:  # our table exps: deterministic sweep dir + table callback + one GPU per job
        assert "${now" not in str(hcfg.hydra.sweep.dir) and exp in str(hcfg.hydra.sweep.dir)
        assert hcfg.hydra.callbacks.table._target_ == "dfdistill.entry.callbacks.TableCallback"
        assert hcfg.hydra.callbacks.gpu._target_ == "dfdistill.sweeps.gpus.GpuSlotCallback"
    axes: list[list[str]] = []
    for k, val in params.items():
        vals = _axis_values(k, val)
        vals = vals if (CONF / k).is_dir() else list(dict.fromkeys([vals[0], vals[-1]]))
        for v in vals:
            if _missing(k, v):
                assert v in ARRIVING.get(k, []), f"{exp}: axis {k} has an option that does not exist: {v}"
        vals = [v for v in vals if not _missing(k, v)]
        if vals:
            axes.append([f"{k}={v}" for v in vals])
    return base, axes


def _validates(overrides: list[str], out: Path) -> None:
    cfg = _compose(overrides)
    with open_dict(cfg):
        cfg.output_dir = str(out)
    resolve_config(cfg)


@pytest.mark.parametrize("exp", EXPS)
def test_exp_composes(exp: str, tmp_path: Path) -> None:
    """The exp as written composes and validates, and every option its axes name exists."""
    base, _ = _exp_axes(exp)
    _validates(base, tmp_path)


@pytest.mark.slow  # 1-6 s per exp: one composition per axis value (the planner validates every job before launching)
@pytest.mark.parametrize("exp", EXPS)
def test_every_axis_value_of_an_exp_composes(exp: str, tmp_path: Path) -> None:
    """Every value of every axis composes AND validates (schemas catch unknown keys). Axes are zipped
    (variant i takes value i of each axis, cycling), so every option is covered with as few
    compositions as the longest axis; value axes (ratios, seeds): extremes."""
    base, axes = _exp_axes(exp)
    n = max([len(a) for a in axes], default=0)
    for extra in [[a[i % len(a)] for a in axes] for i in range(n)]:
        _validates(base + extra, tmp_path)


@pytest.mark.parametrize("exp", TABLE_EXPS)
def test_table_exps_pin_no_evaluation_protocol(exp: str) -> None:
    """Each method's own protocol applies (IDC's for IDC): no `override /eval`, no protocol value."""
    node = OmegaConf.load(CONF / "exp" / f"{exp}.yaml")
    assert not [d for d in node.get("defaults", []) if "/eval" in str(d)]
    assert set(node.get("eval", {}) or {}) <= {"compare_random"}, f"{exp} pins eval values {dict(node.eval)}"


@pytest.mark.parametrize("exp", ["bilp_tab1", "bilp_tab2", "bilp_tab3", "bilp_fig2"])
def test_tinyimagenet_is_on_the_axis_with_the_4_block_convnet(exp: str, tmp_path: Path) -> None:
    params = _compose([f"+exp={exp}"], hydra_cfg=True).hydra.sweeper.params
    assert "tinyimagenet" in _axis_values("dataset", str(params.dataset))
    for ds, depth in (("tinyimagenet", 4), ("cifar10", 3)):
        cfg = _compose([f"+exp={exp}", f"dataset={ds}", "logger=none", "dataset.root=/x"])
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path)
        assert resolve_config(cfg).backbone.depth == depth


def test_convnet_depth_follows_the_input_size() -> None:
    from dfdistill.models import convnet_depth

    assert [convnet_depth(s) for s in (16, 28, 32, 64, 128)] == [3, 3, 3, 4, 5]


def _set_jobs(exp: str, overrides: list[str]):
    _, jobs = plan(exp, "smoke", overrides, Path("/tmp/unused"), adds=jobsets.extra_sets(exp, overrides), check=False)
    return [dict(o.lstrip("+").split("=", 1) for o in j.overrides) for j in jobs]


def test_table4_produces_bilp_idc_x3_full_dataset_and_ipc50_rows() -> None:
    jobs = _set_jobs("bilp_tab4", [])
    rows = {(j["method"], j.get("pruning"), j.get("method.factor"), j["ipc"]) for j in jobs}
    assert ("idc", "bilp", "3", "1") in rows and ("idc", "bilp", "3", "50") in rows  # BiLP+IDC (x3)
    assert ("dc", "bilp", None, "10") in rows and ("idc", "bilp", None, "10") in rows
    whole = [j for j in jobs if j["method"] == "whole"]
    assert len(whole) == 3 and {j["dataset"] for j in whole} == {"cifar10", "cifar100", "svhn"}
    assert not any(j["dataset"] == "cifar100" and j["ipc"] == "50" for j in jobs)  # not in the paper
    # the command line narrows the extra sets: a DC/DM IPC 1 slice keeps BiLP+DC only
    slice_ = _set_jobs("bilp_tab4", ["method=dc,dm", "ipc=1", "dataset=cifar10_jpeg"])
    assert {(j["method"], j.get("pruning")) for j in slice_} == {("dc", "none"), ("dm", "none"), ("dc", "bilp")}
    assert {j["dataset"] for j in slice_} == {"cifar10_jpeg"}


def test_narrowing_extra_job_sets() -> None:
    assert jobsets.narrow(["method=dc,idc", "pruning=bilp"], ["method=dc,dm"]) == ["method=dc", "pruning=bilp"]
    assert jobsets.narrow(["dataset=cifar10", "ipc=50"], ["ipc=1,10"]) is None
    assert jobsets.narrow(["dataset=cifar10,svhn", "ipc=50"], ["dataset=digits"]) == ["dataset=digits", "ipc=50"]


def test_table7_asks_for_random_real_and_dm_at_ipc_10_50(tmp_path: Path) -> None:
    jobs = _set_jobs("bilp_tab7", [])
    assert {(j["method"], j["ipc"]) for j in jobs} == {("dc", "1"), ("dm", "1"), ("mtt", "1"), ("dm", "10"), ("dm", "50")}
    assert {j["pruning"] for j in jobs if j["method"] == "mtt"} == {"bilp"}  # full-data MTT: "-" in the paper
    assert _compose(["+exp=bilp_tab7"]).eval.compare_random is True


def test_fig3_grid_is_the_papers_trials_by_epochs() -> None:
    params = _compose(["+exp=bilp_fig3"], hydra_cfg=True).hydra.sweeper.params
    assert _axis_values("t", str(params["pruning.trials"])) == ["1", "5", "10", "50"]
    assert _axis_values("e", str(params["pruning.epochs"])) == ["[1]", "[1-5]", "[1-10]", "[1-100]"]
    assert _axis_values("s", str(params["pruning.stratum"])) == [str(k) for k in range(1, 11)]


def test_make_help_lists_every_table_target() -> None:
    import subprocess

    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for exp in SPECS:
        if exp == "quickstart":
            assert "quickstart" in out
            continue
        paper, rest = exp.split("_", 1)
        target = f"table-{paper}-{rest[3:]}" if rest.startswith("tab") else (
            f"fig-{paper}" if rest == "figs" else  # a paper's figures drawn from one sweep (EDD Figs. 1-2)
            f"fig-{paper}-{rest[3:]}" if rest.startswith("fig") else f"table-{paper}-{rest}")
        assert target in out, f"make help does not list {target} (for conf/exp/{exp}.yaml)"


def test_make_plan_flag_reaches_run_table() -> None:
    import subprocess

    out = subprocess.run(["make", "-n", "table-bilp-4", "PLAN=1", "PROFILE=full"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "scripts/run_table.py" in out and "--plan" in out and "--profile full" in out


def test_quickstart_is_the_default_job() -> None:
    plain = _compose(["logger=none"])
    quick = _compose(["+exp=quickstart", "logger=none"])
    for key in ("ipc", "seed"):
        assert plain[key] == quick[key]
    for group in ("dataset", "method", "pruning"):
        assert plain[group].name == quick[group].name


def test_edd_tinyimagenet_claim_runs_on_the_idc_base(tmp_path: Path) -> None:
    cfg = _compose(["+exp=edd_tinyimagenet", "logger=none", "dataset.root=/x"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path)
    r = resolve_config(cfg)
    assert (r.method.name, r.method.base, r.ipc, r.dataset.name, r.backbone.depth) == ("edd", "idc", 50, "tinyimagenet", 4)


def test_fig3_epoch_ranges_survive_the_cpu_profile(tmp_path: Path) -> None:
    """Typed ranges run as typed (Fig. 3's grid); an untyped range is scaled like any read-out list."""
    from dfdistill.config.resolve import apply_profile
    from dfdistill.pruning.config import PruningConfig

    cfg = _compose(["+exp=bilp_fig3", "profile=cpu", "logger=none", "pruning.epochs=[1-5]", "pruning.trials=5",
                    "pruning.stratum=3"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path)
    r = resolve_config(cfg)
    assert list(r.pruning.epochs) == ["1-5"] and r.pruning.trials == 5
    assert PruningConfig(**{k: v for k, v in OmegaConf.to_container(r.pruning).items()}).readout_epochs() == [1, 2, 3, 4, 5]
    plain = OmegaConf.create({"profile": {"scoring_epochs": 2}, "method": {}, "eval": {}, "backbone": {}, "dataset": {},
                              "pruning": {"epochs": ["1-5"], "train_epochs": 5, "trials": 1}})
    apply_profile(plain)
    assert list(plain.pruning.epochs) == [1, 2] and plain.pruning.train_epochs == 2


@pytest.mark.parametrize("exp,extra", [("bilp_tab4", ["method=idc"]), ("bilp_tab5", []), ("bilp_tab6", []),
                                       ("bilp_tab4", ["method=idc", "pruning=bilp", "method.factor=3"])])
def test_idc_rows_evaluate_with_idcs_protocol(exp: str, extra: list[str], tmp_path: Path) -> None:
    """Issue 11 §2: IDC cells in the tables run IDC's evaluation protocol, not DC's."""
    cfg = _compose([f"+exp={exp}", "logger=none", *extra])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path)
    r = resolve_config(cfg)
    assert r.method.name == "idc" and r.eval.name == "idc"
    assert (r.eval.batch_size, r.eval.schedule, r.eval.aug) == (64, "multistep", "idc")
