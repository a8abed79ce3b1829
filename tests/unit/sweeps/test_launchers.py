"""run_table through Hydra launchers (joblist sweeper: exactly the pending jobs of every job set)
and `--plan` (settings that differ from the defaults, job count, cost from measurements)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dfdistill.sweeps.cli import main
from dfdistill.sweeps.launch import hydra_command
from dfdistill.sweeps.plan import plan

from conftest import ROOT
BASE = ["--profile", "smoke", "--no-table", "--no-extra", "dataset=digits", "ipc=1", "pruning=none",
        "eval.compare_random=false", "logger=none"]


def test_joblist_sweeper_launches_exactly_the_listed_jobs(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from hydra_plugins.dfdistill_joblist.joblist_sweeper import JobListSweeper
    from omegaconf import OmegaConf

    _, jobs = plan("bilp_tab4", "smoke", ["dataset=digits", "method=dc,dm", "ipc=1", "pruning=none"], tmp_path,
                   adds=[["method=kcenter"]], check=False)
    cmd = hydra_command(jobs[1:], tmp_path, "joblib", ["hydra.launcher.n_jobs=2"])
    assert cmd[2] == "-m" and "hydra/sweeper=joblist" in cmd and "hydra/launcher=joblib" in cmd
    jobs_file = next(c for c in cmd if c.startswith("hydra.sweeper.jobs_file=")).split("=", 1)[1].strip("'")
    launched = []

    class FakeLauncher:
        def launch(self, batch, initial_job_idx):
            launched.append((list(map(list, batch)), initial_job_idx))
            return []

    s = JobListSweeper(jobs_file=jobs_file, max_batch_size=1)
    s.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sw")}}})
    s.launcher = FakeLauncher()
    s.validate_batch_is_legal = lambda batch: None
    s.sweep([])
    assert [b for b, _ in launched] == [[j.overrides + ["progress=false"]] for j in jobs[1:]]
    assert [i for _, i in launched] == [0, 1]  # job numbers continue across batches


def test_plan_lists_settings_job_count_and_modelled_cost(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sw"
    args = ["bilp_tab4", "--sweep-dir", str(sweep), "--plan", "--gpu", "h100", *BASE, "method=dc,herding"]
    out = main(args)
    text = capsys.readouterr().out
    assert out["launched"] == [] and not any(j.done for j in out["jobs"])
    summary = [ln for ln in text.splitlines() if ln.startswith("[run_table]")]
    assert len(summary) == 1 and "2 jobs (2 new, 0 reused/finished, 0 not composable)" in summary[0]
    assert "on h100" in summary[0] and "largest job" in summary[0] and "all fit its 80 GB" in summary[0]
    assert text.count("cost: ") == 2 and "distillation" in text and "peak " in text
    assert out["totals"]["seconds"] > 0
    # the profile's scaling shows as a difference from the method's YAML defaults
    assert "backbone.width=8" in text and "method.iterations=3" in text and "eval.num_eval=1" in text
    # and which of the paper's cells the plan leaves empty (DC and Herding at IPC 1 on a stand-in only)
    line = next(ln for ln in text.splitlines() if "paper cell(s) with no planned job" in ln)
    # Table 4 has 81 paper cells outside its paper-only rows; DC and Herding at CIFAR10 IPC 1 are planned
    assert line.startswith("[coverage] bilp_tab4 / smoke: 79 paper cell(s) with no planned job: Full dataset / ")


def test_plan_shows_dataset_and_top_level_differences(tmp_path: Path) -> None:
    """--plan's differences include the dataset group (MTT's recipe turns on dataset.zca; the profile caps
    dataset rows) and top-level keys, not only method/eval/backbone/pruning."""
    from dfdistill.sweeps.preview import differing, job_lines

    _, jobs = plan("bilp_tab4", "smoke", ["dataset=cifar10", "dataset.root=/x", "method=mtt", "ipc=1", "pruning=none",
                                         "seed=3"], tmp_path, check=False)
    from dfdistill.config.resolve import resolve_config
    from dfdistill.sweeps.plan import job_config

    jobs[0].resolved = resolve_config(job_config(jobs[0]))  # what the check step does (no data needed)
    diff = differing(jobs[0])
    assert diff["dataset.zca"] is True and "dataset.max_train_per_class" in diff and diff["seed"] == 3
    assert not any(k.startswith(("output_dir", "logger", "progress", "cli_overrides", "provenance")) for k in diff)
    from dfdistill.sweeps.model import device

    lines, _ = job_lines(jobs[:1], device("a100-80gb"))
    assert "dataset.zca=True" in "\n".join(lines)


def test_slurm_example_config_has_only_valid_launcher_keys() -> None:
    """conf/local.example's SLURM settings merge into submitit's schema (one GPU per task)."""
    from omegaconf import OmegaConf

    from dfdistill.config.compose import compose_run_config

    example = OmegaConf.load(ROOT / "conf" / "local.example" / "default.yaml")
    hcfg = compose_run_config(["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    merged = OmegaConf.merge(hcfg.hydra.launcher, example.hydra.launcher)  # unknown keys raise here
    assert merged.gpus_per_node == 1 and merged.tasks_per_node == 1
    assert "submitit_slurm" in str(example.defaults)
