#!/usr/bin/env python
"""Run one table's sweep, launching only the jobs that have no result yet, then build the table.

Why: Hydra multirun cannot resume, and re-launching a finished sweep would start every process
again (each then returns early). Here the job list is expanded exactly as Hydra's BasicSweeper does
(`hydra.sweeper.params` of the exp + command-line overrides, command line wins), each job's dir is
Hydra's own `<sweep dir>/<override_dirname>`, and a job whose results.jsonl already holds the
same resolved config (same config_key) is not launched at all.

  python scripts/run_table.py bilp_tab4 --profile cpu dataset=cifar10_jpeg 'method=dc,dm' 'ipc=1,10'
  python scripts/run_table.py bilp_tab4 --launcher joblib      # whole grid through a Hydra launcher

Launchers: local (default; one subprocess per job, --jobs N in parallel, one GPU each when
CUDA devices are visible), inprocess (same process, for tests), or any Hydra launcher name
(joblib, submitit_slurm, submitit_local: needs `pip install -e .[launchers]`), which runs the full
grid as one `run.py -m` (finished jobs return in seconds there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from hydra._internal.config_loader_impl import get_overrides_dirname  # noqa: E402
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from dfdistill.config.compose import compose_run_config  # noqa: E402
from dfdistill.config.store import register_configs  # noqa: E402

CONF = ROOT / "conf"


@dataclass
class Job:
    overrides: list[str]
    out_dir: Path
    key: Optional[str] = None
    done: bool = False
    error: Optional[str] = None


def _compose(overrides: list[str], hydra_cfg: bool = False):
    return compose_run_config(overrides, return_hydra_config=hydra_cfg)


def _split(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(plain overrides, sweep overrides such as ipc=1,10)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweep = [o.input_line for o in parsed if o.is_sweep_override()]
    return plain, sweep


def plan(exp: str, profile: str, overrides: list[str], sweep_dir: Optional[Path] = None,
         adds: Optional[list[list[str]]] = None) -> tuple[Path, list[Job]]:
    """Expand the sweep into jobs (Hydra's order and dir names) and mark the finished ones."""
    register_configs()
    fixed = [f"+exp={exp}", f"profile={profile}", *overrides]
    plain, _ = _split(fixed)
    hcfg = _compose(plain, hydra_cfg=True)
    params = {str(k): str(v) for k, v in (hcfg.hydra.sweeper.params or {}).items()}
    exclude = list(hcfg.hydra.job.config.override_dirname.exclude_keys)
    if sweep_dir is None:
        sweep_dir = Path(str(hcfg.hydra.sweep.dir))
    sweep_dir = (sweep_dir if sweep_dir.is_absolute() else ROOT / sweep_dir).resolve()
    parser = OverridesParser.create()
    jobs: list[Job] = []
    seen = set()
    for add in [[]] + [a for a in (adds or [])]:
        groups = {OverridesParser.create().parse_overrides([a])[0].key_or_group for a in add}
        under = lambda k: any(k.startswith(g + ".") for g in groups)  # an added group drops that group's keys
        p = {k: v for k, v in params.items() if not under(k)}
        kept = [o for o in fixed if not under(parser.parse_overrides([o])[0].key_or_group)]
        dropped = [o for o in fixed if o not in kept and o not in add]
        if dropped:  # silent dropping once cost a sweep its reduced schedule: say it
            print(f"[run_table] --add '{' '.join(add)}' replaces that group, so these overrides do not apply to it: "
                  f"{' '.join(dropped)} (repeat them inside --add to keep them)", file=sys.stderr)
        lines = [f"{k}={v}" for k, v in p.items()] + kept + add
        for batch in BasicSweeper.split_arguments(parser.parse_overrides(lines), None):
            for job in batch:
                dirname = get_overrides_dirname(parser.parse_overrides(job), exclude, ",", "=")
                if dirname in seen:
                    continue
                seen.add(dirname)
                jobs.append(Job(job, sweep_dir / dirname))
    for job in jobs:
        mark_done(job)
    return sweep_dir, jobs


def job_config(job: Job):
    cfg = _compose(job.overrides)
    with open_dict(cfg):
        cfg.output_dir = str(job.out_dir)
    return cfg


def mark_done(job: Job) -> None:
    """done = the job dir's results.jsonl holds this exact resolved config (same config_key)."""
    from dfdistill.artifacts import config_key
    from dfdistill.config.resolve import identity, resolve_config

    try:
        job.key = config_key(identity(resolve_config(job_config(job))))
    except Exception as exc:  # a missing method/pruning option: reported, never launched
        job.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return
    res = job.out_dir / "results.jsonl"
    if res.exists():
        keys = {json.loads(l).get("config_key") for l in res.read_text().splitlines() if l.strip()}
        job.done = job.key in keys


def launch_local(jobs: list[Job], n_parallel: int = 1, extra_env: Optional[dict] = None) -> list[int]:
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]

    def one(i_job: tuple[int, Job]) -> int:
        i, job = i_job
        env = {**os.environ, **(extra_env or {})}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]  # one job per device
        cmd = [sys.executable, str(ROOT / "run.py"), *job.overrides, f"hydra.run.dir='{job.out_dir}'", "progress=false"]
        print("[run_table] launch:", " ".join(job.overrides), flush=True)
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode

    with ThreadPoolExecutor(max_workers=max(1, n_parallel)) as pool:
        return list(pool.map(one, enumerate(jobs)))


