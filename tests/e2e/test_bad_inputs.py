"""Every bad input a new user tried: exit code 2 and one `error: ...` line that names the fix.

All cases run the real entry point (run.py's @hydra.main through dfdistill.entry.cli.main) in-process on the
smoke profile; most fail before any data is loaded, the rest within a smoke run.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.entry.cli import main as cli_main
from dfdistill.core.rundir import run_lock
from conftest import ROOT

SMOKE = ["profile=smoke", "logger=none", "progress=false", "ipc=1"]


@pytest.fixture(scope="module")
def entry():
    spec = importlib.util.spec_from_file_location("dfdistill_run_entry", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture
def cli(entry, tmp_path, capsys):
    """cli(*overrides) -> (exit code, the error line); runs in tmp_path/run on the smoke profile."""

    def call(*args: str, run_dir: Path | None = None) -> tuple[int, str]:
        capsys.readouterr()
        rc = cli_main(entry, [*SMOKE, f"hydra.run.dir={run_dir or tmp_path / 'run'}", *args])
        err = capsys.readouterr().err
        errors = [l for l in err.splitlines() if l.startswith("error: ")]
        assert "Traceback" not in err, err
        assert len(errors) <= 1, err
        return rc, errors[0] if errors else err

    call.entry = entry
    return call


def _fails(cli, needle: str, *args: str, **kw) -> str:
    rc, line = cli(*args, **kw)
    assert rc == 2, line
    assert line.startswith("error: ") and needle in line, line
    return line


@pytest.mark.parametrize("args,needle", [
    (["methd=dc"], "did you mean method=dc?"),
    (["metod.lr_img=0.1"], "did you mean method.lr_img=0.1?"),
    (["method=base_dc"], "base_* entries are schemas"),
    (["dataset=base_dataset"], "choose from"),
    (["method=nope"], "choose from dc,"),
    (["method=dcc"], "did you mean method=dc?"),
    (["method.lr_imgg=1"], "did you mean method.lr_img?"),
    (["--shell-completion"], "install=bash"),
    (["-sc"], "install=bash"),
    (["eval.lr=-0.1"], "eval.lr must be > 0"),
    (["eval.epochs=0"], "eval.epochs must be >= 1"),
    (["eval.num_eval=0"], "eval.num_eval must be >= 1"),
    (["ipc=0"], "ipc must be a positive integer"),
    (["stage=bogus"], "stage must be all|experts|scores|distill|eval"),
    (["device=tpu"], "device must be auto|cpu|cuda"),
    (["pruning.ratio=0.5"], "use pruning=random or pruning=loss"),
    (["resume=/nonexistent/run"], "does not exist; give the run dir"),
    (["eval.cross_arch=[mlp,nope]"], "nope does not exist; choose from"),
    (["method=idc", "method.metric=mse"], "use method.dis_metric=mse"),
    (["eval.gamma=0.1"], "use eval.lr_decay=0.1"),
    (["stage=eval"], "add synthetic=<run dir or synthetic.pt>"),
    (["stage=eval", "synthetic=/nonexistent/synthetic.pt"], "does not exist"),
    (["method.iterations=lots"], "lots"),
    (["dataset=image_folder"], "dataset.root"),
    (["ipc=[1,2"], "cannot parse the override"),
    # types are checked before recipes and seeding read them (these were tracebacks)
    (["ipc=abc"], "ipc must be an integer, got 'abc'"),
    (["ipc="], "ipc must be an integer, got ''"),
    (["ipc=[1,2]"], "sweep it: -m ipc=1,2"),
    (["seed=-1"], "seed must be an integer in [0, 2**32 - 1], got -1"),
    (["ipc=1.5"], "ipc must be an integer, got '1.5'"),
    (["seed=x"], "seed must be an integer, got 'x'"),
    (["eval.num_eval=two"], "eval.num_eval must be an integer"),
    (["eval.cross_arch=mlp"], "type eval.cross_arch=[mlp]"),
    (["method.lr_img=nan"], "method.lr_img must be a finite number"),
    (["eval.lr=inf"], "eval.lr must be a finite number"),
])
def test_config_mistakes(cli, args, needle):
    _fails(cli, needle, *args)


def test_resume_dir_without_checkpoint(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(cli, "holds no checkpoint.pt", f"resume={tmp_path / 'empty'}")


def test_synthetic_without_stage_eval(cli, tmp_path):
    torch.save({"images": torch.zeros(10, 1, 16, 16), "labels": torch.arange(10)}, tmp_path / "s.pt")
    _fails(cli, "add stage=eval", f"synthetic={tmp_path / 's.pt'}")


@pytest.mark.parametrize("obj,needle", [
    ([1, 2, 3], "must hold a dict with 'images' and 'labels'"),
    ({"images": torch.zeros(10, 16, 16), "labels": torch.arange(10)}, "float tensor N x C x H x W"),
    ({"images": torch.zeros(10, 1, 16, 16), "labels": torch.arange(9)}, "'labels' must be N=10"),
    ({"images": torch.zeros(10, 3, 32, 32), "labels": torch.arange(10), "meta": {"dataset": "cifar10"}},
     "add dataset=cifar10"),
    ({"images": torch.zeros(10, 1, 16, 16), "labels": torch.arange(10), "lr": -1.0}, "'lr' must be a positive"),
])
def test_bad_synthetic_files(cli, tmp_path, obj, needle):
    torch.save(obj, tmp_path / "s.pt")
    _fails(cli, needle, "stage=eval", f"synthetic={tmp_path / 's.pt'}")


def test_crossarch_backbone_that_cannot_take_the_data_fails_before_distilling(cli, tmp_path):
    _fails(cli, "remove vgg11 from eval.cross_arch", "eval=crossarch")
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()


def test_wandb_online_without_a_key(cli, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    _fails(cli, "wandb login", "logger=wandb", "logger.mode=online")


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def test_one_class_dataset(cli, tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            _png(tmp_path / "data" / split / "cat" / f"{i}.png", 10 * i)
    _fails(cli, "needs at least 2 classes", "dataset=image_folder", f"dataset.root={tmp_path / 'data'}")


def test_random_baseline_smaller_than_ipc(cli):
    _fails(cli, "eval.compare_random=false", "ipc=30", "method.init=noise")  # smoke: 20 real images per class


def test_random_subset_smaller_than_ipc(cli):
    _fails(cli, "lower ipc", "ipc=30", "method=random")


def test_backbone_too_big_for_the_images(cli):
    _fails(cli, "pick a backbone for 1-channel 16px input", "backbone=convnet_d5")


def test_truncated_results_file(cli, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text('{"config_key": "abc", "acc_mean": 0.5}\n{"config_key": "de')
    _fails(cli, "line 2 is not a complete JSON record", "method=random")


def test_read_only_disk(cli, monkeypatch, tmp_path):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run"))

    monkeypatch.setattr("dfdistill.core.artifacts.tempfile.mkstemp", read_only)
    _fails(cli, "give a writable hydra.run.dir=", "method=random")


def test_full_disk_keeps_no_temp_files(cli, monkeypatch, tmp_path):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    _fails(cli, "disk full writing", "method=dm")
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob(".*.tmp"))


def test_second_process_on_the_same_run_dir(cli, tmp_path):
    with run_lock(tmp_path / "run"):
        _fails(cli, "another dfdistill process", "method=random")


def test_checkpoint_of_another_config(cli, tmp_path):
    assert cli("method=dm", "stage=distill")[0] == 0
    _fails(cli, "belongs to another distillation (it differs in ipc", "method=dm", "ipc=2", "stage=distill")
    _fails(cli, f"resume={tmp_path / 'run'}", "method=dm", "method.lr_img=0.5", "stage=distill")  # resumable


def _dm_step_hook(monkeypatch, at: int, action):
    from dfdistill.methods.dm import DM

    real_step = DM.step

    def step(self, it):
        out = real_step(self, it)
        return action(out) if it == at else out

    monkeypatch.setattr(DM, "step", step)


def test_nan_names_the_command_that_continues(cli, monkeypatch, tmp_path):
    _dm_step_hook(monkeypatch, 2, lambda out: {"loss": torch.tensor(float("nan"))})
    line = _fails(cli, "the last good checkpoint (iteration 2)", "method=dm", "profile.iterations=5",
                  "method.lr_img=0.5")
    assert f"resume={tmp_path / 'run'}" in line
    proposed = float(line.split("method.lr_img=")[-1].split()[0])
    assert 0 < proposed < 0.5  # the advice is a smaller lr than the one that diverged


def test_mtt_divergence_signs_warn_once():
    """The issue's MTT run: loss 0.95 -> 8.8e6 and a learned lr of -145, each a warning, once."""
    from dfdistill.engine.divergence import DivergenceWatch

    grow = DivergenceWatch("mtt")
    assert grow.update(0, 0.95, {"syn_lr": torch.tensor(0.01)}) is None
    assert grow.update(1, 50.0, {}) is None  # large but not three orders of magnitude
    assert "grew from 0.95" in grow.update(2, 8.8e6, {}) and grow.note["kind"] == "loss_growth"
    assert grow.update(3, 9e6, {"syn_lr": torch.tensor(-145.0)}) is None  # once per run
    neg = DivergenceWatch("mtt")
    neg.update(0, 0.95, {"syn_lr": torch.tensor(0.01)})
    assert "syn_lr turned negative (-145)" in neg.update(1, 0.9, {"syn_lr": torch.tensor(-145.0)})


