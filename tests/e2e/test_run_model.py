"""The run model's promises (issue 20): one run dir per job, one sweep dir per set of values, nothing
written by print_config, Ctrl-C's own exit code, summaries that tell runs apart."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import ROOT

SMOKE = ["profile=smoke", "dataset=digits"]


def _entry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dfdistill_run_entry", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _output_dir(args: list[str], capsys) -> str:
    from dfdistill.entry.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(_entry(), [*args, "print_config=true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line.split(": ", 1)[1] for line in lines if line.startswith("output_dir:")][0]


def test_sweep_dir_does_not_depend_on_the_order_of_values():
    from dfdistill.core.rundir import sweep_name

    assert sweep_name(["method=dm,dc"]) == sweep_name(["method=dc,dm"]) == "method=dc,dm"
    assert sweep_name(["ipc=10,1,50", "method=dm"]) == "ipc=1,10,50,method=dm"  # numbers by value
    assert sweep_name(["eval.cross_arch=[mlp,lenet]"]) == "eval.cross_arch=_mlp,lenet_"  # a list value is one value


def test_print_config_writes_nothing_and_names_the_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = _output_dir([*SMOKE, "method=dc", "ipc=1"], capsys)
    assert out == str(tmp_path / "outputs/digits/dc-ipc1/dataset=digits,ipc=1,method=dc,profile=smoke")
    assert list(tmp_path.iterdir()) == []  # no run dir, no .hydra/, no run.log


def test_make_quickstart_is_the_plain_command_in_the_same_run_dir(tmp_path, monkeypatch, capsys):
    def make(profile: str) -> list[str]:
        return shlex.split(subprocess.run(["make", "-s", "-n", "quickstart", f"PROFILE={profile}"], cwd=ROOT,
                                          text=True, capture_output=True, check=True).stdout)[2:]

    assert make("cpu") == ["logger=none"]  # the default profile is not typed, as `python run.py` does not
    monkeypatch.chdir(tmp_path)
    assert _output_dir(make("smoke"), capsys) == _output_dir(["profile=smoke"], capsys)


def test_ctrl_c_exits_130_not_the_bad_input_code(tmp_path, monkeypatch, capsys):
    from dfdistill.run import pipeline
    from dfdistill.entry.cli import main as cli_main

    def interrupted(s):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_data", interrupted)
    monkeypatch.chdir(tmp_path)
    assert cli_main(_entry(), [*SMOKE, "logger=none", "progress=false", "method=dm", "ipc=1"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch logs the notice only without a CUDA runtime")
def test_no_cuda_runtime_notice_is_not_shown(tmp_path, monkeypatch, caplog):
    import dfdistill.core.log  # noqa: F401 - installs the filter
    from torch.utils import cpp_extension

    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert cpp_extension._find_cuda_home() == str(tmp_path)
        logging.getLogger("torch.utils.cpp_extension").warning("another notice")
    assert [r.getMessage() for r in caplog.records] == ["another notice"]


def test_summary_names_the_variant_and_prints_cross_arch_accuracies():
    from dfdistill.run.pipeline import format_summary

    rec = {"method": "dfcolearn", "ipc": 1, "dataset": "digits", "acc_mean": 0.5, "acc_std": 0.01, "n_eval": 2,
           "wall_seconds": 3.0, "output_dir": "/o",
           "config": {"method": {"name": "dfcolearn", "variant": "filter_only"}},
           "cross_arch": {"mlp": {"mean": 0.25, "std": 0.0}, "lenet": {"mean": 0.125, "std": 0.5}}}
    line = format_summary(rec)
    assert line.startswith("dfcolearn[filter_only] @ IPC 1 on digits: 50.00")
    assert "cross-arch: mlp 25.00 ± 0.00%, lenet 12.50 ± 50.00%" in line
    assert format_summary({**rec, "config": {"method": {"name": "dm"}}, "method": "dm", "cross_arch": {}}).startswith(
        "dm @ IPC 1")


def test_a_run_dir_name_with_equals_and_commas_is_a_valid_synthetic_value(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "outputs/digits/dm-ipc1/dataset=digits,ipc=1,method=dm,profile=smoke"
    run_dir.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for given in (str(run_dir), str(run_dir.relative_to(tmp_path))):
        capsys.readouterr()
        from dfdistill.entry.cli import main as cli_main

        assert cli_main(_entry(), [*SMOKE, "stage=eval", f"synthetic={given}", "print_config=true"]) == 0, \
            capsys.readouterr().err
        assert f"synthetic: {given}\n" in capsys.readouterr().out


@pytest.mark.slow  # a DC run and its evaluation (~8 CPU-s)
def test_stage_eval_takes_method_and_ipc_from_the_set(tmp_path, monkeypatch, capsys):
    """A DC set evaluated without method=/ipc=: DC's protocol, recorded as dc at the set's IPC -- the
    same evaluation (config_key, accuracies) as the DC run's own; given by its real run dir name."""
    import json

    from dfdistill.entry.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    assert cli_main(_entry(), [*SMOKE, "logger=none", "progress=false", "method=dc", "ipc=1"]) == 0
    src = next((tmp_path / "outputs/digits/dc-ipc1").iterdir())
    own = json.loads((src / "results.jsonl").read_text())
    capsys.readouterr()
    assert cli_main(_entry(), [*SMOKE, "logger=none", "progress=false", "stage=eval", f"synthetic={src}"]) == 0
    out = capsys.readouterr().out
    ev = json.loads(next((tmp_path / "outputs/eval").rglob("results.jsonl")).read_text())
    assert ev["config"]["method"]["name"] == "dc" and ev["method"] == "dc" and ev["ipc"] == 1
    assert ev["config_key"] == own["config_key"] and ev["accs"] == own["accs"]
    assert "ipc=10" not in out and "dc @ IPC 1" in out