def launch_inprocess(jobs: list[Job]) -> list[int]:
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
        except Exception as exc:
            print(f"[run_table] job failed: {exc}", file=sys.stderr)
            rcs.append(1)
    return rcs


def launch_hydra(exp: str, profile: str, overrides: list[str], sweep_dir: Path, launcher: str) -> list[int]:
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"+exp={exp}", f"profile={profile}", *overrides,
           f"hydra/launcher={launcher}", f"hydra.sweep.dir='{sweep_dir}'", "progress=false"]
    print("[run_table] launch:", " ".join(cmd[2:]), flush=True)
    return [subprocess.run(cmd, cwd=ROOT).returncode]


def main(argv: Optional[list[str]] = None, launch: Optional[Callable[[list[Job]], list[int]]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", help="conf/exp/<exp>.yaml")
    ap.add_argument("--profile", default="cpu", help="full | cpu | smoke")
    ap.add_argument("--sweep-dir", type=Path, default=None, help="default: the exp's hydra.sweep.dir")
    ap.add_argument("--out", type=Path, default=None, help="where the table goes (default: the sweep dir)")
    ap.add_argument("--name", default=None, help="table file stem (default: the exp name)")
    ap.add_argument("--launcher", default="local", help="local | inprocess | <hydra launcher: joblib, submitit_slurm, ...>")
    ap.add_argument("--jobs", type=int, default=1, help="parallel local jobs")
    ap.add_argument("--add", action="append", default=[], help="an extra job set, e.g. 'pruning=none' (space-separated overrides)")
    ap.add_argument("--paper-dataset", default=None, help="paper column to compare with (default: same/closest dataset)")
    ap.add_argument("--dry-run", action="store_true", help="list the jobs and their state, launch nothing")
    ap.add_argument("--no-table", action="store_true")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides; a sweep value (ipc=1,10) replaces that axis")
    a = ap.parse_intermixed_args(argv)
    adds = [s.split() for s in a.add]
    sweep_dir, jobs = plan(a.exp, a.profile, a.overrides, a.sweep_dir, adds)
    pending = [j for j in jobs if not j.done and j.error is None]
    broken = [j for j in jobs if j.error is not None]
    print(f"[run_table] {a.exp} / {a.profile}: {len(jobs)} jobs, {sum(j.done for j in jobs)} finished, "
          f"{len(pending)} to launch, {len(broken)} not composable -> {sweep_dir}", flush=True)
    for j in broken:
        print(f"[run_table]   cannot compose {' '.join(j.overrides)}: {j.error}", file=sys.stderr)
    if a.dry_run:
        for j in jobs:
            print(("done   " if j.done else "error  " if j.error else "pending") + "  " + " ".join(j.overrides))
        return {"jobs": jobs, "launched": [], "sweep_dir": sweep_dir}
    rcs: list[int] = []
    if pending:
        if launch is not None:
            rcs = launch(pending)
        elif a.launcher == "local":
            rcs = launch_local(pending, a.jobs)
        elif a.launcher == "inprocess":
            rcs = launch_inprocess(pending)
        else:
            rcs = launch_hydra(a.exp, a.profile, a.overrides, sweep_dir, a.launcher)
    print(f"[run_table] launched {len(pending)} job(s); failures: {sum(rc != 0 for rc in rcs)}", flush=True)
    result = {"jobs": jobs, "launched": pending, "rcs": rcs, "sweep_dir": sweep_dir}
    if not a.no_table:
        from dfdistill.tables import build_table

        t = build_table(sweep_dir, exp=a.exp, out_dir=a.out or sweep_dir, name=a.name, paper_dataset=a.paper_dataset)
        print(f"[run_table] table: {t['markdown']}", flush=True)
        result["table"] = t
    return result


if __name__ == "__main__":
    r = main()
    sys.exit(1 if any(rc != 0 for rc in r.get("rcs", [])) or any(j.error for j in r["jobs"]) else 0)
