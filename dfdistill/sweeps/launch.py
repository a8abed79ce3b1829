"""Launching planned jobs: local subprocesses (one GPU each), in-process (tests), or any Hydra
launcher (joblib, submitit_local, submitit_slurm) through the `joblist` sweeper.

Every launcher receives only the pending jobs of every job set (the exp's grid and each `--add`
set), and every job lands in its planned directory, so the results are found by the same plan.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Union

from omegaconf import open_dict

from dfdistill.sweeps.gpus import parallel_jobs, visible_devices
from dfdistill.sweeps.plan import REPO, Job, job_config
from dfdistill.core.errors import DfdistillError
from dfdistill.run.pipeline import run
from dfdistill.config.compose import compose_run_config

Runner = Callable[[Job, dict], int]  # (job, environment) -> exit code


def run_subprocess(job: Job, env: dict, extra: Optional[list[str]] = None) -> int:
    """`python run.py <overrides>` writing into the job's planned directory."""
    cmd = [sys.executable, str(REPO / "run.py"), *job.overrides, f"hydra.run.dir='{job.out_dir}'", "progress=false",
           *(extra or [])]
    print("[run_table] launch:", " ".join(job.overrides), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def launch_local(jobs: list[Job], n_parallel: Union[int, str] = "auto", devices: Optional[list[str]] = None,
                 runner: Optional[Runner] = None, extra: Optional[list[str]] = None) -> list[int]:
    """Run jobs as subprocesses, `n_parallel` (N | auto: one per visible device) at a time.

    With CUDA devices visible, each running job holds one of them (CUDA_VISIBLE_DEVICES=<that id>)
    and gives it back when it ends, so concurrent jobs never share a device; at most one job per
    device runs at a time. Without devices the jobs just run `n_parallel` at a time."""
    devices = visible_devices() if devices is None else devices
    runner = runner or (lambda job, env: run_subprocess(job, env, extra))
    free: "queue.Queue[str]" = queue.Queue()
    for d in devices:
        free.put(d)
    n = parallel_jobs(n_parallel, devices)
    workers = max(1, min(n, len(devices)) if devices else n)

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


@functools.lru_cache(maxsize=None)
def configured_launcher(launcher: str) -> dict:
    """The launcher's settings as composed (group defaults + conf/local); {} when it cannot compose."""
    try:
        from omegaconf import OmegaConf


        hcfg = compose_run_config([f"hydra/launcher={launcher}"], return_hydra_config=True)
        return OmegaConf.to_container(hcfg.hydra.launcher, resolve=False)  # type: ignore[return-value]
    except Exception:
        return {}


def parallel_overrides(launcher: str, jobs: Union[str, int], typed: list[str], devices: Optional[list[str]] = None,
                       configured: Optional[dict] = None) -> list[str]:
    """`hydra.launcher.*` overrides that make a Hydra launcher run `jobs` (auto | N) jobs at once, one GPU
    each. What the user typed (`typed`) and what conf/local sets (`configured`) win.

    joblib: n_jobs = N, or the number of visible GPUs with auto (each job then takes a free one through
    GpuSlotCallback); auto without GPUs keeps joblib's own default. submitit_slurm: one GPU per task
    (gpus_per_node 1) unless configured, and N caps the running tasks (array_parallelism); auto leaves
    that to the scheduler. submitit_local: one GPU per job when GPUs are visible."""
    devices = visible_devices() if devices is None else devices
    configured = configured or {}
    have = {o.lstrip("+~").split("=", 1)[0].removeprefix("hydra.launcher.") for o in typed}
    out: dict[str, object] = {}
    if launcher == "joblib" and (jobs != "auto" or devices):
        out["n_jobs"] = parallel_jobs(jobs, devices)
    if launcher.startswith("submitit") and configured.get("gpus_per_node") is None and (
            launcher == "submitit_slurm" or devices):
        out["gpus_per_node"] = 1
    if launcher == "submitit_slurm" and jobs != "auto":
        out["array_parallelism"] = int(jobs)
    return [f"hydra.launcher.{k}={v}" for k, v in out.items() if k not in have]


def launch_hydra(jobs: list[Job], sweep_dir: Path, launcher: str, hydra_overrides: Optional[list[str]] = None) -> list[int]:
    cmd = hydra_command(jobs, sweep_dir, launcher, hydra_overrides)
    print(f"[run_table] {len(jobs)} job(s) through hydra/launcher={launcher}:", " ".join(cmd[2:]), flush=True)
    return [subprocess.run(cmd, cwd=REPO).returncode]
