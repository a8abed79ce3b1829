"""logger=wandb writes an offline run under the run dir; logger=none never imports wandb."""

import subprocess
import sys

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from dfdistill.pipeline import run
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
        "import sys; sys.path.insert(0, 'tests'); from conftest import compose_config; from dfdistill.pipeline import run; "
        f"run(compose_config(['profile=smoke', 'ipc=1'], __import__('pathlib').Path(r'{tmp_path}') / 'r')); "
        "print('WANDB_LOADED' if 'wandb' in sys.modules else 'WANDB_ABSENT')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "WANDB_ABSENT" in out.stdout, out.stdout + out.stderr
