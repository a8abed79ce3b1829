"""Launching planned jobs: local subprocesses (one GPU each), in-process (tests), or any Hydra
launcher (joblib, submitit_local, submitit_slurm) through the `joblist` sweeper.

Every launcher receives only the pending jobs of every job set (the exp's grid and each `--add`
set), and every job lands in its planned directory, so the results are found by the same plan.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from omegaconf import open_dict

from dfdistill.sweeps.gpus import visible_devices
from dfdistill.sweeps.plan import REPO, Job, job_config

Runner = Callable[[Job, dict], int]  # (job, environment) -> exit code


def run_subprocess(job: Job, env: dict, extra: Optional[list[str]] = None) -> int:
    """`python run.py <overrides>` writing into the job's planned directory."""
    cmd = [sys.executable, str(REPO / "run.py"), *job.overrides, f"hydra.run.dir='{job.out_dir}'", "progress=false",
           *(extra or [])]
    print("[run_table] launch:", " ".join(job.overrides), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def launch_local(jobs: list[Job], n_parallel: int = 1, devices: Optional[list[str]] = None,
                 runner: Optional[Runner] = None, extra: Optional[list[str]] = None) -> list[int]:
    """Run jobs as subprocesses, `n_parallel` at a time.

    With CUDA devices visible, each running job holds one of them (CUDA_VISIBLE_DEVICES=<that id>)
    and gives it back when it ends, so concurrent jobs never share a device; at most one job per
    device runs at a time. Without devices the jobs just run `n_parallel` at a time."""
    devices = visible_devices() if devices is None else devices
    runner = runner or (lambda job, env: run_subprocess(job, env, extra))
    free: "queue.Queue[str]" = queue.Queue()
    for d in devices:
        free.put(d)
    workers = max(1, min(n_parallel, len(devices)) if devices else n_parallel)

    def one(job: Job) -> int:
        env = dict(os.environ)
        dev = free.get() if devices else None
        try:
            if dev is not None:
                env["CUDA_VISIBLE_DEVICES"] = dev
            return runner(job, env)
        finally:
            if dev is not None:
                free.put(dev)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def launch_inprocess(jobs: list[Job]) -> list[int]:
    """Run each job's pipeline in this process (tests, debugging)."""
    from dfdistill.errors import DfdistillError
    from dfdistill.pipeline import run

    rcs = []
    for job in jobs:
        print("[run_table] run in-process:", " ".join(job.overrides), flush=True)
        cfg = job_config(job)
        with open_dict(cfg):
            cfg.progress = False
        try:
            run(cfg)
            rcs.append(0)
        except DfdistillError as exc:
            print(f"[run_table] job failed: error: {exc}", file=sys.stderr)
            rcs.append(2)
    return rcs


def write_job_list(jobs: list[Job], sweep_dir: Path) -> Path:
    """The pending jobs for the joblist sweeper, one JSON override list per line."""
    folder = sweep_dir / ".joblists"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
    quiet = lambda o: o if any(x.startswith("progress=") for x in o) else [*o, "progress=false"]  # noqa: E731
    path.write_text("".join(json.dumps(quiet(j.overrides)) + "\n" for j in jobs))
    return path


def hydra_command(jobs: list[Job], sweep_dir: Path, launcher: str, hydra_overrides: Optional[list[str]] = None,
                  jobs_file: Optional[Path] = None) -> list[str]:
    """`run.py -m` over exactly `jobs` with a Hydra launcher (the first job composes the sweep's
    own config: its exp gives the table callback; every job is then composed from its overrides)."""
    jobs_file = jobs_file or write_job_list(jobs, sweep_dir)
    return [sys.executable, str(REPO / "run.py"), "-m", *jobs[0].overrides, "hydra/sweeper=joblist",
            f"hydra.sweeper.jobs_file='{jobs_file}'", f"hydra/launcher={launcher}", f"hydra.sweep.dir='{sweep_dir}'",
            "progress=false", *(hydra_overrides or [])]


def launch_hydra(jobs: list[Job], sweep_dir: Path, launcher: str, hydra_overrides: Optional[list[str]] = None) -> list[int]:
    cmd = hydra_command(jobs, sweep_dir, launcher, hydra_overrides)
    print(f"[run_table] {len(jobs)} job(s) through hydra/launcher={launcher}:", " ".join(cmd[2:]), flush=True)
    return [subprocess.run(cmd, cwd=REPO).returncode]
