"""End-to-end behaviour of run(): results, idempotence, resume after SIGKILL, NaN stop, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfdistill.artifacts import load_tensor_file
from dfdistill.errors import ConfigError, DataError, DivergenceError
from dfdistill.checkpoint import CHECKPOINT_FILE
from dfdistill.pipeline import run
from conftest import ROOT

SMOKE = ["profile=smoke", "dataset=digits"]


def test_smoke_run_writes_results_grid_and_synthetic(compose_cfg, tmp_path):
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=2"]))
    out = Path(rec["output_dir"])
    line = json.loads((out / "results.jsonl").read_text())
    assert line["acc_mean"] == rec["acc_mean"] and len(line["accs"]) == line["n_eval"] == 1
    assert line["method"] == "dm" and line["ipc"] == 2 and line["profile"] == "smoke"
    assert {"data", "distill", "eval"} <= set(line["stage_seconds"])
    syn = torch.load(out / "synthetic.pt")
    assert syn["images"].shape == (20, 1, 16, 16) and syn["labels"].tolist() == sorted(syn["labels"].tolist())
    assert (out / "synthetic.png").stat().st_size > 0
    assert "random_mean" in line


@pytest.mark.parametrize("method", ["dc", "dsa", "dm", "random", "herding", "kcenter"])
def test_every_core_method_runs(compose_cfg, method):
    rec = run(compose_cfg([*SMOKE, f"method={method}", "ipc=1", "method.pretrain_epochs=1"] if method in ("herding", "kcenter")
                          else [*SMOKE, f"method={method}", "ipc=1"]))
    assert 0.0 <= rec["acc_mean"] <= 1.0


def test_finished_run_is_skipped_unless_forced(compose_cfg, capsys):
    cfg = compose_cfg([*SMOKE, "method=dm", "ipc=1"])
    first = run(cfg)
    again = run(cfg)
    assert again["time"] == first["time"]
    assert "skipping" in capsys.readouterr().out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(compose_cfg, monkeypatch):
    from dfdistill.methods.dm import DM

    real_step = DM.step

    def flaky(self, it):
        out = real_step(self, it)
        return {"loss": torch.tensor(float("nan"))} if it == 2 else out

    monkeypatch.setattr(DM, "step", flaky)
    cfg = compose_cfg([*SMOKE, "method=dm", "ipc=1", "profile.iterations=5", "checkpoint_every=1"])
    with pytest.raises(DivergenceError, match="iteration 2.*last good checkpoint"):
        run(cfg)
    ck = load_tensor_file(Path(cfg.output_dir) / CHECKPOINT_FILE)
    assert ck["iteration"] == 2 and torch.isfinite(ck["distiller"]["images"]).all()


def test_missing_root_and_too_small_images_fail_clearly(compose_cfg, tmp_path):
    with pytest.raises(DataError, match="does not exist|not found"):
        run(compose_cfg(["profile=smoke", "dataset=image_folder", f"dataset.root={tmp_path}/nope"]))
    with pytest.raises(DataError, match="backbone=convnet_d5|convnet_d5|too small"):
        run(compose_cfg([*SMOKE, "backbone=convnet_d5"]))


def test_checkpoint_of_other_config_is_refused(compose_cfg, tmp_path):
    out = tmp_path / "shared"
    run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "stage=distill"], out))
    with pytest.raises(ConfigError, match="different config"):
        run(compose_cfg([*SMOKE, "method=dm", "ipc=2"], out))


def _cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "run.py", "logger=none", "progress=false", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


def test_cli_bad_input_is_one_line_nonzero(tmp_path):
    for args, needle in [(["ipc=-1"], "ipc must be"), (["method=nope"], "nope"),
                         (["dataset=image_folder", f"dataset.root={tmp_path}/missing"], "missing")]:
        p = _cli([*args, f"hydra.run.dir={tmp_path}/o"])
        out, _ = p.communicate(timeout=120)
        assert p.returncode != 0 and needle in out, out
        assert "Traceback" not in out


def test_killed_run_resumes_from_checkpoint(tmp_path):
    out = tmp_path / "killed"
    args = ["profile=smoke", "method=dm", "ipc=1", "profile.iterations=400", "checkpoint_every=5",
            "eval.num_eval=1", f"hydra.run.dir={out}"]
    p = _cli(args)
    deadline = time.time() + 120
    ck = out / CHECKPOINT_FILE
    while time.time() < deadline and not (ck.exists() and load_tensor_file(ck)["iteration"] >= 10):
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = load_tensor_file(ck)["iteration"]
    assert 0 < done_before < 400 and not (out / "results.jsonl").exists()
    p2 = _cli(args)
    log, _ = p2.communicate(timeout=300)
    assert p2.returncode == 0, log
    assert f"resumed from" in log
    rec = json.loads((out / "results.jsonl").read_text())
    assert rec["resumed_from"] >= done_before and rec["iterations"] == 400


def test_adaptive_selector_state_is_checkpointed(compose_cfg):
    cfg = compose_cfg([*SMOKE, "method=dc", "ipc=1", "pruning=ite", "stage=distill"])
    run(cfg)
    ck = load_tensor_file(Path(cfg.output_dir) / CHECKPOINT_FILE)
    assert ck["adaptive"] and "adaptive" not in ck["distiller"]  # beside the distiller, not inside it


def test_model_factory_does_not_keep_the_real_data_alive():
    """Contract 6: the factory holds shape numbers only, so the unpruned split can be freed."""
    import gc
    import weakref

    from omegaconf import OmegaConf

    from dfdistill.data.real import RealData
    from dfdistill.models.factory import make_model_factory

    real = RealData(images=torch.randn(4, 1, 16, 16), labels=torch.tensor([0, 1, 0, 1]), num_classes=2,
                    class_names=["a", "b"], mean=(0.0,), std=(1.0,))
    ref = weakref.ref(real)
    factory = make_model_factory(OmegaConf.create({"name": "convnet", "width": 8, "depth": 2}), real, torch.device("cpu"))
    del real
    gc.collect()
    assert ref() is None
    assert factory(0)(torch.randn(3, 1, 16, 16)).shape == (3, 2)
