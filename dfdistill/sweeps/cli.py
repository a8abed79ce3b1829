"""`python scripts/run_table.py <exp> ...` (what the Make targets call): plan, launch what is
missing, build the table. See docs/sweeps.md.

  python scripts/run_table.py bilp_tab4 --profile cpu dataset=cifar10_jpeg 'method=dc,dm' 'ipc=1,10'
  python scripts/run_table.py bilp_tab4 --profile full --plan             # jobs, settings, cost; runs nothing
  python scripts/run_table.py bilp_tab1 --search --profile cpu ...        # max pruning ratio per cell
  python scripts/run_table.py bilp_tab4 --launcher joblib hydra.launcher.n_jobs=4

Launchers: local (default; subprocesses, --jobs N at a time or --jobs auto = one per visible GPU,
one GPU each), inprocess (this process; tests), or a Hydra launcher (joblib, submitit_local,
submitit_slurm: `pip install -e .[launchers]`), which receives exactly the pending jobs of every
job set through the `joblist` sweeper. `hydra.*` / `hydra/...` overrides go to the launch only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from dfdistill.core.errors import ConfigError, DfdistillError
from dfdistill.run.preflight import check_datasets
from dfdistill.reporting.cells import DEFAULT_RULE, check_rule
from dfdistill.sweeps import feasible, gc_pause, jobsets, plan_memo, preview
from dfdistill.sweeps.gpus import jobs_arg
from dfdistill.sweeps.launch import configured_launcher, launch_hydra, launch_inprocess, launch_local, parallel_overrides
from dfdistill.sweeps.model import device
from dfdistill.sweeps.plan import Job, adopt, index_records, job_why_not, plan, sweep_info
from dfdistill.sweeps.search import (START_ORDERS, MaxRatioSearch, SearchConfig, paper_max_ratio, parse_ladder,
                                     points_at_most, points_if)
from dfdistill.reporting.layouts import spec_for
from dfdistill.sweeps.coverage import report_line
from dfdistill.reporting.build import build_table
from dfdistill.sweeps.plan import mark_done
from dfdistill.sweeps.model import devices, fmt_hours

Launch = Callable[[list[Job]], list[int]]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="run_table.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", help="conf/exp/<exp>.yaml")
    ap.add_argument("--profile", default="cpu", help="full | cpu | smoke")
    ap.add_argument("--sweep-dir", type=Path, default=None, help="default: the exp's hydra.sweep.dir")
    ap.add_argument("--out", type=Path, default=None, help="where the table goes (default: the sweep dir)")
    ap.add_argument("--name", default=None, help="table file stem (default: the exp name)")
    ap.add_argument("--launcher", default="local", help="local | inprocess | joblib | submitit_local | submitit_slurm ...")
    ap.add_argument("--jobs", type=jobs_arg, default="auto",
                    help="jobs at once: auto (default: one per visible GPU, 1 without) | N; one GPU each")
    ap.add_argument("--add", action="append", default=[], help="an extra job set, e.g. 'pruning=none' (space-separated overrides)")
    ap.add_argument("--paper-dataset", default=None, help="paper column to compare with (default: same/closest dataset)")
    ap.add_argument("--dry-run", action="store_true", help="list the jobs and their state, launch nothing")
    ap.add_argument("--plan", action="store_true", help="jobs, settings that differ from the defaults, modelled cost and memory")
    ap.add_argument("--gpu", default="a100-80gb", help="device the plan's hours and memory are for: "
                    "a100-80gb | a100-40gb | h100 | rtx4090 | cpu (dfdistill/sweeps/devices.yaml)")
    ap.add_argument("--search", action="store_true", help="max-ratio search per cell (default for BiLP Tables 1-2, Fig. 2)")
    ap.add_argument("--grid", action="store_true", help="run the exp's fixed grid even where the table is a search")
    ap.add_argument("--no-extra", action="store_true", help="leave out the table's registered extra job sets (jobsets.py)")
    ap.add_argument("--reuse", action="append", type=Path, default=[],
                    help="another sweep dir whose finished runs with the same config count (copied, not rerun)")
    ap.add_argument("--ladder", default="paper", help="search ratios: paper (the values BiLP reports) | fine | 0.1,0.5,...")
    ap.add_argument("--trials", type=int, default=5, help="removal trials per searched ratio (pruning.seed_offset)")
    ap.add_argument("--rule", default=None,
                    help="max-ratio keep rule (search.rule=... works too): both_std (default) | unpruned_std | se; "
                         "see dfdistill/reporting/cells.py")
    ap.add_argument("--points-per-round", type=int, default=1, help="ratios per cell per search round (1 = bisection)")
    ap.add_argument("--start", default="paper", choices=START_ORDERS,
                    help="search order: paper (default: towards the paper's ratio for the cell, never more ratios than "
                         "bisection) | bisect")
    ap.add_argument("--no-table", action="store_true")
    ap.add_argument("--no-plan-memo", action="store_true",
                    help="--plan / --dry-run: compose and resolve every job afresh, keep nothing (sweeps/plan_memo.py)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides; a sweep value (ipc=1,10) replaces that axis")
    return ap


def split_hydra(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(job overrides, launch-only hydra overrides): Hydra keeps hydra.* out of job dir names too."""
    hyd = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    return [o for o in overrides if o not in hyd], hyd


