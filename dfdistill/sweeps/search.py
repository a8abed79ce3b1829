"""Max-ratio search (BiLP Tables 1-2, Fig. 2): per cell, the largest pruning ratio that keeps the
unpruned accuracy, found in rounds (launch a batch, read the results, narrow the bracket).

The cell rule is `dfdistill.reporting.cells.max_ratio` (the table uses the same function).
Each pruning ratio is run with `trials` removal trials (`pruning.seed_offset` = 0..trials-1: for
random selection a different random drop; for loss selection different scoring networks, hence a
different loss estimate and drop, while the distillation seed stays fixed); the unpruned baseline
is one `pruning=none` run of the cell.

Search over a ladder of candidate ratios (default: every value BiLP reports, 5 ... 99.5 %; `fine`:
1 % steps plus 99.5 / 99.9 %). Every finished run of the cell already in the sweep dir counts,
whatever its ratio (e.g. the exp's fixed grid), so the ladder is the union of both. The bracket is
(lo, hi): lo = the largest ratio judged to keep the accuracy (0 = unpruned), hi = the smallest
ratio above lo judged not to; each round runs `points_per_round` evenly spaced unjudged ratios
inside it, until none is left (with 1 point per round: bisection, log2(len(ladder)) rounds).
Because the answer is the largest ratio that keeps the accuracy, a ratio above a failing one that
passes moves lo past the failure. Finished jobs are never relaunched, so an interrupted search
rerun replays its rounds from disk and continues.

Search order (`start`, run_table --start): `paper` (default) heads for the ratio the paper reports for
the cell (Table 1 for random, Table 2 for loss selection), one ratio a round, in the order that never
runs more ratios than bisection's bound and settles a cell that agrees with the paper in the fewest (2:
the paper's ratio and the next), then costs least when the paper is a rung or two off (`_toward`).
The answer is the same either way wherever the verdicts are monotone in the ratio (a kept ratio
directly below a failed one is found by both); the order changes only which such pair a non-monotone
cell reports. `bisect` is the plain bisection. Same keep rule, same trials per ratio.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from dfdistill.run.preflight import check_datasets
from dfdistill.reporting.cells import DEFAULT_RULE, MaxRatio, check_rule, distinct, keeps, max_ratio, rule_text
from dfdistill.reporting.collect import ARCHIVE_FILE, read_archive
from dfdistill.sweeps import feasible
from dfdistill.sweeps import overrides as ov
from dfdistill.sweeps.plan import (Job, SweepInfo, adopt, expand_jobs, finished_records, job_record, job_set_lines,
                                   job_why_not, mark_done, sweep_info)
from dfdistill.sweeps.compose_cache import prefetch
from dfdistill.config.identity import eval_identity_of, identity_of
from dfdistill.config.resolve import paper_dataset
from dfdistill.reporting.layouts import method_label
from dfdistill.reporting.paper import load_paper, table_rows

PAPER_LADDER = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.83, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995)
FINE_LADDER = tuple(round(0.01 * i, 2) for i in range(1, 100)) + (0.995, 0.999)
LADDERS = {"paper": PAPER_LADDER, "fine": FINE_LADDER}
RATIO_KEY = "pruning.ratio"
TRIAL_KEY = "pruning.seed_offset"
SELECTIONS = ("random", "loss")  # pruning options whose ratio is searched
START_ORDERS = ("paper", "bisect")
PAPER_TABLE_OF = {"random": "tab1", "loss": "tab2"}  # BiLP's max-ratio table for each selection

Launch = Callable[[list[Job]], list[int]]


@dataclass
class SearchConfig:
    ladder: tuple[float, ...] = PAPER_LADDER
    trials: int = 5
    points_per_round: int = 1
    max_rounds: int = 30
    rule: str = DEFAULT_RULE  # search.rule: how "maintains the unpruned accuracy" is read (cells.KEEP_RULES)
    start: str = "paper"  # paper: towards the paper's ratio, never more ratios than bisection | bisect

    def __post_init__(self) -> None:
        check_rule(self.rule)
        if self.start not in START_ORDERS:
            raise ValueError(f"search start must be one of {', '.join(START_ORDERS)}, got {self.start!r}")
        if self.trials < 1 or self.points_per_round < 1:
            raise ValueError("trials and points_per_round must be >= 1")
        if not all(0.0 < r < 1.0 for r in self.ladder):
            raise ValueError(f"ladder ratios must be in (0, 1), got {self.ladder}")


def parse_ladder(text: str) -> tuple[float, ...]:
    """`paper`, `fine` or a comma list of ratios (0.05,0.5,0.83)."""
    if text in LADDERS:
        return LADDERS[text]
    return tuple(sorted({float(x) for x in text.split(",") if x.strip()}))


def _height(n: int) -> int:
    """The most probes a bisection of n unjudged ratios runs (n + 1 possible answers): ceil(log2(n + 1))."""
    return n.bit_length()


def _even_picks(n: int, k: int) -> list[int]:
    """k evenly spaced probes among n unjudged ratios (their indices); k = 1 is bisection's: the
    middle, the lower one when n is even."""
    return sorted({min(n - 1, max(0, (j + 1) * (n + 1) // (k + 1) - 1)) for j in range(k)})


def _bisect_pick(n: int) -> int:
    return _even_picks(n, 1)[0]


PRIOR_ODDS = 4  # the paper's answer is taken this many times likelier than one a rung further from it
_FAR = 512  # weights are PRIOR_ODDS ** (_FAR - distance): exact integers for ladders of up to _FAR rungs


@lru_cache(maxsize=None)
def _toward(n: int, gap: int, budget: int) -> tuple[int, int, int]:
    """(probes that settle answer `gap`, prior-weighted probes over every answer, first probe's index)
    of the probe order over n unjudged ratios that runs at most `budget` probes whatever the verdicts,
    settles answer `gap` (the first `gap` ratios keep, the rest fail) in the fewest, and among those
    costs least where the paper is a few rungs off (answer j weighs PRIOR_ODDS ** -|j - gap|).

    Why: the paper's answer is the likely one, yet a search that trusts it must not cost more than
    bisection when it is wrong. A dynamic programme over (ratios left, where the paper's answer lies
    among them, probes left); once a verdict puts the paper's answer outside the bracket, the nearest
    end of the bracket is the expected answer (the same programme with gap 0 or n). Ties go to
    bisection's probe."""
    if n == 0:
        return 0, 0, -1
    weight = lambda d: PRIOR_ODDS ** (_FAR - d)  # noqa: E731
    every = sum(weight(abs(j - gap)) for j in range(n + 1))  # each answer costs this probe
    best: Optional[tuple[int, int, int, int]] = None
    for m in range(n):  # probe the m-th: keeps -> the ratios above it are left, fails -> those below
        if max(_height(m), _height(n - m - 1)) > budget - 1:
            continue
        if gap <= m:  # the paper's answer lies below the probe; above it, the nearest answer is m + 1 - gap away
            depth, near, _ = _toward(m, gap, budget - 1)
            far = _toward(n - m - 1, 0, budget - 1)[1] // PRIOR_ODDS ** (m + 1 - gap)
        else:
            depth, near, _ = _toward(n - m - 1, gap - m - 1, budget - 1)
            far = _toward(m, m, budget - 1)[1] // PRIOR_ODDS ** (gap - m)
        cand = (1 + depth, every + near + far, abs(m - _bisect_pick(n)), m)
        best = cand if best is None or cand < best else best
    if best is None:
        raise ValueError(f"{n} ratios cannot be searched in {budget} probes")  # callers pass >= _height(n)
    return best[0], best[1], best[3]


def next_points(ladder: tuple[float, ...], judged: dict[float, bool], k: int = 1,
                first: Optional[float] = None) -> list[float]:
    """The ratios to run next (empty = converged). `judged`: ratio -> keeps the unpruned accuracy.
    `first`: the answer expected (the paper's ratio). With one point per round the probes head for it
    without ever running more than bisection would (`_toward`: on the paper ladder an agreeing cell is
    settled by 2 probes, the paper's ratio and the next, in 2 rounds; once it lies outside the bracket,
    the bracket's nearest end is expected); with k >= 2, while it is unjudged inside the bracket, it
    and the next ratio are the round's points, then evenly spaced points."""
    grid = sorted(set(ladder) | set(judged))
    lo = max([i for i, r in enumerate(grid) if judged.get(r) is True], default=-1)
    hi = min([i for i, r in enumerate(grid) if i > lo and judged.get(r) is False], default=len(grid))
    inner = list(range(lo + 1, hi))
    if not inner:
        return []
    if first is not None and k == 1:  # the probes left: bisection's bound for the whole grid, less those made
        gap = sum(1 for i in inner if grid[i] <= first + 1e-12)  # 0 or len(inner): the paper's lies outside
        budget = max(_height(len(inner)), _height(len(grid)) - len(judged))
        return [grid[inner[_toward(len(inner), gap, budget)[2]]]]
    inside = first is not None and (lo < 0 or grid[lo] <= first + 1e-12) and (hi == len(grid) or first < grid[hi] - 1e-12)
    if inside and first in grid and first not in judged:
        i = grid.index(first)
        return [grid[j] for j in (i, i + 1) if j in inner]
    return [grid[inner[p]] for p in _even_picks(len(inner), k)]


def path_if(ladder: tuple[float, ...], answer: Optional[float], k: int = 1,
            first: Optional[float] = None) -> list[float]:
    """The ratios a cell's search runs, in order, when every ratio <= `answer` keeps and every one
    above fails (None: none keeps): e.g. the search of a cell whose verdicts are the paper's."""
    judged: dict[float, bool] = {}
    while pts := next_points(ladder, judged, k, first):
        judged.update({p: answer is not None and p <= answer + 1e-9 for p in pts})
    return list(judged)


def points_if(ladder: tuple[float, ...], answer: Optional[float], k: int = 1, first: Optional[float] = None) -> int:
    """How many ratios `path_if` runs."""
    return len(path_if(ladder, answer, k, first))


def rung_off_points(ladder: tuple[float, ...]) -> tuple[float, float]:
    """(paper-first, bisection): the ratios a cell's search runs on average when the truth is one rung
    below or above the paper's ratio, over every ratio of the ladder as the paper's (docs/sweeps.md)."""
    rungs = [None, *ladder]
    ours, plain = [], []
    for i, first in enumerate(ladder, start=1):
        for truth in [rungs[i - 1]] + ([rungs[i + 1]] if i + 1 < len(rungs) else []):
            ours.append(points_if(ladder, truth, 1, first))
            plain.append(points_if(ladder, truth))
    return sum(ours) / len(ours), sum(plain) / len(plain)


@lru_cache(maxsize=None)
def points_at_most(ladder: tuple[float, ...], k: int = 1, first: Optional[float] = None) -> int:
    """The most ratios a cell's search can run, over every sequence of verdicts (monotone or not).
    Cached: a plan asks it for every cell, mostly with the same ladder and first ratio."""

    @lru_cache(maxsize=None)  # different verdict orders reach the same judged state
    def worst(judged: tuple[tuple[float, bool], ...]) -> int:
        pts = next_points(ladder, dict(judged), k, first)
        if not pts:
            return 0
        outcomes = [[(p, (mask >> j) & 1 == 1) for j, p in enumerate(pts)] for mask in range(2 ** len(pts))]
        return len(pts) + max(worst(tuple(sorted(dict(judged + tuple(o)).items()))) for o in outcomes)

    return worst(())


@lru_cache(maxsize=1)
def _paper_ratios() -> dict[tuple[str, str, str, str], float]:
    """(table, dataset, ipc, method label) -> the max ratio BiLP prints (a fraction); garbled cells absent."""
    rows = pd.concat([table_rows(load_paper(), "bilp", t) for t in PAPER_TABLE_OF.values()])
    return {(r.table, r.dataset, str(r.ipc), r.method): float(r.value) / 100 for r in rows.itertuples() if r.value}


def paper_max_ratio(selection: str, resolved: Any, ladder: tuple[float, ...]) -> Optional[float]:
    """The ratio BiLP reports for this cell (its dataset, IPC and method), where it is on the ladder."""
    key = (PAPER_TABLE_OF.get(selection, ""), paper_dataset(resolved), str(resolved.ipc),
           method_label(str(resolved.method.name)))
    value = _paper_ratios().get(key)
    return next((r for r in ladder if value is not None and abs(r - value) < 1e-9), None)


def _signature(cfg: dict[str, Any]) -> str:
    """A resolved config's distillation and evaluation identity without the searched ratio and trial:
    which cell a run belongs to."""

    d = {"distill": identity_of(cfg), "eval": eval_identity_of(cfg)}  # `cfg` is resolved: no DictConfig needed
    for part in d.values():
        pr = dict(part.get("pruning") or {})
        pr.pop("ratio", None)
        pr.pop("seed_offset", None)
        part["pruning"] = pr
    return json.dumps(d, sort_keys=True, default=str)


@dataclass
class Cell:
    """One table cell: its overrides (no ratio / trial keys), baseline job and search state."""

    lines: list[str]
    name: str
    selection: str
    baseline: Optional[Job] = None
    signature: Optional[str] = None
    result: Optional[MaxRatio] = None
    keeps: dict[float, bool] = field(default_factory=dict)  # judged ratio -> keeps the unpruned accuracy
    rounds: int = 0
    error: Optional[str] = None
    converged: bool = False
    skipped: Optional[str] = None  # cannot run at this data size (sweeps/feasible.py): not launched
    ladder: Optional[tuple[float, ...]] = None  # the ratios that leave ipc rows per class (None: all)
    start: Optional[float] = None  # the paper's max ratio for this cell, probed first (SearchConfig.start)

    @property
    def has_baseline(self) -> bool:
        return self.result is not None and self.result.ratio is not None

    def summary(self) -> dict[str, Any]:
        """The cell's result (accuracies in %, as the tables print them) and its search trace."""
        r = self.result
        base = r.unpruned if self.has_baseline else None
        at = r.per_ratio.get(r.ratio, base) if self.has_baseline else None
        return {"cell": self.name, "selection": self.selection, "max_ratio": r.ratio if r else None,
                "unpruned_pct": None if base is None else [base.mean, base.std, base.n],
                "at_max_pct": None if at is None else [at.mean, at.std, at.n],
                "tried": {f"{q:g}": {"keeps": k, "mean_pct": r.per_ratio[q].mean, "trials": r.per_ratio[q].n}
                          for q, k in sorted(self.keeps.items())},
                "rounds": self.rounds, "converged": self.converged, "error": self.error, "skipped": self.skipped,
                "ladder": None if self.ladder is None else list(self.ladder), "start": self.start}


def baseline_lines(lines: list[str]) -> list[str]:
    """The cell's unpruned baseline job: its overrides with `pruning=none` for its pruning."""
    return [o for o in lines if not ov.under(ov.group_of(o), ["pruning"])] + ["pruning=none"]


class MaxRatioSearch:
    """Run the search for every cell of an exp (its axes minus the ratio and trial axes)."""

    def __init__(self, exp: str, profile: str, overrides: list[str], launch: Launch,
                 cfg: Optional[SearchConfig] = None, sweep_dir: Optional[Path] = None,
                 adds: Optional[list[list[str]]] = None, log: Callable[[str], None] = print,
                 reuse: Optional[list[Path]] = None) -> None:
        self.cfg = cfg or SearchConfig()
        self.reuse = list(reuse or [])
        self.launch = launch
        self.log = log
        fixed = [o for o in [f"+exp={exp}", f"profile={profile}", *overrides]
                 if ov.group_of(o) not in (RATIO_KEY, TRIAL_KEY)]
        self.info: SweepInfo = sweep_info(fixed, sweep_dir)
        self.info.params = {k: v for k, v in self.info.params.items() if k not in (RATIO_KEY, TRIAL_KEY)}
        sets = [job_set_lines(fixed, self.info.params, add)[0] for add in [[]] + list(adds or [])]
        lines = [job.overrides for job in expand_jobs(sets, self.info)]
        prefetch(lines + [baseline_lines(x) for x in lines])  # every cell's groups in few compositions
        self.cells = [self._cell(x) for x in lines]
        self.launched: list[Job] = []
        self._data_checked = False

    # -- cells ---------------------------------------------------------------------------------
    def _cell(self, lines: list[str]) -> Cell:
        name = ov.dirname(lines, self.info.exclude, self.info.item_sep, self.info.kv_sep)
        cell = Cell(lines, name, "?")
        probe = self._jobs(cell, [self.cfg.ladder[0]], trials=1)[0]
        mark_done(probe)
        if probe.error:
            cell.error = probe.error
            return cell
        cell.selection = str(probe.resolved_dict["pruning"]["name"])
        if cell.selection not in SELECTIONS:
            cell.error = f"pruning={cell.selection} has no ratio to search (use pruning=random or loss)"
            return cell
        cell.signature = _signature(probe.resolved_dict)  # the resolved config as plain data (read only)
        cell.baseline = expand_jobs([baseline_lines(lines)], self.info)[0]
        mark_done(cell.baseline)
        if cell.baseline.resolved is not None:
            cell.skipped = job_why_not(cell.baseline)
            ladder = feasible.feasible_ratios(cell.baseline.resolved, self.cfg.ladder)
            if not ladder and cell.skipped is None:
                cell.skipped = f"no ratio of the ladder leaves ipc={cell.baseline.resolved.ipc} real images per class"
            if len(ladder) < len(self.cfg.ladder):  # the search cannot prune past what the data allows
                cell.ladder = ladder
            if self.cfg.start == "paper":
                cell.start = paper_max_ratio(cell.selection, cell.baseline.resolved, ladder or self.cfg.ladder)
        return cell

    def _jobs(self, cell: Cell, ratios: list[float], trials: Optional[int] = None) -> list[Job]:
        n = self.cfg.trials if trials is None else trials
        sets = [cell.lines + [f"{RATIO_KEY}={r:g}", f"{TRIAL_KEY}={t}"] for r in ratios for t in range(n)]
        return expand_jobs(sets, self.info)

    def _records(self, cell: Cell, pool: list[dict]) -> list[dict]:
        """Every baseline record + every finished removal trial of the cell (trial < trials): all the
        evidence, whichever run dir or archive holds it, each evaluation once (the verdict must not
        depend on which of two records of one config is found last)."""
        out = []
        base = cell.baseline
        if base.key is None:
            mark_done(base)
        out += [r for r in pool if base.key is not None and r.get("config_key") == base.key]
        for r in pool:
            c = r.get("config") or {}
            off = int(((c.get("pruning") or {}).get("seed_offset")) or 0)
            ratio = float(r.get("pruning_ratio", 0.0) or 0.0)
            if ratio <= 0.0 or off >= self.cfg.trials:
                continue
            if _signature(c) == cell.signature:
                out.append(r)
        return distinct(out)

    def _judge(self, cell: Cell, pool: list[dict]) -> dict[float, bool]:
        recs = self._records(cell, pool)
        trials: dict[float, set[int]] = {}
        for r in recs:
            off = int((((r.get("config") or {}).get("pruning") or {}).get("seed_offset")) or 0)
            trials.setdefault(round(float(r.get("pruning_ratio", 0.0) or 0.0), 6), set()).add(off)
        full = [r for r in recs if (q := round(float(r.get("pruning_ratio", 0.0) or 0.0), 6)) == 0.0
                or len(trials[q]) >= self.cfg.trials]
        cell.result = m = max_ratio(full, self.cfg.rule)
        cell.keeps = ({q: keeps(s, m.unpruned, self.cfg.rule) for q, s in m.per_ratio.items() if q > 0}
                      if cell.has_baseline else {})
        return dict(cell.keeps)

    # -- rounds --------------------------------------------------------------------------------
    def pool(self) -> list[dict]:
        """Every finished record in the sweep dir and the reuse dirs (run dirs and runs.jsonl archives)."""
        recs = []
        for d in [self.info.sweep_dir, *self.reuse]:
            for path in sorted(d.rglob(ARCHIVE_FILE)) if d.exists() else []:
                recs += read_archive(path)
            for path in sorted(d.rglob("results.jsonl")) if d.exists() else []:
                recs += finished_records(path.parent)
        return recs

    def step(self) -> list[Job]:
        """One round: propose points for every open cell, launch the pending jobs. Returns them."""
        pool = self.pool()
        wanted: dict[str, list[Job]] = {}
        for cell in self.cells:
            if cell.error or cell.converged or cell.skipped:
                continue
            judged = self._judge(cell, pool)
            jobs = []
            if not cell.has_baseline:  # start: the baseline and the first probes together
                jobs.append(cell.baseline)
                judged = {}
            points = next_points(cell.ladder or self.cfg.ladder, judged, self.cfg.points_per_round, cell.start)
            if not points and not jobs:
                cell.converged = True
                continue
            cell.rounds += 1
            wanted[cell.name] = jobs + self._jobs(cell, points)
        pending = []
        for job in (j for jobs in wanted.values() for j in jobs):
            if job.key is None and job.error is None:
                mark_done(job)
            if not job.done and job.error is None and job.out_dir not in {p.out_dir for p in pending}:
                pending.append(job)
        adopt(pending, self.reuse)
        pending = [j for j in pending if not j.done]
        if pending:
            if not self._data_checked:  # once, before the first launch: a search settled by finished runs needs no data
                live = [c for c in self.cells if not c.skipped and not c.error and c.baseline is not None]
                check_datasets(c.baseline.resolved.dataset for c in live if c.baseline.resolved is not None)
                self._data_checked = True
            self.log(f"[search] round: {len(pending)} job(s) for {len(wanted)} open cell(s)")
            self.launch(pending)
            self.launched += pending
            for job in (j for jobs in wanted.values() for j in jobs if not j.done and j.key is not None):
                job.done = job_record(job) is not None
        for cell in self.cells:  # a job that did not finish stops its cell (no endless relaunching)
            bad = [j for j in wanted.get(cell.name, []) if not j.done]
            if bad:
                why = bad[0].error or f"job did not finish: {bad[0].out_dir}"
                cell.error = f"{why} (see its run.log; rerun to continue)"
        return pending

    def adopt_reused(self) -> list[Job]:
        """Copy into this sweep dir the reuse-dir runs that a cell's verdict rests on: the table is
        built from the sweep dir, so a search settled entirely by another table's runs (Fig. 2 from
        Tables 1-2) would otherwise render empty."""
        if not self.reuse:
            return []
        pool = self.pool()
        wanted: list[Job] = []
        for cell in self.cells:
            if cell.error or cell.baseline is None:
                continue
            ratios = sorted({float(r.get("pruning_ratio", 0.0) or 0.0) for r in self._records(cell, pool)} - {0.0})
            wanted += [cell.baseline] + self._jobs(cell, ratios)
        for job in wanted:
            if job.key is None and job.error is None:
                mark_done(job)
        return adopt([j for j in wanted if not j.done and j.error is None], self.reuse)

    def run(self) -> list[Cell]:
        skipped = [f"{feasible.short_name(c.name)} ({c.skipped})" for c in self.cells if c.skipped]
        if skipped:
            self.log(feasible.skipped_line(skipped))
        cut = [f"{feasible.short_name(c.name)} (up to {max(c.ladder):g})" for c in self.cells if c.ladder and not c.skipped]
        if cut:
            self.log(f"[search] ratio ladder cut where more pruning would leave fewer than ipc real images per class: "
                     + "; ".join(cut))
        for _ in range(self.cfg.max_rounds):
            self.step()
            if all(c.converged or c.error or c.skipped for c in self.cells):
                break
        else:
            for c in self.cells:
                if not c.converged and not c.error and not c.skipped:
                    c.error = f"not converged after {self.cfg.max_rounds} rounds"
        for c in self.cells:
            if c.error:
                print(f"[search] {c.name}: {c.error}", file=sys.stderr)
        self.adopt_reused()
        return self.cells

    def write_summary(self, path: Optional[Path] = None) -> Path:
        path = path or self.info.sweep_dir / "search.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"ladder": list(self.cfg.ladder), "trials": self.cfg.trials,
                                    "rule": self.cfg.rule, "rule_text": rule_text(self.cfg.rule),
                                    "cells": [c.summary() for c in self.cells]}, indent=1) + "\n")
        return path
