"""The run model's promises (issue 20): one run dir per job, one sweep dir per set of values, nothing
written by print_config, Ctrl-C's own exit code, summaries that tell runs apart."""

from __future__ import annotations

import logging
import shlex
import subprocess

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
    from dfdistill.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(_entry(), [*args, "print_config=true"]) == 0
    return [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("output_dir:")][0]


def test_sweep_dir_does_not_depend_on_the_order_of_values():
    from dfdistill.rundir import sweep_name

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
    from dfdistill import pipeline
    from dfdistill.cli import main as cli_main

    def interrupted(s):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_data", interrupted)
    monkeypatch.chdir(tmp_path)
    assert cli_main(_entry(), [*SMOKE, "logger=none", "progress=false", "method=dm", "ipc=1"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch logs the notice only without a CUDA runtime")
def test_no_cuda_runtime_notice_is_not_shown(tmp_path, monkeypatch, caplog):
    import dfdistill.log  # noqa: F401 - installs the filter
    from torch.utils import cpp_extension

    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert cpp_extension._find_cuda_home() == str(tmp_path)
        logging.getLogger("torch.utils.cpp_extension").warning("another notice")
    assert [r.getMessage() for r in caplog.records] == ["another notice"]


def test_summary_names_the_variant_and_prints_cross_arch_accuracies():
    from dfdistill.pipeline import format_summary

    rec = {"method": "dfcolearn", "ipc": 1, "dataset": "digits", "acc_mean": 0.5, "acc_std": 0.01, "n_eval": 2,
           "wall_seconds": 3.0, "output_dir": "/o", "config": {"method": {"name": "dfcolearn", "variant": "filter_only"}},
           "cross_arch": {"mlp": {"mean": 0.25, "std": 0.0}, "lenet": {"mean": 0.125, "std": 0.5}}}
    line = format_summary(rec)
    assert line.startswith("dfcolearn[filter_only] @ IPC 1 on digits: 50.00")
    assert "cross-arch: mlp 25.00 ± 0.00%, lenet 12.50 ± 50.00%" in line
    assert format_summary({**rec, "config": {"method": {"name": "dm"}}, "method": "dm", "cross_arch": {}}).startswith(
        "dm @ IPC 1")