def make_launch(a: argparse.Namespace, sweep_dir_of: Callable[[], Path], hydra_overrides: list[str]) -> Launch:
    if a.launcher == "local":
        return lambda jobs: launch_local(jobs, a.jobs, extra=hydra_overrides)
    if a.launcher == "inprocess":
        return launch_inprocess

    def launch(jobs: list[Job]) -> list[int]:
        configured = configured_launcher(a.launcher) if a.launcher.startswith("submitit") else {}
        extra = parallel_overrides(a.launcher, a.jobs, hydra_overrides, configured=configured)
        return launch_hydra(jobs, sweep_dir_of(), a.launcher, [*extra, *hydra_overrides])

    return launch


def reuse_dirs(a: argparse.Namespace) -> list[Path]:
    """--reuse dirs + the sweep dirs of the tables this one shares runs with (jobsets.REUSE)."""
    dirs = list(a.reuse)
    for other in jobsets.REUSE.get(a.exp, []):
        if a.sweep_dir is not None:
            dirs.append(Path(a.sweep_dir).parent / other)
        else:
            dirs.append(sweep_info([f"+exp={other}", f"profile={a.profile}"]).sweep_dir)
    return [d.resolve() for d in dirs]


def print_coverage(a: argparse.Namespace, overrides: list[str], adds: list[list[str]]) -> None:
    """Which of the paper's cells the plan leaves without a job (dfdistill/sweeps/coverage.py)."""

    if spec_for(a.exp).paper != "none":
        print(report_line(a.exp, a.profile, overrides, adds), flush=True)


def build(a: argparse.Namespace, sweep_dir: Path, skipped: Optional[dict[str, str]] = None) -> Optional[dict]:
    if a.no_table:
        return None

    t = build_table(sweep_dir, exp=a.exp, out_dir=a.out or sweep_dir, name=a.name, paper_dataset=a.paper_dataset,
                    rule=a.rule, command=getattr(a, "command", None), skipped=skipped)
    print(f"[run_table] table: {t['markdown']}", flush=True)
    return t


def run_search(a: argparse.Namespace, overrides: list[str], hydra_overrides: list[str], adds: list[list[str]],
               launch: Optional[Launch]) -> dict:
    cfg = SearchConfig(ladder=parse_ladder(a.ladder), trials=a.trials, points_per_round=a.points_per_round,
                       rule=a.rule or DEFAULT_RULE, start=a.start)
    holder: dict = {}
    launch = launch or make_launch(a, lambda: holder["s"].info.sweep_dir, hydra_overrides)
    previewing = a.plan or a.dry_run  # reads no finished runs elsewhere: no need to compose the reuse dirs
    s = MaxRatioSearch(a.exp, a.profile, overrides, launch, cfg, a.sweep_dir, adds,
                       reuse=[] if previewing else reuse_dirs(a))
    holder["s"] = s
    if previewing:
        out = plan_search(s, a)
        if a.plan:
            print_coverage(a, overrides, adds)
        return out
    cells = s.run()
    path = s.write_summary()
    for c in cells:
        sm = c.summary()
        if sm["max_ratio"] is not None:
            (um, us, _), (am, as_, _) = sm["unpruned_pct"], sm["at_max_pct"]
            print(f"[search] {c.name}: max ratio {100 * sm['max_ratio']:g}% (unpruned {um:.1f} ± {us:.1f}; "
                  f"at max {am:.1f} ± {as_:.1f}; {c.rounds} rounds)")
    print(f"[run_table] search summary: {path}; launched {len(s.launched)} job(s)", flush=True)
    out = {"cells": cells, "launched": s.launched, "sweep_dir": s.info.sweep_dir, "rcs": [],
           "jobs": [], "summary": path}
    out["skipped"] = {c.name: c.skipped for c in cells if c.skipped}
    out["table"] = build(a, s.info.sweep_dir, out["skipped"])
    return out


