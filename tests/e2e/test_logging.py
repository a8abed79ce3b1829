"""logger=wandb writes an offline run under the run dir; logger=none never imports wandb."""

import subprocess
import sys

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from dfdistill.run.pipeline import run
from conftest import CONF, ROOT


def test_wandb_offline_run_lands_in_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("config", overrides=["profile=smoke", "ipc=1", "logger=wandb"])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "run")
        cfg.progress = False
    assert cfg.logger.mode == "offline"
    run(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_logger_none_never_imports_wandb(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests'); from conftest import compose_config; from dfdistill.run.pipeline import run; "
        f"run(compose_config(['profile=smoke', 'ipc=1'], __import__('pathlib').Path(r'{tmp_path}') / 'r')); "
        "print('WANDB_LOADED' if 'wandb' in sys.modules else 'WANDB_ABSENT')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "WANDB_ABSENT" in out.stdout, out.stdout + out.stderr


def test_run_log_holds_our_messages_and_errors(tmp_path, capsys):
    """Hydra's job log file gets the dfdistill messages (the summary, a skip, a one-line error)."""
    import importlib.util

    from dfdistill.entry.cli import main as cli_main

    spec = importlib.util.spec_from_file_location("dfdistill_run_entry", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = ["profile=smoke", "logger=none", "progress=false", "method=random", "ipc=1", f"hydra.run.dir={tmp_path}"]
    assert cli_main(mod.main, args) == 0
    assert cli_main(mod.main, args) == 0
    assert cli_main(mod.main, [*args, "method.iterations=-1"]) == 2
    log = (tmp_path / "run.log").read_text()
    assert "random @ IPC 1 on digits" in log and "skipping" in log and "method.iterations must be >= 0" in log
    out = capsys.readouterr()
    assert "[dfdistill] random @ IPC 1" in out.out and out.err.strip().splitlines()[-1].startswith("error: method.iterations")
