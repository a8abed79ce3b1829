"""run_table through Hydra launchers (joblist sweeper: exactly the pending jobs of every job set)
and `--plan` (settings that differ from the defaults, job count, cost from measurements)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dfdistill.sweeps.cli import main
from dfdistill.sweeps.launch import hydra_command
from dfdistill.sweeps.plan import plan

ROOT = Path(__file__).resolve().parents[1]
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


def test_plan_lists_settings_job_count_and_measured_cost(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sw"
    args = ["bilp_tab4", "--sweep-dir", str(sweep), "--plan", *BASE, "method=dc,herding"]
    _, jobs = plan("bilp_tab4", "smoke", BASE[4:] + ["method=dc,herding"], sweep)
    dc = next(j for j in jobs if "method=dc" in j.overrides)
    other = tmp_path / "sw" / "elsewhere"  # a finished DC run measured on this profile (another dir)
    other.mkdir(parents=True)
    (other / "results.jsonl").write_text(json.dumps({
        "config_key": "x", "method": "dc", "dataset": "digits", "ipc": 1, "pruning": "none", "profile": "smoke",
        "wall_seconds": 600.0, "sec_per_iter": 0.5, "iterations": int(dc.resolved.method.iterations),
        "device_name": "test-gpu", "config": {"backbone": {"width": 8}}}) + "\n")
    out = main(args)
    text = capsys.readouterr().out
    assert out["launched"] == [] and not any(j.done for j in out["jobs"])
    assert "2 jobs: 0 finished, 2 to run" in text and "1 pending job(s) unmeasured" in text
    assert "cost: 10 min on test-gpu (median wall time of 1 finished run(s))" in text
    # the profile's scaling shows as a difference from the method's YAML defaults
    assert "backbone.width=8" in text and "method.iterations=3" in text and "eval.num_eval=1" in text
    # and which of the paper's cells the plan leaves empty (DC and Herding at IPC 1 on a stand-in only)
    line = next(ln for ln in text.splitlines() if "paper cell(s) with no planned job" in ln)
    # Table 4 has 81 paper cells outside its paper-only rows; DC and Herding at CIFAR10 IPC 1 are planned
    assert line.startswith("[run_table] bilp_tab4 / smoke: 79 paper cell(s) with no planned job: Full dataset / ")


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
    lines, _ = job_lines(jobs[:1], [])
    assert "dataset.zca=True" in "\n".join(lines)


@pytest.mark.slow
def test_two_job_sweep_through_submitit_local_with_an_added_job_set(tmp_path: Path) -> None:
    """The grid job and an --add job go through hydra/launcher=submitit_local into their planned
    dirs (same as run.py -m would name them); a rerun finds both finished and launches nothing."""
    sweep = tmp_path / "sw"
    args = ["bilp_tab4", "--sweep-dir", str(sweep), "--launcher", "submitit_local", "--add", "method=dm",
            *BASE, "method=dc", "hydra.launcher.timeout_min=10"]
    first = main(args)
    assert first["rcs"] == [0] and len(first["launched"]) == 2
    from dfdistill.sweeps.plan import job_record

    assert {j.resolved.method.name for j in first["launched"]} == {"dc", "dm"}
    assert all(job_record(j) is not None for j in first["launched"])  # each result in its planned dir
    assert (sweep / ".submitit").is_dir()  # really went through submitit

    def no_launch(pending):
        raise AssertionError(f"relaunched {len(pending)} job(s)")

    again = main(args, launch=no_launch)
    assert again["launched"] == []


def test_slurm_example_config_has_only_valid_launcher_keys() -> None:
    """conf/local.example's SLURM settings merge into submitit's schema (one GPU per task)."""
    from omegaconf import OmegaConf

    from dfdistill.config.compose import compose_run_config

    example = OmegaConf.load(ROOT / "conf" / "local.example" / "default.yaml")
    hcfg = compose_run_config(["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    merged = OmegaConf.merge(hcfg.hydra.launcher, example.hydra.launcher)  # unknown keys raise here
    assert merged.gpus_per_node == 1 and merged.tasks_per_node == 1
    assert "submitit_slurm" in str(example.defaults)


def test_cost_keeps_one_stratum_runs_apart() -> None:
    """A Fig. 3 run (one loss stratum, 10% of the data) is no measurement for a loss-pruning job."""
    from omegaconf import OmegaConf

    from dfdistill.sweeps.cost import estimate, from_record

    rec = {"method": "dc", "dataset": "cifar10_jpeg", "ipc": 1, "pruning": "loss", "profile": "cpu", "iterations": 100,
           "wall_seconds": 20.0, "config": {"pruning": {"stratum": 3}, "backbone": {"width": 32}}}
    m = from_record(rec, "x")
    job = OmegaConf.create({"method": {"name": "dc", "iterations": 100}, "dataset": {"name": "cifar10"}, "ipc": 1,
                            "pruning": {"name": "loss", "stratum": None}, "profile": {"name": "cpu"},
                            "backbone": {"width": 32}})
    assert estimate(job, [m]).seconds is None
    job.pruning.stratum = 5
    assert estimate(job, [m]).seconds == 20.0
