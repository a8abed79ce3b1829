"""Job planning: an exp's sweep axes + command-line overrides + `--add` job sets -> the job list,
each with its deterministic directory and whether it has finished.

Why: Hydra multirun cannot resume, and relaunching a finished sweep starts every process again.
Planning first (the same expansion and the same `<sweep dir>/<override_dirname>` as `run.py -m`)
lets any launcher receive only the jobs whose directory does not yet hold a result of the same
resolved config (`config_key`), so an interrupted or extended sweep computes only what is missing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from dfdistill.config import plain_nodes
from dfdistill.config.plain_view import PlainView
from dfdistill.config.compose import compose_run_config
from dfdistill.reporting.collect import ARCHIVE_FILE, read_archive
from dfdistill.sweeps import feasible
from dfdistill.sweeps import overrides as ov
from dfdistill.sweeps.jobsets import dropped
from dfdistill.sweeps.compose_cache import compose_job
from dfdistill.config.identity import own_result_key
from dfdistill.config.resolve import resolve_config, say_notes
from dfdistill.sweeps import plan_memo
from dfdistill.sweeps import compose_cache
from dfdistill.pruning.config import PruningConfig
from dfdistill.schema.groups import check_finite, checked

REPO = Path(__file__).resolve().parents[2]
RESULTS_FILE = "results.jsonl"


@dataclass
class Job:
    overrides: list[str]
    out_dir: Path
    key: Optional[str] = None  # config_key of the resolved config (None when it does not compose)
    done: bool = False
    error: Optional[str] = None
    set_index: int = 0  # 0 = the exp's grid, i = the i-th --add job set
    resolved_dict: Optional[dict] = field(default=None, repr=False)  # `resolved` as plain data, made once (read only)
    choices: dict[str, Any] = field(default_factory=dict, repr=False)  # Hydra's group choices (method: dsa, ...)
    shapes: Optional[dict] = field(default=None, repr=False, compare=False)  # its sweep's resolved shapes (derive)
    pickled: Optional[bytes] = field(default=None, repr=False, compare=False)  # `resolved` from the plan memo, not loaded yet
    _resolved: Optional[DictConfig] = field(default=None, repr=False, init=False)
    _recipe: Optional[tuple] = field(default=None, repr=False, init=False, compare=False)  # derive's, not built yet

    @property
    def resolved(self) -> Optional[DictConfig]:
        """The resolved config (None when it does not compose). One kept by the plan memo is loaded,
        one derived from its shape (`derive`) built, on first use: a plan reads most jobs' figures
        from the memo or from their plain copy (`view`) and never needs their config."""
        if self._resolved is None and self.pickled is not None:
            self._resolved, self.pickled = pickle.loads(self.pickled), None
        if self._resolved is None and self._recipe is not None:
            self._resolved, self._recipe = _built(*self._recipe), None
        return self._resolved

    @resolved.setter
    def resolved(self, cfg: Optional[DictConfig]) -> None:
        self._resolved, self.pickled, self._recipe = cfg, None, None

    def view(self) -> Any:
        """The resolved config to read values from: its plain copy behind attribute access
        (config/plain_view.py; the DictConfig is not built for it), else the config itself."""
        return self.resolved if self.resolved_dict is None else PlainView(self.resolved_dict)


@dataclass
class SweepInfo:
    """What the exp's composed Hydra config says about its sweep."""

    sweep_dir: Path
    params: dict[str, str]
    exclude: list[str]
    item_sep: str = ","
    kv_sep: str = "="
    exp: Optional[str] = None  # conf/exp/<exp>: its cells the paper does not report are left out (jobsets.DROP)
    shapes: dict = field(default_factory=dict, repr=False, compare=False)  # shape -> a resolved job (derive)


def sweep_info(fixed: list[str], sweep_dir: Optional[Path] = None) -> SweepInfo:
    """Compose the plain (non-sweep) overrides once and read hydra.sweeper.params / sweep.dir."""
    sweep, params, exclude, item_sep, kv_sep, exp = plan_memo.recall(
        ("sweep_info", tuple(fixed), None if sweep_dir is None else str(sweep_dir)),
        lambda: _sweep_fields(fixed, sweep_dir))
    return SweepInfo(sweep, dict(params), list(exclude), item_sep, kv_sep, exp)