@pytest.mark.slow
@pytest.mark.parametrize("at,out,kind", [
    (2, {"loss": torch.tensor(1e9)}, "loss_growth"),
    (2, {"loss": torch.tensor(1.0), "syn_lr": torch.tensor(-145.0)}, "negative_lr"),
])
def test_finite_divergence_warns_once_and_is_recorded(cli, monkeypatch, tmp_path, capsys, at, out, kind):
    """MTT's loss 0.95 -> 8.8e6 and learned lr -145 finished silently; now one warning and a record field."""
    _dm_step_hook(monkeypatch, at, lambda o: out)
    _dm_step_hook(monkeypatch, at + 1, lambda o: out)  # still divergent next iteration: still one warning
    capsys.readouterr()
    rc = cli_main(cli.entry, [*SMOKE, f"hydra.run.dir={tmp_path / 'run'}", "method=dm", "profile.iterations=5",
                              "eval.compare_random=false"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert (text.out + text.err).count("looks divergent") == 1, text.out
    rec = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[-1])
    assert rec["divergence"]["kind"] == kind


def test_sweep_jobs_all_validated_before_the_first_starts(cli, tmp_path):
    """`-m ipc=1,abc` used to run job 0 to the end, then fail on job 1 with a traceback."""
    _fails(cli, "sweep job 2/2 (ipc=abc): ipc must be an integer", "-m", "ipc=1,abc", "method=random",
           f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert not list(tmp_path.rglob("results.jsonl"))


def test_sweep_over_a_missing_dataset_fails_once_before_any_job(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("DFDISTILL_DATA", str(tmp_path / "nodata"))
    _fails(cli, "CIFAR-10 not found under", "-m", "dataset=digits,cifar10", "method=random",
           f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert not list(tmp_path.rglob("results.jsonl"))


def test_read_only_run_dir_names_the_path(cli, monkeypatch, tmp_path):
    """Hydra's 'Unable to configure handler file' (a ValueError) when the existing run dir is read-only."""
    import logging

    def denied(self, filename, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", filename)

    monkeypatch.setattr(logging.FileHandler, "__init__", denied)
    _fails(cli, f"cannot write {tmp_path / 'run' / 'run.log'}: Permission denied", "method=random")


def test_huge_ipc_refused_from_its_estimated_size(cli, monkeypatch):
    monkeypatch.setattr("dfdistill.run.preflight.available_bytes", lambda device: 2**30)  # 1 GiB free, on any machine
    allocated = []
    monkeypatch.setattr("dfdistill.methods.base.init_synthetic", lambda *a, **k: allocated.append(a))
    _fails(cli, "ipc=1000000 makes a synthetic set of 10000000 images", "ipc=1000000", "method.init=noise",
           "eval.compare_random=false")
    assert not allocated


def test_garbage_pt_is_not_a_saved_set(cli, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a torch file at all" * 10)
    line = _fails(cli, "is not a saved set", "stage=eval", f"synthetic={tmp_path / 'junk.pt'}")
    assert "weights_only" not in line


@pytest.mark.parametrize("setting", ["DFDISTILL_CACHE", "hydra.run.dir", "cache_dir"])
def test_folder_setting_under_a_file_names_the_setting(cli, monkeypatch, tmp_path, setting):
    (tmp_path / "afile").write_text("x")
    if setting == "DFDISTILL_CACHE":
        monkeypatch.setenv("DFDISTILL_CACHE", str(tmp_path / "afile"))
        _fails(cli, f"DFDISTILL_CACHE={tmp_path / 'afile'} is a file", "method=random")
    elif setting == "hydra.run.dir":
        _fails(cli, f"hydra.run.dir={tmp_path / 'afile' / 'sub'} lies under the file", "method=random",
               run_dir=tmp_path / "afile" / "sub")
    else:
        _fails(cli, f"cache_dir={tmp_path / 'afile' / 'x'} lies under the file", "method=random",
               f"cache_dir={tmp_path / 'afile' / 'x'}")


def test_ctrl_c_saves_a_checkpoint_first(cli, monkeypatch, tmp_path):
    def interrupt(out):
        os.kill(os.getpid(), signal.SIGINT)
        return out

    _dm_step_hook(monkeypatch, 1, interrupt)
    rc, line = cli("method=dm", "profile.iterations=5")
    assert rc == 130 and "interrupted after iteration 2/5; checkpoint saved" in line, line  # 128 + SIGINT
    from dfdistill.core.artifacts import load_tensor_file

    assert load_tensor_file(tmp_path / "run" / CHECKPOINT_FILE)["iteration"] == 2


def test_schema_entries_are_not_offered_by_help_or_completion(entry, capsys, monkeypatch):
    assert cli_main(entry, ["--help"]) == 0
    out = capsys.readouterr().out
    assert "method: dc," in out.replace("\n", " ") and "base_" not in out and "local.example" not in out
    monkeypatch.setenv("COMP_LINE", "python run.py method=")
    monkeypatch.setenv("COMP_POINT", str(len("python run.py method=")))
    assert cli_main(entry, ["-sc", "query=bash"]) == 0
    offered = capsys.readouterr().out.split()
    assert "method=dc" in offered and not [o for o in offered if "base_" in o]


def test_readme_home_path_example_parses(entry, capsys):
    assert cli_main(entry, ["dataset.root=~/data", "--cfg", "job"]) == 0
    assert f"root: {Path.home() / 'data'}" in capsys.readouterr().out
