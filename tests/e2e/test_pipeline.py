"""End-to-end behaviour of run(): results, idempotence, resume after SIGKILL, NaN stop, bad input."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dfdistill.core.artifacts import load_tensor_file
from dfdistill.core.errors import ConfigError, DataError, DivergenceError
from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.run.pipeline import run
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
    resolved = OmegaConf.load(out / "resolved.yaml")  # the effective config, with its provenance
    assert OmegaConf.to_container(resolved) == line["config"] and "provenance" in resolved
    assert "random_mean" in line


# Every registered method's init and step: tests/contract/test_methods_contract.py (it iterates the registry).


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
    with pytest.raises(ConfigError, match="belongs to another distillation .it differs in ipc"):
        run(compose_cfg([*SMOKE, "method=dm", "ipc=2"], out))


def _cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "run.py", "logger=none", "progress=false", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


def test_cli_bad_input_is_one_line_nonzero(tmp_path):
    """The real process: exit code 2 and one `error:` line (tests/e2e/test_bad_inputs.py has every other
    bad input, in-process: ipc=-1, method=nope, ...)."""
    p = _cli(["dataset=image_folder", f"dataset.root={tmp_path}/missing", f"hydra.run.dir={tmp_path}/o"])
    out, _ = p.communicate(timeout=120)
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 1 and "missing" in errors[0], out
    assert "Traceback" not in out and "missing" in (tmp_path / "o" / "run.log").read_text()


@pytest.mark.slow  # two real processes (~14 CPU-s); the default suite keeps the in-process Ctrl-C resume test
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


# ---------------------------------------------------------------------------------------------- #
# identities, stages, evaluation of saved sets
# ---------------------------------------------------------------------------------------------- #
def test_distillation_identity_excludes_stage_and_evaluation(compose_cfg):
    from dfdistill.config.resolve import distill_key, resolve_config, result_key

    base = resolve_config(compose_cfg([*SMOKE, "method=dm"]))
    for change in (["stage=distill"], ["eval.momentum=0.5"], ["eval=idc"], ["eval.cross_arch=[mlp]"],
                   ["checkpoint_every=7"]):
        other = resolve_config(compose_cfg([*SMOKE, "method=dm", *change]))
        assert distill_key(other) == distill_key(base), change
        if change[0].startswith("eval"):
            assert result_key(distill_key(other), other) != result_key(distill_key(base), base), change
    assert distill_key(resolve_config(compose_cfg([*SMOKE, "method=dm", "method.lr_img=0.5"]))) != distill_key(base)


def test_distill_then_all_continues_the_same_distillation(compose_cfg, tmp_path):
    out = tmp_path / "staged"
    first = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "stage=distill"], out))
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=1"], out))
    assert first["iterations"] == 3 and rec["resumed_from"] == rec["iterations"] == 3  # nothing redone
    direct = run(compose_cfg([*SMOKE, "method=dm", "ipc=1"], tmp_path / "direct"))
    assert rec["accs"] == direct["accs"]
    again = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "eval.momentum=0.5"], out))  # another protocol, same set
    assert again["resumed_from"] == 3 and again["eval"]["momentum"] == 0.5
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_stage_eval_reproduces_and_extends_a_finished_run(compose_cfg, tmp_path):
    from dfdistill.config.resolve import distill_key, resolve_config, result_key

    src = tmp_path / "src"
    rec = run(compose_cfg([*SMOKE, "method=dm", "ipc=1"], src))
    resolved = resolve_config(compose_cfg([*SMOKE, "method=dm", "ipc=1"], src))
    assert rec["config_key"] == result_key(distill_key(resolved), resolved)  # what sweep planners compare
    ev = run(compose_cfg([*SMOKE, "stage=eval", f"synthetic={src}"], tmp_path / "ev"))
    assert ev["accs"] == rec["accs"] and ev["random_accs"] == rec["random_accs"]
    assert ev["distill_key"] == rec["distill_key"] and ev["config_key"] == rec["config_key"]
    assert ev["source"]["method"] == "dm" and ev["method"] == "dm" and ev["ipc"] == 1
    cross = run(compose_cfg([*SMOKE, "stage=eval", f"synthetic={src / 'synthetic.pt'}", "eval.cross_arch=[mlp,lenet]",
                             "eval.compare_random=false"], tmp_path / "cross"))
    assert set(cross["cross_arch"]) == {"mlp", "lenet"} and not (tmp_path / "cross" / CHECKPOINT_FILE).exists()


def test_stage_eval_of_a_foreign_file_in_pixels_with_soft_labels(compose_cfg, tmp_path):
    """The documented layout: [0,1] pixels + pixels=true, N x K soft labels, optional lr."""
    from dfdistill.data.datasets import load_dataset

    train, _ = load_dataset(compose_cfg([*SMOKE]).dataset)
    idx = torch.cat([train.class_indices[c][:2] for c in range(10)])
    pixels = train.denormalize(train.images[idx])
    soft = torch.nn.functional.one_hot(train.labels[idx], 10).float() * 0.9 + 0.01
    torch.save({"images": pixels, "labels": soft, "pixels": True, "lr": 0.02}, tmp_path / "theirs.pt")
    rec = run(compose_cfg([*SMOKE, "stage=eval", f"synthetic={tmp_path / 'theirs.pt'}", "eval.lr=null"], tmp_path / "ev"))
    assert rec["ipc"] == 2 and rec["eval_lr"] == 0.02 and 0 <= rec["acc_mean"] <= 1
    assert rec["source"]["synthetic"] == str(tmp_path / "theirs.pt")


def test_force_recomputes_from_scratch(compose_cfg):
    cfg = compose_cfg([*SMOKE, "method=dm", "ipc=1"])
    first = run(cfg)
    forced = run(compose_cfg([*SMOKE, "method=dm", "ipc=1", "force=true"]))
    assert forced["resumed_from"] == 0 and forced["sec_per_iter"] is not None and forced["time"] >= first["time"]
    assert forced["accs"] == first["accs"]  # same config, from scratch: the same numbers
    assert len((Path(cfg.output_dir) / "results.jsonl").read_text().splitlines()) == 1


def test_result_of_other_code_version_is_reused_and_said(compose_cfg, capsys):
    cfg = compose_cfg([*SMOKE, "method=random", "ipc=1"])
    run(cfg)
    path = Path(cfg.output_dir) / "results.jsonl"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "code_version": "0123abc"}) + "\n")
    capsys.readouterr()
    again = run(cfg)
    out = capsys.readouterr().out
    assert again["code_version"] == "0123abc" and "from code version 0123abc" in out and out.count("\n") == 1


def test_pruning_ratio_records_what_ran(compose_cfg):
    rec = run(compose_cfg([*SMOKE, "method=random", "ipc=1", "pruning=random", "pruning.ratio=0.5"]))
    assert rec["pruning_ratio"] == 0.5 and rec["n_real_used"] == rec["n_real_total"] // 2
    none = run(compose_cfg([*SMOKE, "method=random", "ipc=1"], Path(rec["output_dir"]).parent / "none"))
    assert none["pruning_ratio"] == 0.0 and none["n_real_used"] == none["n_real_total"]


def test_files_are_group_readable_and_no_temp_files_remain(compose_cfg, tmp_path):
    old = os.umask(0o027)
    try:
        run(compose_cfg([*SMOKE, "method=dm", "ipc=1"], tmp_path / "perm"))
    finally:
        os.umask(old)
    for name in ("results.jsonl", CHECKPOINT_FILE, "synthetic.pt", "synthetic.png"):
        assert (tmp_path / "perm" / name).stat().st_mode & 0o777 == 0o640, name
    assert not [p for p in (tmp_path / "perm").iterdir() if "tmp" in p.name]


def _entry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dfdistill_run_entry", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_nan_instruction_really_continues_from_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from dfdistill.entry.cli import main as cli_main
    from dfdistill.methods.dm import DM

    real_step = DM.step
    monkeypatch.setattr(DM, "step", lambda self, it: {"loss": torch.tensor(float("nan"))} if it == 3 else real_step(self, it))
    monkeypatch.chdir(tmp_path)
    args = ["profile=smoke", "logger=none", "progress=false", "method=dm", "ipc=1", "profile.iterations=6"]
    assert cli_main(_entry(), args) == 2
    line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")][0]
    command = shlex.split(line.split("continue from it with a lower lr: ")[1])
    assert command[:2] == ["python", "run.py"] and any(a.startswith("resume=") for a in command)
    monkeypatch.setattr(DM, "step", real_step)
    assert cli_main(_entry(), command[2:]) == 0
    out = [p for p in Path("outputs/digits/dm-ipc1").iterdir() if "lr_img" in p.name][0]
    rec = json.loads((out / "results.jsonl").read_text())
    cont = rec["continued_from"]
    good = int(re.search(r"last good checkpoint \(iteration (\d+)\)", line).group(1))
    assert 0 < good <= 3 and cont["iteration"] == good == rec["resumed_from"] and list(cont["changed"]) == ["method.lr_img"]
    assert rec["config"]["method"]["lr_img"] == pytest.approx(float(cont["changed"]["method.lr_img"][0]) / 10)


def test_ctrl_c_then_rerun_is_bit_identical_to_an_uninterrupted_run(compose_cfg, tmp_path, monkeypatch):
    from dfdistill.core.errors import Interrupted
    from dfdistill.methods.dm import DM

    over = [*SMOKE, "method=dm", "ipc=1", "profile.iterations=6", "checkpoint_every=4", "stage=distill"]
    run(compose_cfg(over, tmp_path / "straight"))
    real_step = DM.step

    def interrupting(self, it):
        out = real_step(self, it)
        if it == 1:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(DM, "step", interrupting)
    with pytest.raises(Interrupted, match="after iteration 2/6"):  # force: not the straight run's finished set
        run(compose_cfg([*over, "force=true"], tmp_path / "cut"))
    assert load_tensor_file(tmp_path / "cut" / CHECKPOINT_FILE)["iteration"] == 2  # nothing finished was lost
    monkeypatch.setattr(DM, "step", real_step)
    assert run(compose_cfg(over, tmp_path / "cut"))["resumed_from"] == 2
    a, b = (torch.load(tmp_path / d / "synthetic.pt") for d in ("straight", "cut"))
    assert torch.equal(a["images"], b["images"])


def test_relaunched_sweep_lands_in_the_same_dir_and_skips_finished_jobs(tmp_path, monkeypatch, capsys):
    from dfdistill.entry.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    args = ["-m", "profile=smoke", "logger=none", "progress=false", "method=random", "ipc=1,2"]
    assert cli_main(_entry(), args) == 0
    sweeps = list((tmp_path / "multirun").iterdir())
    assert [p.name for p in sweeps] == ["ipc=1,2,method=random,profile=smoke"]
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["ipc=1,method=random,profile=smoke",
                                                                         "ipc=2,method=random,profile=smoke"]
    capsys.readouterr()
    assert cli_main(_entry(), args) == 0
    assert capsys.readouterr().out.count("skipping") == 2 and list((tmp_path / "multirun").iterdir()) == sweeps