def _sweep_fields(fixed: list[str], sweep_dir: Optional[Path]) -> tuple:
    plain = [o for o in fixed if not ov.is_sweep(o)]
    hcfg = compose_run_config(plain, return_hydra_config=True)
    params = {str(k): str(v) for k, v in (hcfg.hydra.sweeper.get("params") or {}).items()}
    dn = hcfg.hydra.job.config.override_dirname
    if sweep_dir is None:
        sweep_dir = Path(str(hcfg.hydra.sweep.dir))
    sweep_dir = (sweep_dir if sweep_dir.is_absolute() else REPO / sweep_dir).resolve()
    exp = next((o.split("=", 1)[1] for o in fixed if o.lstrip("+").startswith("exp=")), None)
    return sweep_dir, params, [str(k) for k in dn.exclude_keys], str(dn.item_sep), str(dn.kv_sep), exp


def job_set_lines(fixed: list[str], params: dict[str, str], add: list[str]) -> tuple[list[str], list[str]]:
    """Override lines of one job set, and the fixed overrides it leaves out.

    An --add set that selects a group (`pruning=none`) replaces that group: the exp's axes and the
    command-line overrides inside it (`pruning.ratio=...`) do not apply to the set."""
    groups = {ov.group_of(a) for a in add}
    inside = lambda k: any(k.startswith(g + ".") for g in groups)  # noqa: E731
    axes = [f"{k}={v}" for k, v in params.items() if not inside(ov.group_of(f"{k}={v}"))]
    kept = [o for o in fixed if not inside(ov.group_of(o))]
    dropped = [o for o in fixed if o not in kept and o not in add]
    return axes + kept + list(add), dropped


def expand_jobs(sets: list[list[str]], info: SweepInfo) -> list[Job]:
    """Every job of every set, Hydra's order, one per distinct directory."""

    jobs: list[Job] = []
    seen: set[str] = set()
    left_out = 0
    for i, lines in enumerate(sets):
        for job in ov.expand(lines):
            if dropped(info.exp, job):
                left_out += 1
                continue
            name = ov.dirname(job, info.exclude, info.item_sep, info.kv_sep)
            if name not in seen:
                seen.add(name)
                jobs.append(Job(job, info.sweep_dir / name, set_index=i, shapes=info.shapes))
    if left_out:
        print(f"[run_table] left out {left_out} job(s) of cells the paper does not report (jobsets.DROP)", file=sys.stderr)
    return jobs


def plan(exp: str, profile: str, overrides: list[str], sweep_dir: Optional[Path] = None,
         adds: Optional[list[list[str]]] = None, check: bool = True) -> tuple[Path, list[Job]]:
    """Expand the sweep of conf/exp/<exp>.yaml into jobs and mark the finished ones."""
    fixed = [f"+exp={exp}", f"profile={profile}", *overrides]
    info = sweep_info(fixed, sweep_dir)
    sets = []
    for add in [[]] + list(adds or []):
        lines, dropped = job_set_lines(fixed, info.params, add)
        if dropped:  # silent dropping once cost a sweep its reduced schedule: say it
            print(f"[run_table] --add '{' '.join(add)}' replaces that group, so these overrides do not apply "
                  f"to it: {' '.join(dropped)} (repeat them inside --add to keep them)", file=sys.stderr)
        sets.append(lines)
    jobs = expand_jobs(sets, info)
    if check:
        prefetch(jobs)
        for job in jobs:
            mark_done(job)
    return info.sweep_dir, jobs


def prefetch(jobs: list[Job]) -> None:
    """Compose what these jobs need in few Hydra compositions (compose_cache.Composer.prefetch)."""

    compose_cache.prefetch([j.overrides for j in jobs if j.resolved is None])


def job_config(job: Job) -> DictConfig:
    """The composed (unresolved) config of a job, writing into its directory (one Hydra composition
    per distinct group selection: compose_cache.py; it also notes the job's group choices)."""

    cfg, job.choices = compose_job(job.overrides)
    with open_dict(cfg):
        cfg.output_dir = str(job.out_dir)
    return cfg