def test_stage_eval_refuses_an_empty_set_and_a_one_class_set(compose_cfg, tmp_path):
    from dfdistill.core.errors import DataError
    from dfdistill.run.pipeline import run

    torch.save({"images": torch.zeros(0, 1, 16, 16), "labels": torch.zeros(0, dtype=torch.long)}, tmp_path / "e.pt")
    torch.save({"images": torch.zeros(4, 1, 16, 16), "labels": torch.full((4,), 3)}, tmp_path / "one.pt")
    with pytest.raises(DataError, match="holds no images"):
        run(compose_cfg([*SMOKE, "stage=eval", f"synthetic={tmp_path / 'e.pt'}"]))
    with pytest.raises(DataError, match="all 4 labels are class 3"):
        run(compose_cfg([*SMOKE, "stage=eval", f"synthetic={tmp_path / 'one.pt'}"]))
    assert not (tmp_path / "run").exists()  # refused before any work


def test_stage_eval_says_when_the_ipc_is_not_uniform(tmp_path, capsys):
    from dfdistill.run.eval_set import check_set
    from dfdistill.run.synthetic import load_synthetic

    torch.save({"images": torch.zeros(5, 1, 16, 16), "labels": torch.tensor([0, 0, 0, 1, 2])}, tmp_path / "s.pt")
    capsys.readouterr()
    check_set(load_synthetic(tmp_path / "s.pt"))
    assert "not uniform (1 to 3 images per class over 3 classes); recording ipc=1" in capsys.readouterr().out


def test_the_sets_method_and_ipc_apply_unless_typed(compose_cfg):
    from dfdistill.config.resolve import resolve_config
    from dfdistill.run.eval_set import apply_set_metadata
    from dfdistill.run.synthetic import SyntheticSet

    syn = SyntheticSet(torch.zeros(10, 1, 16, 16), torch.arange(10), meta={"method": "dc", "ipc": 1})
    cfg = resolve_config(apply_set_metadata(compose_cfg([*SMOKE, "stage=eval", "synthetic=x"]), syn))
    assert cfg.method.name == "dc" and cfg.ipc == 1 and cfg.method.eval_aug == "none"  # DC's protocol, not dsa
    typed = apply_set_metadata(compose_cfg([*SMOKE, "stage=eval", "synthetic=x", "method=dm", "ipc=5"]), syn)
    assert typed.method.name == "dm" and typed.ipc == 1  # the method typed wins; the IPC is the set's


