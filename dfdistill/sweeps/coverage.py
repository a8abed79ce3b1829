"""Which paper cells a table target's plan reaches: the jobs `make <target>` plans, each turned into
the record its run would write (labels, placeholder numbers), placed by the table code itself.

Why: a table renders in the paper's shape from whatever runs exist, so a missing axis value or job
set (BiLP Table 2's CIFAR-10 IPC 50, Table 6's first column) only shows as an empty cell after the
GPU time is spent. Planning is cheap; this reads the plan the way the table will read the results.

Two ways to get each job's config:
- exact: compose and resolve every job as `--plan` does (Hydra composition + recipes + profile:
  ~0.4-0.6 s CPU a job, ~700 distinct jobs over all targets at PROFILE=full, so minutes);
- sketch (default): compose each exp once, then per job swap in the group options it selects
  (conf/<group>/<option>.yaml) and set its dotted values. The labels a table reads (method, dataset,
  IPC, pruning, IDC's factor, DF-CoLearn's variant, ITE settings, strata) come from these; recipes and
  profiles change none of them today, which the exact mode checks (tests/unit/reporting/test_table_shapes.py, slow).
Jobs that differ only in the pruning ratio (other than 0) or removal trial land in the same cell, so
one of them stands for all; a max-ratio search is planned per cell (its unpruned baseline and the
ratios it will try land in that same cell), here as one probe job per cell.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

from omegaconf import OmegaConf

from dfdistill.sweeps import jobsets
from dfdistill.sweeps import plan_memo
from dfdistill.sweeps import overrides as ov
from dfdistill.sweeps.plan import Job, expand_jobs, job_set_lines, mark_done, plan, sweep_info
from dfdistill.sweeps.search import RATIO_KEY, TRIAL_KEY
from dfdistill.schema.options import load_option
from dfdistill.config.compose import compose_run_config
from dfdistill.reporting.layouts import N_STRATA
from dfdistill.reporting.grids import build_grid
from dfdistill.reporting.layouts import spec_for
from dfdistill.reporting.paper import load_paper

GROUPS = ("dataset", "method", "pruning", "backbone", "eval")  # conf groups a job line can select
PROBE_RATIO = 0.5  # any ratio in (0, 1): only zero vs non-zero changes where a run lands


def search_cells(exp: str, profile: str, overrides: list[str], adds: list[list[str]]) -> list[Job]:
    """A max-ratio search's cells as MaxRatioSearch builds them (its axes minus ratio and trial), each
    with one probe ratio."""
    fixed = [o for o in [f"+exp={exp}", f"profile={profile}", *overrides]
             if ov.group_of(o) not in (RATIO_KEY, TRIAL_KEY)]
    info = sweep_info(fixed)
    info.params = {k: v for k, v in info.params.items() if k not in (RATIO_KEY, TRIAL_KEY)}
    sets = [job_set_lines(fixed, info.params, add)[0] for add in [[]] + adds]
    cells = expand_jobs(sets, info)
    return expand_jobs([c.overrides + [f"{RATIO_KEY}={PROBE_RATIO}", f"{TRIAL_KEY}=0"] for c in cells], info)


def target_jobs(exp: str, profile: str, overrides: Optional[list[str]] = None,
                adds: Optional[list[list[str]]] = None) -> list[Job]:
    """The jobs `run_table <exp>` (a `make` target) plans, one per distinct cell-relevant setting;
    adds: the extra job sets (default: the table's registered ones, jobsets.py)."""
    overrides = list(overrides or [])
    adds = jobsets.extra_sets(exp, overrides) if adds is None else adds
    if exp in jobsets.SEARCH_EXPS:
        jobs = search_cells(exp, profile, overrides, adds)
    else:
        jobs = plan(exp, profile, overrides, adds=adds, check=False)[1]
    out, seen = [], set()
    for job in jobs:  # expanded lines are `key=value` (no sweep, no parse needed: Hydra's parser is slow)
        lines = [(line.split("=", 1)[0].lstrip("+~"), line) for line in job.overrides]
        ratio = [line.split("=", 1)[1] for key, line in lines if key == RATIO_KEY]
        key = tuple(line for k, line in lines if k not in (RATIO_KEY, TRIAL_KEY)) + (bool(ratio) and float(ratio[-1]) > 0,)
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


@lru_cache(maxsize=None)
def _option(group: str, option: str) -> dict:
    return OmegaConf.to_container(load_option(group, option), resolve=False)


@lru_cache(maxsize=None)
def _base(fixed: tuple[str, ...]) -> dict:
    return plan_memo.recall(("composed", fixed),
                            lambda: OmegaConf.to_container(compose_run_config(list(fixed)), resolve=False))


def sketch_config(job: Job) -> dict[str, Any]:
    """The job's config for labelling: its exp composed once, its group options and values on top
    (plain dicts: an OmegaConf copy of the whole config per job costs more than the rest together)."""
    parsed = ov.parse(job.overrides)
    fixed = tuple(o.input_line for o in parsed if o.key_or_group in ("exp", "profile"))
    cfg = dict(_base(fixed))  # copied on write below: the cached base and options stay untouched
    for o in parsed:  # group options first: a value inside a group applies to the option the job selects
        if o.key_or_group in GROUPS:
            cfg[o.key_or_group] = _option(o.key_or_group, str(o.value()))
    for o in parsed:
        if o.key_or_group not in GROUPS + ("exp", "profile"):
            *path, last = o.key_or_group.split(".")
            node = cfg
            for part in path:
                child = node.get(part)
                node[part] = dict(child) if isinstance(child, dict) else {}
                node = node[part]
            node[last] = o.value()
    return cfg


def exact_config(job: Job) -> dict[str, Any]:
    """The job's resolved config, as `--plan` and the run itself compose it."""
    mark_done(job)
    if job.error:
        raise RuntimeError(f"cannot compose {' '.join(job.overrides)}: {job.error}")
    return OmegaConf.to_container(job.resolved, resolve=True)


def planned_record(job: Job, cfg: dict[str, Any]) -> dict[str, Any]:
    """What job's results.jsonl line would say about where it belongs (pipeline.report's keys), with
    placeholder numbers: a run counts in its cell, whatever it measures."""
    pruning = cfg.get("pruning") or {}
    pruned = bool(pruning.get("_target_"))  # as pipeline.report: a static selection has a ratio
    return {"config": cfg, "method": cfg["method"]["name"], "dataset": cfg["dataset"]["name"], "ipc": cfg["ipc"],
            "pruning": pruning.get("name", "none"), "pruning_ratio": float(pruning.get("ratio") or 0.0) if pruned else 0.0,
            "accs": [0.5], "acc_mean": 0.5, "acc_std": 0.0, "stage_seconds": {"distill": 1.0}, "sec_per_iter": 1.0,
            "ite_seconds_per_iter": 1.0, "random_accs": [0.5], "output_dir": str(job.out_dir)}


def diversity_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BiLP Fig. 4's data from its planned score jobs: every stratum of each dataset."""

    return [{"dataset": r["dataset"], "stratum": k, "ratio": 1.0, "intra": 1.0, "inter": 1.0,
             "output_dir": r["output_dir"]} for r in records for k in range(1, N_STRATA + 1)]


def uncovered(exp: str, profile: str = "full", overrides: Optional[list[str]] = None,
              adds: Optional[list[list[str]]] = None, exact: bool = False) -> list[tuple[str, str]]:
    """The paper cells (row, column) of `exp`'s table that no planned job lands in: cells where the
    paper prints something, every cell of a figure without numbers; derived rows (DF-CoLearn's
    Improvement) and paper-only rows (`Layout.paper_only`) excepted. Empty = the plan covers the table."""

    layout = spec_for(exp)
    config = exact_config if exact else sketch_config
    records = [planned_record(j, config(j)) for j in target_jobs(exp, profile, overrides, adds)]
    if layout.kind == "diversity":
        records = diversity_rows(records)
    grid = build_grid(layout, records, load_paper())
    figure = layout.kind in ("strata", "diversity")
    return [(r, c) for (r, c), cell in grid.cells.items()
            if not cell.runs and layout.runs_row(r) and (figure or paper_ran(cell.paper))]


def paper_ran(paper: Any) -> bool:
    """Whether the paper reports a run in this cell: a number, not "—" (not run) or an "(est.)" time
    (Table 7's full-data MTT, estimated by the paper instead of run; our plan does not run it either)."""
    return paper is not None and paper.text != "—" and "(est.)" not in paper.text


def report_line(exp: str, profile: str, overrides: list[str], adds: list[list[str]], show: int = 8) -> str:
    """`--plan`'s coverage line: which paper cells the plan leaves empty (the first `show` of them)."""
    missing = uncovered(exp, profile, overrides, adds)
    if not missing:
        return f"[coverage] {exp} / {profile}: every paper cell has a planned job"
    cells = "; ".join(f"{r} / {c}" for r, c in missing[:show]) + ("; ..." if len(missing) > show else "")
    return f"[coverage] {exp} / {profile}: {len(missing)} paper cell(s) with no planned job: {cells}"

