"""Several GPUs on one node (issue 22, item 4) with faked device lists: `--jobs auto` runs one job per
visible device, jobs are spread over all of them, and no two running jobs share one (local
subprocess launcher, joblib's lock-file slots, SLURM's one GPU per task)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from dfdistill.sweeps import gpus
from dfdistill.sweeps.cli import parser
from dfdistill.sweeps.gpus import GpuSlotCallback, parallel_jobs, visible_devices
from dfdistill.sweeps.launch import launch_local, parallel_overrides
from dfdistill.sweeps.plan import Job


def _jobs(n: int) -> list[Job]:
    return [Job([f"seed={i}"], Path(f"/tmp/j{i}")) for i in range(n)]


def test_auto_is_one_job_per_device_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
    assert visible_devices() == ["2", "5", "7"] and parallel_jobs("auto") == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert parallel_jobs("auto") == 1  # no GPU: one job at a time, as before
    assert parallel_jobs(4, []) == 4


def test_auto_counts_torch_devices_without_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert visible_devices() == ["0", "1", "2", "3"] and parallel_jobs("auto") == 4


def test_auto_runs_every_device_at_once_and_never_two_jobs_on_one(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
    all_three = threading.Barrier(3, timeout=10)  # breaks (fails the test) unless 3 jobs run together
    lock = threading.Lock()
    held: set[str] = set()
    seen: list[str] = []

    def runner(job: Job, env: dict) -> int:
        dev = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert dev not in held, f"device {dev} given to two running jobs"
            held.add(dev)
            seen.append(dev)
        if len(seen) <= 3:
            all_three.wait()
        with lock:
            held.discard(dev)
        return 0

    rcs = launch_local(_jobs(9), "auto", runner=runner)
    assert rcs == [0] * 9
    assert sorted(seen[:3]) == ["2", "5", "7"]  # the first wave covers every device
    assert sorted(set(seen)) == ["2", "5", "7"] and len(seen) == 9


def test_joblib_slots_spread_jobs_over_faked_devices(monkeypatch, tmp_path):
    """GpuSlotCallback (joblib workers): concurrent jobs each make a different device current."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: current.append(i))
    a, b, c = (GpuSlotCallback(timeout=0.05, poll=0.01) for _ in range(3))
    a.on_job_start({"device": "auto"})
    b.on_job_start({"device": "auto"})
    assert sorted(current) == [0, 1] and {a.slot.devices[a.slot.index], b.slot.devices[b.slot.index]} == {"4", "6"}
    with pytest.raises(TimeoutError):  # both held: a third running job would have to wait
        c.on_job_start({"device": "auto"})
    a.on_job_end()
    c.on_job_start({"device": "auto"})
    assert current[-1] == 0  # the released device is taken again
    b.on_job_end()
    c.on_job_end()


def test_hydra_launchers_get_one_gpu_per_job_and_the_job_count():
    two = ["0", "1"]
    assert parallel_overrides("joblib", "auto", [], two) == ["hydra.launcher.n_jobs=2"]
    assert parallel_overrides("joblib", "auto", [], []) == []  # no GPU: joblib's own default
    assert parallel_overrides("joblib", 3, ["hydra.launcher.n_jobs=8"], two) == []  # what you type wins
    slurm = parallel_overrides("submitit_slurm", "auto", [], [])
    assert slurm == ["hydra.launcher.gpus_per_node=1"]  # one GPU per task, the scheduler spreads them
    assert parallel_overrides("submitit_slurm", 16, [], []) == ["hydra.launcher.gpus_per_node=1",
                                                                "hydra.launcher.array_parallelism=16"]
    assert parallel_overrides("submitit_slurm", "auto", [], [], {"gpus_per_node": 2}) == []  # conf/local wins
    assert parallel_overrides("submitit_local", "auto", [], two) == ["hydra.launcher.gpus_per_node=1"]


def test_jobs_option_parses_auto_and_counts_and_rejects_the_rest(capsys):
    assert parser().parse_args(["bilp_tab4"]).jobs == "auto"
    assert parser().parse_args(["bilp_tab4", "--jobs", "3"]).jobs == 3
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["bilp_tab4", "--jobs", "0"])
    assert e.value.code == 2 and "--jobs auto" in capsys.readouterr().err