def finished_records(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a truncated line is not a result
            continue
    return out


def job_record(job: Job) -> Optional[dict[str, Any]]:
    """The job's result record (same config_key), or None."""
    recs = [r for r in finished_records(job.out_dir) if job.key is not None and r.get("config_key") == job.key]
    return recs[-1] if recs else None


# Leaves of a job that no step of resolution reads: recipes, the protocol and the profile read the
# groups, dataset and IPC; validation only range-checks these (and whether ratio / stratum are set).
# Jobs of one sweep that differ only in them (a search's ratios and removal trials, a grid's ratio
# or stratum axis) have the same *shape*: one is resolved, the others get a copy of its resolved
# config with their own leaves, overrides and dir put in (~3 ms instead of ~30).
# tests/unit/sweeps/test_plan_derive.py checks config and keys equal a full resolution for real targets.
LEAVES = ("pruning.ratio", "pruning.seed_offset", "pruning.stratum")
ZERO_APART = ("pruning.ratio", "pruning.stratum")  # validation reads whether they are 0: a shape of its own


def shape(overrides: list[str]) -> tuple[str, ...]:
    """The overrides with the values of LEAVES blanked: jobs of one shape resolve alike."""
    def blank(line: str) -> str:
        key, _, value = line.partition("=")
        if key not in LEAVES:
            return line
        try:
            return f"{key}={0 if key in ZERO_APART and not float(value) else '*'}"
        except ValueError:  # not a number: resolved on its own (and refused there)
            return line
    return tuple(blank(line) for line in overrides)


def _leaf_values(job: Job) -> dict[str, Any]:
    return {o.key_or_group: o.value() for o in ov.parse([x for x in job.overrides if x.split("=", 1)[0] in LEAVES])}


def derive(job: Job) -> bool:
    """Fill in the resolved config of `job` (and its plain copy, its choices) from a resolved job of
    the same shape in its sweep; False where there is none, or a leaf value whose check or type
    differs (then the full resolution decides, with its own message)."""
    if job.shapes is None or shape(job.overrides) not in job.shapes:
        return False
    blob, plain, choices, leaves, pruning = job.shapes[shape(job.overrides)]
    d, values = copy.deepcopy(plain), {}
    for key, value in _leaf_values(job).items():
        old = leaves[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or type(old) not in (int, float):
            return False
        if type(old) is int and not isinstance(value, int):
            return False
        if key in ZERO_APART and bool(value) != bool(old):  # validation's rule reads whether it is 0
            return False
        group, leaf = key.split(".")
        d[group][leaf] = values[key] = type(old)(value)  # as the schema types it (ratio float, seed_offset int)
    try:  # the checks a full resolution runs on them: the schema's own, on its typed object
        check_finite(dataclasses.replace(pruning, **{k.split(".")[1]: v for k, v in values.items()}), "pruning")
    except Exception:  # noqa: BLE001 - the full resolution raises its own message
        return False
    d["output_dir"] = str(job.out_dir)
    d["cli_overrides"] = [o for o in job.overrides if not o.lstrip("+~").startswith("hydra.")]
    job.resolved, job.resolved_dict, job.choices = None, d, dict(choices)
    job._recipe = (blob, values, d["output_dir"], d["cli_overrides"])  # its DictConfig: built on first use
    return True


def _built(blob: ShapeConfig, values: dict[str, Any], out_dir: str, lines: list[str]) -> DictConfig:
    """A derived job's DictConfig: its shape's, with its own leaves, dir and typed lines."""
    cfg = blob.copy()
    for key, value in values.items():
        group, leaf = key.split(".")
        cfg[group][leaf] = value
    cfg.output_dir = out_dir
    for i, line in enumerate(lines):  # one shape: as many lines, only the leaves differ
        if cfg.cli_overrides[i] != line:
            cfg.cli_overrides[i] = line
    return cfg


def _derived(job: Job) -> bool:
    try:
        return derive(job)
    except Exception:  # noqa: BLE001 - a shortcut that fails is taken the long way (which says what is wrong)
        return False


def _keep_shape(job: Job) -> None:
    """Keep `job`'s resolution for the jobs of its shape (`derive`)."""
    if job.shapes is None or shape(job.overrides) in job.shapes:
        return
    try:
        blob = ShapeConfig(job.resolved)
        leaves = {k: job.resolved_dict[k.split(".")[0]][k.split(".")[1]] for k in _leaf_values(job)}
        pruning = checked(PruningConfig, job.resolved_dict["pruning"], "pruning")  # as validated (kept)
    except Exception:  # noqa: BLE001 - a leaf is not there: its siblings resolve in full
        return
    job.shapes[shape(job.overrides)] = (blob, job.resolved_dict, dict(job.choices), leaves, pruning)


class ShapeConfig:
    """A shape's resolved config, pickled on first use: derived jobs are built from copies of it
    (`_built`), and a plan builds few of them (it reads their plain copies). Read only: it is the
    first job's own `resolved`, which nothing changes after resolution."""

    __slots__ = ("cfg", "data")

    def __init__(self, cfg: Optional[DictConfig], data: Optional[bytes] = None) -> None:
        self.cfg, self.data = cfg, data

    def copy(self) -> DictConfig:
        """A fresh copy (from the pickle: ~3x cheaper than a deepcopy, ~5x than a new config)."""
        if self.data is None:
            try:
                self.data = pickle.dumps(self.cfg)
            except Exception:  # noqa: BLE001 - something that does not pickle: deep copies instead
                return copy.deepcopy(self.cfg)
        return pickle.loads(self.data)

    def __reduce__(self) -> tuple:  # the plan memo keeps the pickle, once however many recipes name it
        self.copy()
        return (ShapeConfig, (None, self.data))


def mark_done(job: Job) -> None:
    """done = the job dir's results.jsonl holds this exact resolved config (same config_key: the
    distillation and its evaluation, as dfdistill.run.pipeline.run records it)."""

    if job.error is not None:
        return
    if job.key is None:  # a job's resolution depends on its overrides and dir only: once per Job
        memo_key = ("job", tuple(job.overrides), str(job.out_dir))
        kept = plan_memo.get(memo_key)
        if kept is not None:
            _restore(job, kept)
        else:
            _resolve(job)
            plan_memo.put(memo_key, lambda: _kept(job))
        if job.error is not None:
            return
    job.done = job_record(job) is not None  # never kept: read fresh every time


def _resolve(job: Job) -> None:
    try:
        if not _derived(job):
            job.resolved = resolve_config(job_config(job))
            job.resolved_dict = plain_nodes.to_plain(job.resolved)  # to_container(resolve=True), faster
            _keep_shape(job)
        job.key = own_result_key(job.resolved_dict)
    except Exception as exc:  # a missing method/pruning option: reported, never launched
        job.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def _kept(job: Job) -> tuple:
    """What the plan memo keeps of a job's resolution (sweeps/plan_memo.py): its config pickled, or
    for a derived job not built yet the recipe that builds it (its shape's pickle, kept once)."""
    if job.error is not None:
        blob = None
    else:
        blob = job._recipe if job._resolved is None and job._recipe is not None else pickle.dumps(job.resolved)
    return job.key, job.error, blob, job.resolved_dict, dict(job.choices)


def _restore(job: Job, kept: tuple) -> None:
    """A job's resolution from the plan memo: its config loads on first use, its recipe notes are
    said as its resolution says them."""
    job.key, job.error, blob, job.resolved_dict, choices = kept
    job.choices = dict(choices)
    if isinstance(blob, tuple):  # a derive recipe (_kept)
        job._recipe = blob
    elif blob is not None:
        job.pickled = blob
    if job.resolved_dict is not None:
        say_notes((job.resolved_dict.get("provenance") or {}).get("recipe") or {})


def job_why_not(job: Job) -> Optional[str]:
    """Why the resolved job cannot run at its data size (feasible.why_not; kept by the plan memo)."""
    return plan_memo.recall(("why_not", tuple(job.overrides), str(job.out_dir)), lambda: feasible.why_not(job.view()))


def index_records(dirs: list[Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """config_key -> (run dir, record) of every finished run under `dirs`, including the records of
    runs.jsonl archives (a committed table's runs: the archive's folder stands for the run dir)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for d in dirs:
        for path in sorted(Path(d).rglob(ARCHIVE_FILE)) if Path(d).exists() else []:
            for rec in read_archive(path):
                if rec.get("config_key"):
                    out.setdefault(rec["config_key"], (path.parent, rec))
        for path in sorted(Path(d).rglob(RESULTS_FILE)) if Path(d).exists() else []:
            for rec in finished_records(path.parent):
                if rec.get("config_key"):
                    out[rec["config_key"]] = (path.parent, rec)
    return out


def adopt(jobs: list[Job], dirs: list[Path], index: Optional[dict] = None) -> list[Job]:
    """Pending jobs whose exact config (same config_key) already finished under `dirs` (another
    table's sweep) get that result copied into their own dir instead of running again."""
    if not dirs:
        return []
    index = index_records(dirs) if index is None else index
    taken = []
    for job in jobs:
        if job.done or job.key not in index:
            continue
        src, rec = index[job.key]
        if Path(src).resolve() == Path(job.out_dir).resolve():
            continue
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / RESULTS_FILE).write_text(json.dumps(rec) + "\n")
        if (src / "synthetic.png").exists():
            (job.out_dir / "synthetic.png").write_bytes((src / "synthetic.png").read_bytes())
        job.done = True
        taken.append(job)
    if taken:
        print(f"[run_table] reused {len(taken)} finished run(s) with the same config from {', '.join(map(str, dirs))}",
              flush=True)
    return taken