def test_zero_iterations_is_refused_for_an_evaluated_run(compose_cfg, tmp_path):
    from dfdistill.config.resolve import resolve_run
    from dfdistill.core.errors import ConfigError
    from dfdistill.run.pipeline import run
    from dfdistill.run.preflight import check_trains

    with pytest.raises(ConfigError, match="method.iterations is 0, so dm would report its untrained initial"):
        run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "method.iterations=0"]))
    assert not (tmp_path / "run" / "results.jsonl").exists()
    check_trains(resolve_run(compose_cfg([*SMOKE, "method=random", "ipc=1"])))  # a coreset has no iterations
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "method.iterations=0", "stage=distill"]))
    assert rec["stage"] == "distill" and rec["iterations"] == 0  # the initial set (scripts/make_figure.py)


def test_resume_refuses_another_distillation_and_is_never_ignored_silently(compose_cfg, tmp_path, capsys):
    from dfdistill.core.errors import ConfigError
    from dfdistill.run.pipeline import run

    src = tmp_path / "dm"
    run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "stage=distill"], src))
    with pytest.raises(ConfigError, match=r"resume=.* is another distillation: it differs in seed \(0 -> 5\), method.name \(dm -> dc\)"):
        run(compose_cfg([*SMOKE, "method=dc", "ipc=1", "seed=5", f"resume={src}"], tmp_path / "dc"))
    assert not (tmp_path / "dc" / "checkpoint.pt").exists()  # refused before any work
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "method.lr_img=0.5", "profile.iterations=4",
                           f"resume={src}", "stage=distill"], tmp_path / "lower"))  # the keys meant to change
    assert rec["continued_from"]["iteration"] == 3 and set(rec["continued_from"]["changed"]) == {
        "method.lr_img", "method.iterations", "profile.iterations"}
    capsys.readouterr()
    run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "stage=distill", f"resume={tmp_path / 'lower'}"], src))
    assert "resume=" in capsys.readouterr().out  # this dir's own checkpoint continues, and it says so


def test_another_evaluation_in_another_run_dir_does_not_distil_again(compose_cfg, tmp_path, monkeypatch, capsys):
    """`eval.num_eval=2` names another run dir (its overrides), but the same distillation: it is found
    by its identity and only evaluated -- a step of the method would fail the test."""
    from dfdistill.methods.dm import DM
    from dfdistill.run.pipeline import run

    first = run(compose_cfg([*SMOKE, "method=dm", "ipc=1"], tmp_path / "a"))
    shutil.rmtree(Path(os.environ["DFDISTILL_CACHE"]) / "distilled")  # as if finished before the index existed:
    capsys.readouterr()
    run(compose_cfg([*SMOKE, "method=dm", "ipc=1", f"resume={tmp_path / 'a'}"], tmp_path / "a"))  # stored: indexed
    assert f"resume={tmp_path / 'a'} not used" in capsys.readouterr().out  # never ignored silently
    monkeypatch.setattr(DM, "step", lambda self, it: pytest.fail("distilled again"))
    capsys.readouterr()
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "eval.num_eval=2", "eval.compare_random=false"],
                          tmp_path / "b"))
    assert rec["distilled_in"] == str(tmp_path / "a") and rec["resumed_from"] == rec["iterations"] == 3
    assert rec["n_eval"] == 2 and rec["accs"][0] == first["accs"][0] and rec["distill_key"] == first["distill_key"]
    assert "finished in" in capsys.readouterr().out
    a, b = (torch.load(tmp_path / d / "synthetic.pt")["images"] for d in "ab")
    assert torch.equal(a, b)