def cell_points(s: MaxRatioSearch, c) -> tuple[int, Optional[int]]:
    """(the most ratios the cell's search can run, the ratios it runs if its verdicts are the paper's;
    None where the paper prints no ratio for the cell)."""
    ladder, k = c.ladder or s.cfg.ladder, s.cfg.points_per_round
    paper = paper_max_ratio(c.selection, c.baseline.resolved, ladder)
    return (points_at_most(ladder, k, c.start),
            None if paper is None else points_if(ladder, paper, k, c.start))


def scaled(t: dict, num: int, den: int) -> dict:
    """Plan totals of jobs that stand for `den` ratio jobs each, re-counted for `num`."""
    out = dict(t)
    for k in ("jobs", "pending", "done", "error", "no_fit"):
        out[k] = t[k] * num // den
    out["seconds"] = t["seconds"] * num / den
    return out


def plan_search(s: MaxRatioSearch, a: argparse.Namespace) -> dict:
    """A search's jobs per cell: the baseline + trials x the ratios it runs, at most and where its
    verdicts agree with the paper's (the ratio jobs costed at the ladder's middle ratio)."""

    dev = device(a.gpu)
    rungs = len(s.cfg.ladder)
    lines, total, likely = [], preview.new_totals(), preview.new_totals()
    probes = {}
    for c in s.cells:
        if not c.error:
            probes[c.name] = s._jobs(c, [s.cfg.ladder[len(s.cfg.ladder) // 2]], trials=1)[0]
            mark_done(probes[c.name])
            mark_done(c.baseline)
    preview.prefetch_defaults([j for c in s.cells if not c.error for j in (c.baseline, probes[c.name])])
    for c in s.cells:
        if c.error:
            lines.append(f"error    {c.name}: {c.error}")
            continue
        most, if_paper = cell_points(s, c)
        ls, t = preview.job_lines([c.baseline], dev)
        ls2, t2 = preview.job_lines([probes[c.name]], dev, multiplier=s.cfg.trials * most)
        agree = "" if if_paper is None else f", {s.cfg.trials * if_paper + 1} if its verdicts are the paper's"
        lines += [f"cell {c.name} ({c.selection} selection): <= {s.cfg.trials * most + 1} jobs{agree}", *ls, *ls2]
        total = preview.add_totals(preview.add_totals(total, t), t2)
        likely = preview.add_totals(preview.add_totals(likely, t), scaled(t2, most if if_paper is None else if_paper, most))
    print("\n".join(lines))
    order = ("towards the paper's ratio, at most bisection's count" if s.cfg.start == "paper" else "bisection")
    print(f"[run_table] {a.exp} / {a.profile}: search over {rungs} ratios ({order}) x {s.cfg.trials} trials, "
          f"at most {preview.totals_line(total, dev)}; {likely['jobs']} jobs, {fmt_hours(likely['seconds'])} "
          f"where every verdict is the paper's")
    return {"cells": s.cells, "launched": [], "sweep_dir": s.info.sweep_dir, "jobs": [], "rcs": [], "totals": total,
            "totals_if_paper": likely}


def main(argv: Optional[list[str]] = None, launch: Optional[Launch] = None, memo: bool = False) -> dict:
    """run_table.py's work. `memo`: a --plan / --dry-run keeps what it composes and resolves for the
    next run of the same command (sweeps/plan_memo.py; the command line asks for it, in-process
    callers that may patch code do not)."""
    a = parser().parse_intermixed_args(argv)
    command = sys.argv[1:] if argv is None else list(argv)
    previewing = a.plan or a.dry_run  # launches nothing: the collector may wait (sweeps/gc_pause.py)
    with gc_pause.paused(previewing), plan_memo.session(a.exp, command, on=memo and previewing and not a.no_plan_memo):
        return _main(a, launch)


def _main(a: argparse.Namespace, launch: Optional[Launch]) -> dict:
    rules = [o.split("=", 1)[1] for o in a.overrides if o.startswith("search.rule=")]
    a.overrides = [o for o in a.overrides if not o.startswith("search.rule=")]  # a table setting, not a job's
    a.rule = rules[-1] if rules else a.rule
    if a.rule is not None:
        try:
            check_rule(a.rule)
        except ValueError as exc:  # a table setting the user typed: one line, exit 2 (cli())
            raise ConfigError(str(exc)) from None

    if a.gpu not in devices():
        print(f"error: unknown --gpu {a.gpu!r}; type one of --gpu {' | '.join(devices())}", file=sys.stderr)
        raise SystemExit(2)
    overrides, hydra_overrides = split_hydra(a.overrides)
    adds = ([] if a.no_extra else jobsets.extra_sets(a.exp, overrides)) + [s.split() for s in a.add]
    for extra in adds:
        print(f"[run_table] job set: {' '.join(extra)}", flush=True)
    if a.search or (a.exp in jobsets.SEARCH_EXPS and not a.grid):
        return run_search(a, overrides, hydra_overrides, adds, launch)
    sweep_dir, jobs = plan(a.exp, a.profile, overrides, a.sweep_dir, adds)
    if not (a.plan or a.dry_run):
        adopt([j for j in jobs if j.key], reuse_dirs(a))
    if not (a.plan or a.dry_run):  # a missing dataset is one line before anything else (every job would fail)
        check_datasets(j.resolved.dataset for j in jobs if not j.done and j.resolved is not None)
    skipped = {str(j.out_dir.name): why for j in jobs if not j.done and j.key is not None
               for why in [job_why_not(j)] if why}
    pending = [j for j in jobs if not j.done and j.error is None and j.out_dir.name not in skipped]
    broken = [j for j in jobs if j.error is not None]
    if not a.plan:  # the plan prints one summary line of its own
        print(f"[run_table] {a.exp} / {a.profile}: {len(jobs)} jobs, {sum(j.done for j in jobs)} finished, "
              f"{len(pending)} to launch, {len(skipped)} skipped, {len(broken)} not composable -> {sweep_dir}",
              flush=True)
    for j in broken:
        print(f"[run_table]   cannot compose {' '.join(j.overrides)}: {j.error}", file=sys.stderr)
    if skipped:
        print(feasible.skipped_line([f"{feasible.short_name(k)} ({v})" for k, v in skipped.items()]), flush=True)
    if a.plan:
        dev = device(a.gpu)
        index = index_records(reuse_dirs(a))  # another table's finished runs of the same config: reused
        for j in jobs:
            j.done = j.done or (j.key is not None and j.key in index)
        lines, totals = preview.job_lines(jobs, dev)
        print("\n".join(lines))
        print(f"[run_table] {a.exp} / {a.profile}: {preview.totals_line(totals, dev)}")
        print_coverage(a, overrides, adds)
        return {"jobs": jobs, "launched": [], "sweep_dir": sweep_dir, "totals": totals, "rcs": []}
    if a.dry_run:
        for j in jobs:
            state = "done   " if j.done else "error  " if j.error else "skipped" if j.out_dir.name in skipped else "pending"
            print(state + "  " + " ".join(j.overrides))
        return {"jobs": jobs, "launched": [], "sweep_dir": sweep_dir, "rcs": []}
    rcs: list[int] = []
    if pending:
        rcs = (launch or make_launch(a, lambda: sweep_dir, hydra_overrides))(pending)
    print(f"[run_table] launched {len(pending)} job(s); failures: {sum(rc != 0 for rc in rcs)}", flush=True)
    result = {"jobs": jobs, "launched": pending, "rcs": rcs, "sweep_dir": sweep_dir, "skipped": skipped}
    result["table"] = build(a, sweep_dir, skipped)
    return result


def cli(argv: Optional[list[str]] = None) -> int:
    """scripts/run_table.py: a user error (a missing dataset, a bad override) is one line, exit 2."""
    try:
        return exit_code(main(argv, memo=True))
    except DfdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def exit_code(result: dict) -> int:
    bad = any(rc != 0 for rc in result.get("rcs", [])) or any(j.error for j in result.get("jobs", []))
    bad = bad or any(c.error for c in result.get("cells", []))
    return 1 if bad else 0
